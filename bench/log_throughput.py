"""Benchmark: log lines per second from one job to SQLite + MQTT + the log file (+ the console).

    .venv/bin/python bench/log_throughput.py [-n 10] [--lines 30000]

Starts its own mosquitto and daemon (like the tests). Each round a job logs `--lines` lines as
fast as it can; the round ends when every line is on the broker, the last one is in SQLite and in
the log file. Prints lines/s (median, min, max over the rounds) and the daemon's CPU per line
(user + system time of the daemon process over the round). Goal (issue 14): >= 40,000 lines/s,
the daemon never the bottleneck. Same-run yardstick: one paho client publishing the same payloads
at QoS 0 straight to the broker, nothing else (the most MQTT alone can do here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402

from bench.mqtt_counter import Counter, log_tag  # noqa: E402
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
    began = time.monotonic()
    daemon.pioctl("start", "logger", "--count", str(lines), "--tag", tag)
    log_file = daemon.root / "log" / "pioreactord.log"
    try:
        wait_for(lambda: counter.count_of(tag) >= lines + 1, 300,
                 f"{tag}: every line on the broker", poll=0.05)
    except TimeoutError:
        broker = call(str(daemon.root / "run" / "control.sock"),
                      {"cmd": "status", "args": {"daemon": True}}, 10)["result"]["daemon"]["broker"]
        raise TimeoutError(f"{tag}: {counter.count_of(tag)} of {lines + 1} lines on the broker; "
                           f"the daemon's broker link: {broker}; the counter: "
                           f"{counter.ended or 'connected'}") from None
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE message = ?",
                                  (f"{tag} done",))[0][0], 60, f"{tag}: in SQLite", poll=0.05)
    wait_for(lambda: f"{tag} done" in _tail(log_file), 60, f"{tag}: in the log file", poll=0.05)
    elapsed = time.monotonic() - began
    after = process.cpu_times()
    used = (after.user - cpu.user) + (after.system - cpu.system)
    job = psutil.Process(daemon.status()["logger"]["pid"]).cpu_times()
    daemon.pioctl("stop", "logger")
    return lines / elapsed, used / lines * 1e6, (job.user + job.system) / lines * 1e6


def _tail(path: Path, size: int = 4096) -> str:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode("utf-8", "replace")


def paho_yardstick(port: int, lines: int) -> float:
    """Lines/s of a bare paho client publishing log-sized QoS 0 messages (no daemon)."""
    kwargs = ({"callback_api_version": mqtt.CallbackAPIVersion.VERSION2}
              if hasattr(mqtt, "CallbackAPIVersion") else {})
    client = mqtt.Client(**kwargs)
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = json.dumps({"message": "yard 0 " + "x" * 20, "level": "INFO", "task": "logger",
                          "source": "logger", "timestamp": "2026-01-01T00:00:00.000Z"}).encode()
    began = time.monotonic()
    info = None
    for _ in range(lines):
        info = client.publish("bench/yardstick/logs", payload, qos=0)
    if info is not None:
        info.wait_for_publish(60)
    elapsed = time.monotonic() - began
    client.loop_stop()
    client.disconnect()
    return lines / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10, help="rounds")
    parser.add_argument("--lines", type=int, default=30000, help="log lines per round")
    args = parser.parse_args()
    broker = Broker()
    daemon = Daemon(broker.port, extra_ini="")
    daemon.add_plugin("logger", LOGGER_JOB)
    counter = Counter(broker.port, f"pioreactor/{daemon.unit}/+/logs/#", tag_of=log_tag)
    rates, cpus, job_cpus, yard = [], [], [], []
    try:
        daemon.start()
        for i in range(args.n):
            rate, cpu, job_cpu = one_round(daemon, counter, f"r{i}", args.lines)
            rates.append(rate)
            cpus.append(cpu)
            job_cpus.append(job_cpu)
            yard.append(paho_yardstick(broker.port, args.lines))
        print(f"{'job -> SQLite+MQTT+file, lines/s':40} {stats(rates)}")
        print(f"{'daemon CPU per line, µs':40} {stats(cpus)}")
        print(f"{'job CPU per line (its whole life), µs':40} {stats(job_cpus)}")
        print(f"{'yardstick: bare paho QoS 0, msgs/s':40} {stats(yard)}")
        print(f"{'ratio to the yardstick (median)':40} "
              f"{statistics.median(rates) / statistics.median(yard):.2f}   goal: >= 40,000 lines/s")
    finally:
        counter.close()
        daemon.cleanup()
        broker.stop()


if __name__ == "__main__":
    main()
