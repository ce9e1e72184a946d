"""Benchmark: `pioctl start` -> `$state=ready` on the broker, and kill -9 -> `$state=lost`.

    .venv/bin/python bench/lifecycle.py [-n 15]

Starts its own mosquitto and daemon (like the tests). Prints medians and p90 in ms. Also the
job process's RSS/USS once ready, and the cost of a bare pioctl call (status) for comparison.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from tests.support.broker import Broker, Watcher  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.plugins import SETTINGS_JOB  # noqa: E402


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return f"{name:34} median {statistics.median(values):8.2f} ms   p90 {p90:8.2f} ms   n={len(values)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=15)
    rounds = parser.parse_args().n
    broker = Broker()
    daemon = Daemon(broker.port)
    daemon.add_plugin("tester", SETTINGS_JOB)
    watcher = Watcher(broker.port, "pioreactor/#")
    state = f"pioreactor/{daemon.unit}/exp1/tester/$state"
    starts, start_to_broker, losts, pioctl_calls, rss, uss = [], [], [], [], [], []
    try:
        daemon.start()
        for _ in range(rounds):
            began = time.monotonic()
            daemon.pioctl("start", "tester")
            starts.append((time.monotonic() - began) * 1000)
            ready = watcher.wait(state, "ready", since=began)
            start_to_broker.append((ready.at - began) * 1000)
            pid = daemon.status()["tester"]["pid"]
            info = psutil.Process(pid).memory_full_info()
            rss.append(info.rss / 2**20)
            uss.append(info.uss / 2**20)
            began = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            lost = watcher.wait(state, "lost", since=began)
            losts.append((lost.at - began) * 1000)
            began = time.monotonic()
            daemon.pioctl("status")
            pioctl_calls.append((time.monotonic() - began) * 1000)
        print(summary("pioctl start -> returns (ready)", starts))
        print(summary("pioctl start -> $state=ready seen", start_to_broker))
        print(summary("kill -9 -> $state=lost seen", losts))
        print(summary("pioctl status (whole command)", pioctl_calls))
        print(f"{'job process memory once ready':34} RSS {statistics.median(rss):.1f} MiB   "
              f"USS {statistics.median(uss):.1f} MiB")
    finally:
        watcher.close()
        daemon.cleanup()
        broker.stop()


if __name__ == "__main__":
    main()
