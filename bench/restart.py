"""Benchmark: kill -9 the daemon, keep it down for a while, start a new one.

    .venv/bin/python bench/restart.py [-n 5] [--outage 3] [--tick 0.01]
    .venv/bin/python bench/restart.py --bursts 20 [--burst-size 3000]

`--bursts K` (issue 10 item 6): a job logs `--burst-size`-line bursts; each of K rounds starts a
burst, kills -9 the daemon once the first lines of it are in SQLite, starts a new one and waits
for the whole burst; then reports the lines lost and the lines stored twice over all rounds
(both must be 0), and the time from the new daemon's start to the burst complete.

Starts its own mosquitto and daemon (like the tests) running stirring and a plugin that logs
"tick N" every `--tick` seconds. Each round: kill -9 the daemon, wait `--outage` seconds (the
outage is what is measured, so this sleep is the point), start a new daemon, then report
- re-adoption: from starting the new daemon to `pioctl status` listing both jobs, same pids, ready
  (includes the daemon's own start-up and pioctl's polling);
- buffered lines: the ticks the job logged during the outage (by their own timestamps) that reached
  SQLite, and any tick numbers missing from the sequence (lines in flight when the daemon died).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pioreactord.protocol import utc_timestamp  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.plugins import CHATTY_JOB, FLOOD_JOB  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

INI = "[stirring]\ntarget_rpm = 500\nrpm_interval = 1\n"


def ticks(d: Daemon, since: str = "", until: str = "~") -> list[int]:
    rows = d.query("SELECT message FROM logs WHERE task = 'chatty' AND message LIKE 'tick %' "
                   "AND timestamp >= ? AND timestamp < ?", (since, until))
    return sorted(int(m.split()[1]) for (m,) in rows)


def adopted(d: Daemon, pids: dict[str, int]) -> bool:
    rows = d.pioctl_json("status")
    return {r["job_name"]: (r["pid"], r["state"]) for r in rows} == \
        {n: (p, "ready") for n, p in pids.items()}


def one_round(d: Daemon, pids: dict[str, int], outage: float) -> tuple[float, int, int]:
    d.stop(signal.SIGKILL)
    down_since = utc_timestamp()
    time.sleep(outage)
    began, back_at = time.monotonic(), utc_timestamp()
    d.start()
    wait_for(lambda: adopted(d, pids), 30, "re-adoption", poll=0.005)
    took = time.monotonic() - began
    last = max(ticks(d))
    wait_for(lambda: max(ticks(d)) > last + 50, 10, "ticks after re-adoption")
    during = ticks(d, down_since, back_at)
    everything = ticks(d)
    missing = len(set(range(everything[0], everything[-1] + 1)) - set(everything))
    return took, len(during), missing


def flood_lines(d: Daemon) -> list[int]:
    rows = d.query("SELECT message FROM logs WHERE task = 'flood' AND message LIKE 'line %'")
    return [int(m.split()[1]) for (m,) in rows]


def kills_mid_burst(rounds: int, size: int) -> None:
    broker = Broker()
    d = Daemon(broker.port)
    d.add_plugin("flood", FLOOD_JOB)
    try:
        d.start()
        d.pioctl("start", "flood")
        pids = {"flood": d.status()["flood"]["pid"]}
        took = []
        for n in range(1, rounds + 1):
            before = len(flood_lines(d))
            d.pioctl("set", "flood", "burst", str(size))
            wait_for(lambda b=before: len(flood_lines(d)) > b + 100, 10, "the burst under way",
                     poll=0.002)
            at_kill = len(flood_lines(d)) - before
            d.stop(signal.SIGKILL)
            began = time.monotonic()
            d.start()
            wait_for(lambda: adopted(d, pids), 30, "re-adoption", poll=0.005)
            wait_for(lambda n=n: len(set(flood_lines(d))) >= n * size, 60, "the whole burst")
            took.append(time.monotonic() - began)
            print(f"round {n}: killed with {at_kill} of {size} lines in SQLite; burst complete "
                  f"{took[-1] * 1000:.0f} ms after the new daemon started")
        lines = flood_lines(d)
        lost = len(set(range(1, rounds * size + 1)) - set(lines))
        twice = len(lines) - len(set(lines))
        print(f"{rounds} kills -9 mid-burst, {rounds * size} lines: {lost} lost, {twice} stored "
              f"twice; burst complete after restart median {statistics.median(took) * 1000:.0f} ms "
              f"(min {min(took) * 1000:.0f}, max {max(took) * 1000:.0f})")
    finally:
        d.cleanup()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--outage", type=float, default=3.0)
    parser.add_argument("--tick", type=float, default=0.01)
    parser.add_argument("--bursts", type=int, default=0)
    parser.add_argument("--burst-size", type=int, default=3000)
    options = parser.parse_args()
    if options.bursts:
        return kills_mid_burst(options.bursts, options.burst_size)
    broker = Broker()
    d = Daemon(broker.port, extra_ini=INI)
    d.add_plugin("chatty", CHATTY_JOB)
    try:
        d.start()
        d.pioctl("start", "stirring")
        d.pioctl("start", "chatty", "--tick", str(options.tick))
        pids = {name: row["pid"] for name, row in d.status().items()}
        wait_for(lambda: len(ticks(d)) > 50, 10, "first ticks")
        took_all, missing_all = [], 0
        for i in range(options.n):
            took, during, missing = one_round(d, pids, options.outage)
            took_all.append(took)
            missing_all = missing
            print(f"round {i + 1}: re-adopted in {took * 1000:.0f} ms; {during} lines logged during "
                  f"the {options.outage:g} s outage reached SQLite; {missing} ticks missing so far")
        print(f"re-adoption median {statistics.median(took_all) * 1000:.0f} ms "
              f"(min {min(took_all) * 1000:.0f}, max {max(took_all) * 1000:.0f}, n={options.n}); "
              f"ticks missing over all rounds: {missing_all}")
    finally:
        d.cleanup()
        broker.stop()


if __name__ == "__main__":
    main()
