"""Benchmark: kill -9 the daemon, keep it down for a while, start a new one.

    .venv/bin/python bench/restart.py [-n 5] [--outage 3] [--tick 0.01]

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
from tests.support.plugins import CHATTY_JOB  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--outage", type=float, default=3.0)
    parser.add_argument("--tick", type=float, default=0.01)
    options = parser.parse_args()
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
