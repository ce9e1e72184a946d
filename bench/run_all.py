"""Every figure of issue 14, each beside its yardstick measured in the same run.

    bash bench/run.sh [-n 10] [--lines 20000]      (builds .venv-bench with `pip install .`, runs this)

Prints a Markdown table (median, min–max, n; the ratio to the yardstick; the goal) and the machine
it ran on. Medians of n rounds. The interpreter yardstick runs in a thread all along (every
0.2 s; a few % of one core) and each figure is set beside the samples of its own minutes. Starts its own mosquitto twice, a stock one and one with
`set_tcp_nodelay true`, and its own daemons (tests/support), and kills all of them at the end.
Then runs the other benches that exist (bench/pioctl.py, log_throughput.py, progress_bar.py) as
they are.
Run it with the interpreter of a regular install (bench/run.sh does): an editable install slows
every interpreter start and so every figure that includes one.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from bench import logflood, remote_start, spawn  # noqa: E402
from bench.yardsticks import Figure, StartSampler, bare_interpreter_memory, timed_round  # noqa: E402
from tests.support.broker import Broker, Watcher  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.plugins import SETTINGS_JOB  # noqa: E402

NODELAY = "set_tcp_nodelay true\n"
T = TypeVar("T")
# Pioreactor's own figures on this machine (/work/shared/notes/machine-facts.md), not re-measured:
# (what, figure, the yardstick of that day: `python -c pass` from a venv, 22 ms).
PIOREACTOR = (
    ("Pioreactor minimal job: launch -> `$state=ready`", "282 ms", 282 / 22),
    ("Pioreactor job memory (fresh interpreter)", "RSS 27.7 MiB, USS 16.9 MiB", None),
    ("the same job forked from a warm pre-imported process", "14.7 ms; USS 3.9 MiB", 14.7 / 22),
    ("Pioreactor job: kill -9 -> `lost` on the broker", "3.6 ms", 3.6 / 22),
)


def ms(seconds: list[float], name: str) -> Figure:
    return Figure(name, "ms", [s * 1000 for s in seconds])


def daemon_idle_rss(broker: Broker, rounds: int) -> Figure:
    """RSS of a daemon with no job, just started (its fork server ready), one daemon per round."""
    figure = Figure("daemon idle RSS", "MiB")
    for _ in range(rounds):
        daemon = Daemon(broker.port)
        try:
            daemon.start()
            assert daemon.process is not None
            figure.samples.append(psutil.Process(daemon.process.pid).memory_info().rss / 2**20)
        finally:
            daemon.cleanup()
    return figure


def pioctl_status(daemon: Daemon, rounds: int) -> Figure:
    figure = Figure("`pioctl status`", "ms")
    for _ in range(rounds):
        with timed_round():
            began = time.perf_counter()
            daemon.pioctl("status")
            figure.samples.append((time.perf_counter() - began) * 1000)
    return figure


def spawn_figures(broker: Broker, rounds: int) -> dict[str, Figure]:
    """Control call -> ready, pioctl start -> ready, pioctl status, USS of idle forked jobs."""
    daemon = Daemon(broker.port)
    daemon.add_plugin("tester", SETTINGS_JOB)
    for i in range(rounds):
        daemon.add_plugin(f"tester{i}", SETTINGS_JOB.replace("tester", f"tester{i}"))
    watcher = Watcher(broker.port, f"pioreactor/{daemon.unit}/#")
    try:
        daemon.start()
        daemon.pioctl("start", "tester")  # warm the page cache and the .pyc files
        daemon.pioctl("stop", "tester")
        figures = {"status": pioctl_status(daemon, rounds)}
        times = spawn.time_starts(daemon, watcher, rounds)
        figures["control"] = Figure("start, control call -> ready", "ms",
                                    times["control call start -> ready (ms)"])
        figures["pioctl start"] = Figure("`pioctl start` -> ready", "ms",
                                         times["pioctl start -> ready (ms)"])
        memory = spawn.measure_memory(daemon, rounds)
        figures["uss"] = Figure("USS of an idle forked job", "MiB", memory["USS (MiB)"])
        figures["rss"] = Figure("RSS of an idle forked job", "MiB", memory["RSS (MiB)"])
        return figures
    finally:
        watcher.close()
        daemon.cleanup()


KSM_RUN = Path("/sys/kernel/mm/ksm/run")  # the kernel's same-page merging: 1 = running
KSM_WAIT = 600.0  # s: the longest the merged row waits for ksmd
KSM_SCANS = 3  # ksmd's whole passes the merged row waits for (a page merges on its second)


def merged_uss(broker: Broker, jobs: int) -> Figure:
    """USS of `jobs` idle forked jobs once same-page merging has settled (the fork server marks
    its memory mergeable; root turns KSM on): no samples where KSM is off."""
    try:
        on = KSM_RUN.read_text().strip() == "1"
    except OSError:
        on = False
    figure = Figure("USS of an idle forked job, KSM on, once merged" if on else
                    "USS with KSM: off on this machine (as root: echo 1 > /sys/kernel/mm/ksm/run)",
                    "MiB")
    if not on:
        return figure
    daemon = Daemon(broker.port)
    names = [f"tester{i}" for i in range(jobs)]
    for name in names:
        daemon.add_plugin(name, SETTINGS_JOB.replace("tester", name))
    try:
        daemon.start()
        for name in names:
            daemon.pioctl("start", name)
        pids = [row["pid"] for row in daemon.status().values()]
        # A page is merged on ksmd's second pass over it (the first only notes it): wait for
        # KSM_SCANS whole passes once the jobs are idle. 100 pages / 20 ms (the default): ~25 s
        # here; at sleep_millisecs = 200 (README.Debian's advice) ~3.5 min.
        scans = KSM_RUN.with_name("full_scans")
        first = int(scans.read_text())
        began = time.monotonic()
        said = began
        deadline = began + KSM_WAIT
        while (done := int(scans.read_text()) - first) < KSM_SCANS and time.monotonic() < deadline:
            if time.monotonic() - said >= 15:
                said = time.monotonic()
                print(f"  waiting for ksmd: {done} of {KSM_SCANS} full scans after "
                      f"{said - began:.0f} s", file=sys.stderr, flush=True)
            time.sleep(0.5)
        if done < KSM_SCANS:
            figure.name = (f"USS of an idle forked job, KSM on, not merged yet ({done} of "
                           f"{KSM_SCANS} ksmd scans in {KSM_WAIT:.0f} s)")
        figure.samples = [psutil.Process(pid).memory_full_info().uss / 2**20 for pid in pids]
        return figure
    finally:
        daemon.cleanup()


# The other engineers' benches, run as they are and printed after the table: (script, its
# arguments; "ROUNDS" becomes -n). progress_bar.py's rounds are 10 s bars: three of them.
EXTRA = (("pioctl.py", ["ROUNDS", "--venv", sys.prefix]), ("log_throughput.py", ["ROUNDS"]),
         ("progress_bar.py", ["-n", "3", "--seconds", "10"]))


def run_extra(rounds: int) -> None:
    here = Path(__file__).resolve().parent
    for script, arguments in EXTRA:
        if not (here / script).exists():
            continue
        argv = [a for arg in arguments for a in (["-n", str(rounds)] if arg == "ROUNDS" else [arg])]
        print(f"\n$ bench/{script} {' '.join(argv)}", flush=True)
        done = subprocess.run([sys.executable, str(here / script), *argv], capture_output=True,
                              text=True)
        failed = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        print(done.stdout.rstrip() if done.returncode == 0 else f"failed: {failed}", flush=True)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.machine())
    mosquitto = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} cores, {cpu}; load {load}; "
            f"Python {platform.python_version()} ({Path(sys.prefix).name}); "
            f"{mosquitto.splitlines()[0] if mosquitto else 'mosquitto'}")


def row(figure: Figure, yardstick: Figure, goal: str) -> str:
    ratio = f"{figure.median / yardstick.median:.2f}×" if figure.samples else ""
    return f"| {figure.name} | {figure.text()} | {yardstick.name}: {yardstick.text()} | " \
           f"{ratio} | {goal} |"


def timed(measure: Callable[[], T]) -> tuple[T, float, float]:
    began = time.monotonic()
    return measure(), began, time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10, help="rounds per figure (>= 10 for the table)")
    parser.add_argument("--lines", type=int, default=20000,
                        help="log lines per burst (a short one mostly measures its fixed "
                             "costs: the set call, the sink's 10 ms gathering of its last batch)")
    parser.add_argument("--no-extra", action="store_true", help="skip the other benches")
    options = parser.parse_args()
    n = options.n
    print(f"machine: {machine()}", flush=True)
    bare_rss, bare_uss = bare_interpreter_memory(n)
    sampler = StartSampler()
    stock, tuned = Broker(), Broker(NODELAY)
    try:
        mqtt_stock = timed(lambda: ms(remote_start.measure(n, stock), "job start over MQTT, "
                                      "`$state/set ready` -> `$state ready`, stock mosquitto"))
        mqtt_stock_quick = timed(lambda: ms(
            remote_start.measure(n, stock, ack_at_once=True),
            "the same, stock mosquitto, a watcher that acknowledges at once (TCP_QUICKACK)"))
        mqtt_tuned = timed(lambda: ms(remote_start.measure(n, tuned), "job start over MQTT, "
                                      "the same, mosquitto `set_tcp_nodelay true`"))
        spawned = timed(lambda: spawn_figures(tuned, n))
        rss = daemon_idle_rss(tuned, n)
        merged = merged_uss(tuned, n)
        logs, ceiling = logflood.measure(tuned, n, options.lines)
    finally:
        sampler.stop()
        stock.stop()
        tuned.stop()
    figures, *window = spawned
    print("\n| figure | median (min–max, n) | yardstick, same minutes | ratio | goal |")
    print("|---|---|---|---|---|")
    print(row(mqtt_tuned[0], sampler.during(*mqtt_tuned[1:]), "< 1.0×"))
    print(row(mqtt_stock[0], sampler.during(*mqtt_stock[1:]), "< 3×"))
    print(row(mqtt_stock_quick[0], sampler.during(*mqtt_stock_quick[1:]), ""))
    print(row(figures["control"], sampler.during(*window), "≤ 8 ms"))
    print(row(figures["pioctl start"], sampler.during(*window), ""))
    print(row(figures["status"], sampler.during(*window), "≤ 4×"))
    print(row(figures["uss"], bare_uss, "≤ 4 MB (0.3×)"))
    print(row(merged, bare_uss, "≤ 4 MB (0.3×)"))
    print(row(figures["rss"], bare_rss, ""))
    print(row(logs, ceiling, "≥ 40,000 lines/s"))
    print(row(rss, bare_rss, "≤ 30 MB"))
    print("\nPioreactor, for comparison (notes/machine-facts.md, not re-measured)")
    print("\n| Pioreactor | figure | ratio to that day's `python -c pass` (22 ms) |\n|---|---|---|")
    for what, figure, ratio in PIOREACTOR:
        print(f"| {what} | {figure} | {'' if ratio is None else f'{ratio:.2f}×'} |")
    if not options.no_extra:
        run_extra(n)


if __name__ == "__main__":
    main()
