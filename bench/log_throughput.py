"""Benchmark: log lines per second from one job to SQLite + MQTT + the log file (+ the console).

    .venv/bin/python bench/log_throughput.py [-n 10] [--lines 30000]

Starts its own mosquitto and daemon (like the tests). Each round a job logs `--lines` lines as
fast as it can; the clock runs from the first line on the broker (the job's start is a figure of
its own) until every line is on the broker and the last one is in SQLite and in the log file.
Prints lines/s (median, min, max over the rounds) and the daemon's and the job's CPU per line
(user + system time of each process over the round). Goal (issue 14): >= 40,000 lines/s, the
daemon never the bottleneck. Same-run yardstick: one paho client publishing as many QoS-0
messages through the same broker to the same kind of counter (yardsticks.mqtt_ceiling).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from bench.mqtt_counter import Counter, log_tag  # noqa: E402
from bench.yardsticks import mqtt_ceiling  # noqa: E402
from pioreactord.client import call  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.storage_plugins import LOGGER_JOB  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def stats(values: list[float]) -> str:
    return (f"median {statistics.median(values):9.0f}   min {min(values):9.0f}   "
            f"max {max(values):9.0f}   n={len(values)}")


def one_round(daemon: Daemon, counter: Counter, tag: str,
              lines: int) -> tuple[float, float, float]:
    """(lines per second, daemon and job CPU µs per line) for one job logging `lines` lines."""
    process = psutil.Process(daemon.process.pid)  # type: ignore[union-attr]
    cpu = process.cpu_times()
    rowid = daemon.query("SELECT coalesce(max(rowid), 0) FROM logs")[0][0]
    daemon.pioctl("start", "logger", "--count", str(lines), "--tag", tag)
    log_file = daemon.root / "log" / "pioreactord.log"
    try:
        wait_for(lambda: counter.count_of(tag) >= lines + 1, 300,
                 f"{tag}: every line on the broker", poll=0.01)
    except TimeoutError:
        broker = call(str(daemon.root / "run" / "control.sock"),
                      {"cmd": "status", "args": {"daemon": True}}, 10)["result"]["daemon"]["broker"]
        raise TimeoutError(f"{tag}: {counter.count_of(tag)} of {lines + 1} lines on the broker; "
                           f"the daemon's broker link: {broker}; the counter: "
                           f"{counter.ended or 'connected'}") from None
    on_broker = counter.last_at
    in_sqlite = _seen_at(lambda: daemon.query(
        "SELECT count(*) FROM logs WHERE rowid > ? AND message = ?", (rowid, f"{tag} done"))[0][0],
        f"{tag}: in SQLite")
    in_file = _seen_at(lambda: f"{tag} done" in _tail(log_file), f"{tag}: in the log file")
    # From the first line on the broker (the job's start is a figure of its own) to the last
    # one in every sink; SQLite and the file are looked at only once the broker has them all.
    elapsed = max(on_broker, in_sqlite, in_file) - counter.first_at[tag.encode()]
    after = process.cpu_times()
    used = (after.user - cpu.user) + (after.system - cpu.system)
    job = psutil.Process(daemon.status()["logger"]["pid"]).cpu_times()
    daemon.pioctl("stop", "logger")
    return lines / elapsed, used / lines * 1e6, (job.user + job.system) / lines * 1e6


def _seen_at(condition: Callable[[], object], what: str) -> float:
    """When `condition` first held (the time the check that saw it began)."""
    began: list[float] = []

    def check() -> object:
        began.append(time.monotonic())
        return condition()

    wait_for(check, 60, what, poll=0.002)
    return began[-1]


def _tail(path: Path, size: int = 4096) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", "replace")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10, help="rounds")
    parser.add_argument("--lines", type=int, default=30000, help="log lines per round")
    args = parser.parse_args()
    broker = Broker()
    daemon = Daemon(broker.port, extra_ini="")
    daemon.add_plugin("logger", LOGGER_JOB)
    counter = Counter(broker.port, f"pioreactor/{daemon.unit}/+/logs/#", tag_of=log_tag)
    rates, cpus, job_cpus = [], [], []
    try:
        daemon.start()
        for i in range(args.n):
            rate, cpu, job_cpu = one_round(daemon, counter, f"r{i}", args.lines)
            rates.append(rate)
            cpus.append(cpu)
            job_cpus.append(job_cpu)
        yard = mqtt_ceiling(broker.port, args.n, args.lines).samples
        print(f"{'job -> SQLite+MQTT+file, lines/s':40} {stats(rates)}")
        print(f"{'daemon CPU per line, µs':40} {stats(cpus)}")
        print(f"{'job CPU per line (its whole life), µs':40} {stats(job_cpus)}")
        print(f"{'yardstick: one paho client, QoS 0, msg/s':40} {stats(yard)}")
        print(f"{'ratio to the yardstick (median)':40} "
              f"{statistics.median(rates) / statistics.median(yard):.2f}   goal: >= 40,000 lines/s")
    finally:
        counter.close()
        daemon.cleanup()
        broker.stop()


if __name__ == "__main__":
    main()
