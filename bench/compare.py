"""Before/after on a noisy machine: two installs' daemons measured in alternation, round by round.

    .venv-bench/bin/python bench/compare.py BEFORE_VENV AFTER_VENV [-n 30]

(e.g. BEFORE_VENV from `git archive main | tar -x -C /tmp/a && python3 -m venv /tmp/va &&
/tmp/va/bin/pip install /tmp/a`.) One mosquitto; one daemon per install, each running its own
install's code (its fork server, its jobs). Each round starts the test job on one daemon, then on
the other (control call -> ready), reads the job's CPU time since it was asked to start (a spare
process's time before the request does not count) and its USS, and kills it. The load of the
machine is then the same for both, minute by minute, and the ratio after/before means something
even where the same figure alone drifts 2x within an hour.
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

import tests.support.daemon as support  # noqa: E402
from pioreactord.client import call  # noqa: E402
from tests.support.broker import Broker, Watcher  # noqa: E402
from tests.support.plugins import SETTINGS_JOB  # noqa: E402

GAP = 0.2  # s between one side's start and the other's
FIGURES = ("control call -> ready (ms)", "job CPU on the start's path (ms)", "USS, idle job (MiB)")


def cpu_ms(pid: int) -> float:
    """CPU time of every live thread of `pid` (schedstat: nanoseconds, unlike psutil's ticks)."""
    try:
        return sum(int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
                   for task in os.listdir(f"/proc/{pid}/task")) / 1e6
    except OSError:
        return 0.0


class Side:
    """One install's daemon and what was measured on it."""

    def __init__(self, venv: Path, broker: Broker) -> None:
        self.bin = venv / "bin"
        support.BIN = self.bin  # tests.support starts pioreactord and pioctl from BIN
        self.daemon = support.Daemon(broker.port)
        self.daemon.add_plugin("tester", SETTINGS_JOB)
        self.daemon.start()
        self.daemon.pioctl("start", "tester")  # warm the page cache and the .pyc files
        self.daemon.pioctl("stop", "tester")
        self.watcher = Watcher(broker.port, f"pioreactor/{self.daemon.unit}/#")
        self.samples: dict[str, list[float]] = {name: [] for name in FIGURES}

    def one_start(self) -> None:
        support.BIN = self.bin
        daemon = self.daemon
        spares = [c.pid for c in psutil.Process(daemon.process.pid).children()  # type: ignore[union-attr]
                  if c.name() == "pio-forkspare"]
        before = {pid: cpu_ms(pid) for pid in spares}
        began = time.perf_counter()
        reply = call(str(daemon.root / "run" / "control.sock"),
                     {"cmd": "start", "args": {"job": "tester", "args": []}}, 30)
        took = (time.perf_counter() - began) * 1000
        assert reply["ok"], reply
        pid = reply["result"]["pid"]
        time.sleep(0.02)  # the bench's own pause: let the job's threads settle before reading USS
        self.samples[FIGURES[0]].append(took)
        self.samples[FIGURES[1]].append(cpu_ms(pid) - before.get(pid, 0.0))
        self.samples[FIGURES[2]].append(psutil.Process(pid).memory_full_info().uss / 2**20)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        self.watcher.wait(f"pioreactor/{daemon.unit}/exp1/tester/$state", "lost", since=killed)
        # Each fork server makes its next spare (~5 ms of CPU) some ms after a start: without a
        # pause it would land in the other side's start, and a change of that delay would seem
        # to cost or save what the other side paid.
        time.sleep(GAP)

    def close(self) -> None:
        support.BIN = self.bin
        self.watcher.close()
        self.daemon.cleanup()


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):6.2f}–{max(values):6.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", type=Path, help="a venv with the install to compare against")
    parser.add_argument("after", type=Path, help="a venv with the install to measure")
    parser.add_argument("-n", type=int, default=30, help="rounds (each: one start on each side)")
    options = parser.parse_args()
    broker = Broker()
    sides: list[Side] = []
    try:
        sides = [Side(options.before, broker), Side(options.after, broker)]
        for _ in range(options.n):
            for side in sides:
                side.one_start()
        print(f"{'n=' + str(options.n) + ', interleaved':34}{'before':>24}{'after':>24}"
              f"{'after/before':>14}")
        for name in FIGURES:
            before, after = (side.samples[name] for side in sides)
            print(f"{name:34}{summary(before):>24}{summary(after):>24}"
                  f"{statistics.median(after) / statistics.median(before):13.2f}x")
        print("(median (min–max))")
    finally:
        for side in sides:
            side.close()
        broker.stop()


if __name__ == "__main__":
    main()
