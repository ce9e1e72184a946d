"""Benchmark: a long broker outage while a job logs 1,000 lines a second (issue 11 item 4).

    .venv/bin/python bench/outage.py [--seconds 600] [--rate 1000]

Starts its own mosquitto and daemon (like the tests) running the `flood` test plugin at `--rate`
lines/s, stops the broker for `--seconds` (the outage is what is measured, so waiting it out is
the point), starts it again and reports:
- the daemon's RSS before, at its peak during the outage (sampled every second) and after;
- what arrived on MQTT once the broker was back: the job's lines (count, first and last number;
  the last must be the newest logged), the daemon's `$state`, the job's `$state`;
- the drop the daemon reported (its WARNING line) and the lines in SQLite (all of them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.broker import Broker, Watcher  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.plugins import FLOOD_JOB  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def line_number(payload: bytes) -> int | None:
    message = json.loads(payload).get("message", "")
    return int(message.split()[1]) if message.startswith("line ") else None


def newest_logged(d: Daemon) -> int:
    rows = d.query("SELECT message FROM logs WHERE task = 'flood' ORDER BY rowid DESC LIMIT 1")
    return int(rows[0][0].split()[1]) if rows and rows[0][0].startswith("line ") else 0


def outage(d: Daemon, broker: Broker, seconds: float) -> tuple[float, int]:
    broker.kill()
    peak, ends = 0.0, time.monotonic() + seconds
    while time.monotonic() < ends:
        assert d.process is not None
        peak = max(peak, rss_mib(d.process.pid))
        time.sleep(min(1.0, max(0.0, ends - time.monotonic())))  # sampling, not synchronising
    last = newest_logged(d)
    broker.start()
    return peak, last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    options = parser.parse_args()
    broker = Broker()
    d = Daemon(broker.port)
    d.add_plugin("flood", FLOOD_JOB)
    try:
        d.start()
        assert d.process is not None
        d.pioctl("start", "flood", "--rate", str(options.rate))
        wait_for(lambda: newest_logged(d) > 100, 20, "the first lines")
        before = rss_mib(d.process.pid)
        peak, last_during = outage(d, broker, options.seconds)
        back = time.monotonic()
        watcher = Watcher(broker.port, f"pioreactor/{d.unit}/#")
        state = f"pioreactor/{d.unit}/$experiment/pioreactord/$state"
        logs = f"pioreactor/{d.unit}/exp1/logs/flood/info"
        watcher.wait(state, "ready", timeout=30)
        watcher.wait(f"pioreactor/{d.unit}/exp1/flood/$state", "ready", timeout=30)
        wait_for(lambda: (line_number(getattr(watcher.last(logs), "payload", b"{}")) or 0)
                 >= last_during, 60, "the newest line of the outage")
        took = time.monotonic() - back
        numbers = [n for m in watcher.find(logs) if (n := line_number(m.payload)) is not None]
        numbers = [n for n in numbers if n <= last_during]
        after = rss_mib(d.process.pid)
        dropped = d.query("SELECT message FROM logs WHERE task = 'pioreactord' AND "
                          "message LIKE '%dropped while it was away%'")
        in_sqlite = d.query("SELECT count(*) FROM logs WHERE task = 'flood' AND message LIKE 'line %'")
        watcher.close()
        print(f"outage {options.seconds:g} s at {options.rate:g} lines/s: {last_during} lines logged")
        print(f"daemon RSS: {before:.1f} MiB before, {peak:.1f} MiB peak during, {after:.1f} MiB after")
        print(f"arrived on MQTT from the outage: {len(numbers)} lines, {min(numbers)}..{max(numbers)} "
              f"(newest logged {last_during}), all in {took:.1f} s after the broker was back; "
              "daemon and job $state ready")
        print(f"reported: {dropped[0][0] if dropped else 'no drop'}")
        print(f"in SQLite: {in_sqlite[0][0]} lines")
    finally:
        d.cleanup()
        broker.stop()


if __name__ == "__main__":
    main()
