"""Benchmark: how long a `pioctl` command takes, beside a bare interpreter start in the same run.

    .venv/bin/python bench/pioctl.py [-n 20] [--venv DIR]

pioctl is measured from a regular install (`pip install .` into a venv of its own, as the .deb
installs it): an editable install adds a `.pth` finder that costs every interpreter ~12 ms.
Without `--venv`, one is built in a temporary folder (and removed). The daemon and mosquitto run
from this checkout like the tests. Each figure: n runs, interleaved with the yardstick
`python -c pass` of the same venv; median, min, max and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.broker import Broker  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402

YARDSTICK = "python -c pass"


def build_venv(where: Path) -> Path:
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(where)], check=True)
    subprocess.run([str(where / "bin" / "pip"), "install", "-q", str(ROOT)], check=True)
    return where


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms: user + system of the child). CPU time hardly depends on what else the
    machine runs, so it is the steadier figure on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = (time.perf_counter() - began) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def commands(venv: Path, live: Path, dead: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, environment); `dead` is a config whose daemon was never started."""
    pioctl, python = str(venv / "bin" / "pioctl"), str(venv / "bin" / "python")
    env = {**os.environ, "PIOREACTORD_CONFIG": str(live)}
    no_daemon = {**env, "PIOREACTORD_CONFIG": str(dead)}
    return {YARDSTICK: ([python, "-c", "pass"], env),
            "pioctl status": ([pioctl, "status"], env),
            "pioctl --json status": ([pioctl, "--json", "status"], env),
            "pioctl version": ([pioctl, "version"], env),
            "pioctl locks": ([pioctl, "locks"], env),
            "pioctl --help (click)": ([pioctl, "--help"], env),
            "pioctl status, no daemon (exit 3)": ([pioctl, "status"], no_daemon)}


def measure(venv: Path, rounds: int) -> dict[str, list[tuple[float, float]]]:
    broker = Broker()
    daemon, dead = Daemon(broker.port), Daemon(broker.port)
    try:
        daemon.start()
        daemon.pioctl("start", "led_intensity", "--A", "5")
        table = commands(venv, daemon.config, dead.config)
        for argv, env in table.values():  # warm the page cache and the .pyc files
            timed(argv, env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in table}
        for _ in range(rounds):
            for name, (argv, env) in table.items():
                times[name].append(timed(argv, env))
        return times
    finally:
        daemon.cleanup()
        dead.cleanup()
        broker.stop()


def report(times: dict[str, list[tuple[float, float]]]) -> None:
    walls = {name: [w for w, _ in values] for name, values in times.items()}
    cpus = {name: [c for _, c in values] for name, values in times.items()}
    base_wall, base_cpu = statistics.median(walls[YARDSTICK]), statistics.median(cpus[YARDSTICK])
    print(f"{'command':36}{'wall median':>12}{'min':>7}{'max':>7}{'ratio':>7}"
          f"{'CPU median':>12}{'ratio':>7}")
    for name in times:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"{name:36}{wall:10.1f}ms{min(walls[name]):7.1f}{max(walls[name]):7.1f}"
              f"{wall / base_wall:6.1f}x{cpu:10.1f}ms{cpu / base_cpu:6.1f}x")
    print(f"(n={len(walls[YARDSTICK])} each, interleaved; ratio = median / median of {YARDSTICK}; "
          f"CPU = user + system time of the command's process)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20, help="runs per command (>= 10)")
    parser.add_argument("--venv", type=Path, help="a venv with a regular install of this checkout")
    options = parser.parse_args()
    scratch = None
    if options.venv is None:
        scratch = Path(tempfile.mkdtemp(prefix="pioctl-bench"))
        options.venv = build_venv(scratch / "venv")
    try:
        report(measure(options.venv, max(10, options.n)))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
