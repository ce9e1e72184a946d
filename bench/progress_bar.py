"""Benchmark: a job drawing a `\\r` progress bar on stdout at 100 updates/s; the daemon's cost.

    .venv/bin/python bench/progress_bar.py [-n 3] [--seconds 20]

Starts its own mosquitto and daemon (like the tests). Each round a job started by the daemon
(its stdout is a pipe the daemon reads) redraws a progress line 100 times a second for
`--seconds`, each redraw `--width` bytes. Prints, median/min/max over the rounds: the daemon's CPU (% of one core) over the
bar, its RSS growth (MiB, end minus start), and the log rows the bar made. Yardstick of the same
run: the daemon's CPU over as long an idle stretch. Issue 11 item 6 (before: 98-100 % CPU,
150 MB held, one 88 MB row at the job's end).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from tests.support.broker import Broker  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.storage_plugins import PRINTER_JOB  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def stats(values: list[float], unit: str) -> str:
    return (f"median {statistics.median(values):8.1f} {unit}   min {min(values):8.1f}   "
            f"max {max(values):8.1f}   n={len(values)}")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def one_round(daemon: Daemon, seconds: float, width: int) -> tuple[float, float, int]:
    """(daemon CPU %, RSS growth MiB, log rows) over one bar of `seconds` at 100 updates/s."""
    process = psutil.Process(daemon.process.pid)  # type: ignore[union-attr]
    rows_before = daemon.query("SELECT count(*) FROM logs WHERE task = 'printer'")[0][0]

    def bars_done() -> int:
        return daemon.query("SELECT count(*) FROM logs WHERE task = 'printer' AND "
                            "message LIKE '%printer done%'")[0][0]

    done_before = bars_done()  # (a round that took the last round's line as its own ended at once)
    rss, cpu, began = process.memory_info().rss, cpu_seconds(process), time.monotonic()
    daemon.pioctl("start", "printer", "--progress", str(int(seconds * 100)), "--rate", "100",
                  "--width", str(width))
    wait_for(lambda: bars_done() > done_before, seconds * 4 + 30, "the bar to end", poll=0.2)
    used, elapsed = cpu_seconds(process) - cpu, time.monotonic() - began
    grown = (process.memory_info().rss - rss) / 2**20
    rows = daemon.query("SELECT count(*) FROM logs WHERE task = 'printer'")[0][0] - rows_before
    daemon.pioctl("stop", "printer")
    return used / elapsed * 100, grown, rows


def idle_cpu(daemon: Daemon, seconds: float) -> float:
    process = psutil.Process(daemon.process.pid)  # type: ignore[union-attr]
    cpu, began = cpu_seconds(process), time.monotonic()
    time.sleep(seconds)  # measuring an idle stretch, not synchronising
    return (cpu_seconds(process) - cpu) / (time.monotonic() - began) * 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=3, help="rounds")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one bar")
    parser.add_argument("--width", type=int, default=1000, help="bytes per redraw (a wide bar)")
    args = parser.parse_args()
    broker = Broker()
    daemon = Daemon(broker.port)
    daemon.add_plugin("printer", PRINTER_JOB)
    cpus, growth, rows, idle = [], [], [], []
    try:
        daemon.start()
        for _ in range(args.n):
            cpu, grown, count = one_round(daemon, args.seconds, args.width)
            cpus.append(cpu)
            growth.append(grown)
            rows.append(float(count))
            idle.append(idle_cpu(daemon, min(args.seconds, 5.0)))
        print(f"{'daemon CPU during the bar':32} {stats(cpus, '%')}")
        print(f"{'daemon RSS growth over the bar':32} {stats(growth, 'MiB')}")
        print(f"{'log rows per bar':32} {stats(rows, 'rows')}")
        print(f"{'yardstick: daemon CPU idle':32} {stats(idle, '%')}")
    finally:
        daemon.cleanup()
        broker.stop()


if __name__ == "__main__":
    main()
