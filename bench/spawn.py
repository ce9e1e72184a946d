"""Benchmark: the two spawners, `exec` (a fresh interpreter per job) and `forkserver`.

    .venv/bin/python bench/spawn.py [-n 15] [--jobs 4]

For each spawner, its own daemon (and one mosquitto, like the tests): n rounds of start -> ready,
timed two ways: the whole `pioctl start` command, and the control call alone (what the daemon
and the job take, without pioctl's own interpreter). Each round ends with kill -9 and `lost`.
Then `--jobs` jobs run at once and each one's memory is read (psutil memory_full_info: RSS, USS =
pages only it holds, PSS = shared pages split among their users). Prints medians, p90 and the
ratio exec / forkserver.
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

from bench.yardsticks import timed_round  # noqa: E402
from pioreactord.client import call  # noqa: E402
from tests.support.broker import Broker, Watcher  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.plugins import SETTINGS_JOB  # noqa: E402

SPAWNERS = ("exec", "forkserver")


def p90(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.9 * len(values)))]


def time_starts(daemon: Daemon, watcher: Watcher, rounds: int) -> dict[str, list[float]]:
    state = f"pioreactor/{daemon.unit}/exp1/tester/$state"
    control = str(daemon.root / "run" / "control.sock")
    times: dict[str, list[float]] = {"pioctl start -> ready (ms)": [],
                                     "control call start -> ready (ms)": []}
    for i in range(2 * rounds):
        with timed_round():
            began = time.monotonic()
            if i % 2 == 0:
                daemon.pioctl("start", "tester")
                key = "pioctl start -> ready (ms)"
            else:
                reply = call(control, {"cmd": "start", "args": {"job": "tester", "args": []}}, 30)
                assert reply["ok"], reply
                key = "control call start -> ready (ms)"
            times[key].append((time.monotonic() - began) * 1000)
        began = time.monotonic()
        os.kill(daemon.status()["tester"]["pid"], signal.SIGKILL)
        watcher.wait(state, "lost", since=began)
    return times


def measure_memory(daemon: Daemon, jobs: int) -> dict[str, list[float]]:
    names = [f"tester{i}" for i in range(jobs)]
    for name in names:
        daemon.pioctl("start", name)
    memory: dict[str, list[float]] = {"RSS (MiB)": [], "USS (MiB)": [], "PSS (MiB)": []}
    for row in daemon.status().values():
        info = psutil.Process(row["pid"]).memory_full_info()
        for key, value in (("RSS", info.rss), ("USS", info.uss), ("PSS", info.pss)):
            memory[f"{key} (MiB)"].append(value / 2**20)
    daemon.pioctl("stop", "--all")
    return memory


def run(spawner: str, broker: Broker, rounds: int, jobs: int) -> dict[str, list[float]]:
    daemon = Daemon(broker.port, spawner=spawner, extra_ini="")
    daemon.add_plugin("tester", SETTINGS_JOB)
    for i in range(jobs):
        daemon.add_plugin(f"tester{i}", SETTINGS_JOB.replace("tester", f"tester{i}"))
    watcher = Watcher(broker.port, f"pioreactor/{daemon.unit}/#")
    try:
        daemon.start()
        daemon.pioctl("start", "tester")  # warm the page cache and the .pyc files
        daemon.pioctl("stop", "tester")
        results = time_starts(daemon, watcher, rounds)
        results.update(measure_memory(daemon, jobs))
        server = daemon.forkserver_pid()
        if server:
            info = psutil.Process(server).memory_full_info()
            print(f"  fork server itself: RSS {info.rss / 2**20:.1f} MiB  USS "
                  f"{info.uss / 2**20:.1f} MiB  PSS {info.pss / 2**20:.1f} MiB")
        return results
    finally:
        watcher.close()
        daemon.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=15, help="start rounds per way of timing")
    parser.add_argument("--jobs", type=int, default=4, help="concurrent jobs for memory")
    options = parser.parse_args()
    broker = Broker()
    try:
        results = {}
        for spawner in SPAWNERS:
            print(f"{spawner}: n={options.n}, {options.jobs} concurrent jobs")
            results[spawner] = run(spawner, broker, options.n, options.jobs)
    finally:
        broker.stop()
    print(f"\n{'':34}{'exec':>18}{'forkserver':>18}{'exec/fork':>11}")
    for key in results["exec"]:
        ex, fs = results["exec"][key], results["forkserver"][key]
        print(f"{key:34}{statistics.median(ex):9.1f} (p90 {p90(ex):5.1f})"
              f"{statistics.median(fs):9.1f} (p90 {p90(fs):5.1f})"
              f"{statistics.median(ex) / statistics.median(fs):10.1f}x")
    print("(medians; p90 in brackets; memory per job while", options.jobs, "run at once)")


if __name__ == "__main__":
    main()
