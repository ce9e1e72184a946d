"""Log throughput: a job logs a burst of lines; lines/s until the last one is in SQLite, on the
broker and in the log file (every sink the SPEC names; the daemon writes the console too).

    .venv-bench/bin/python bench/logflood.py [-n 10] [--lines 20000]

Each round sets the job's `burst` setting (a control call, like `pioctl set`); the job then logs
that many INFO lines as fast as its thread can. The clock runs from the call until all three
sinks hold the whole burst: SQLite by its row count, MQTT by a QoS-0 subscriber that only counts,
the file by the burst's last line (those two are checked once the broker has the burst: checks
meanwhile took CPU from what is measured). The same-run yardstick is one paho client publishing
as many QoS-0 messages through the same broker to the same counter (yardsticks.mqtt_ceiling).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.mqtt_counter import Counter  # noqa: E402
from bench.yardsticks import Figure, mqtt_ceiling, timed_round  # noqa: E402
from pioreactord.client import call  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

FLOOD_JOB = '''
import click
from pioreactor.background_jobs.base import BackgroundJob


class Flood(BackgroundJob):
    job_name = "flood"
    published_settings = {"burst": {"datatype": "integer", "settable": True}}

    def __init__(self):
        super().__init__()
        self.burst = 0
        self.rounds = 0

    def set_burst(self, lines):
        self.rounds += 1
        info = self.logger.info
        for i in range(lines):
            info(f"burst {self.rounds} line {i}")
        self.burst = lines


@click.command(name="flood")
def click_flood():
    Flood().block_until_disconnected()
'''


def _last_rowid(daemon: Daemon) -> int:
    return daemon.query("SELECT coalesce(max(rowid), 0) FROM logs")[0][0]


def _rows_after(daemon: Daemon, rowid: int) -> int:
    """The flood's rows past `rowid` (a range of the rowid: a count over the whole table took
    ~5 ms of CPU per poll by the tenth round, on the 2 cores the daemon was measured on)."""
    return daemon.query("SELECT count(*) FROM logs WHERE rowid > ? AND task = 'flood'",
                        (rowid,))[0][0]


def _file_has(path: Path, offset: int, needle: bytes) -> bool:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return needle in handle.read()


def one_burst(daemon: Daemon, counter: Counter, round_no: int, lines: int) -> float:
    """Lines/s of one burst through SQLite, MQTT and the log file."""
    control = str(daemon.root / "run" / "control.sock")
    log_file = daemon.root / "log" / "pioreactord.log"
    rowid, offset = _last_rowid(daemon), log_file.stat().st_size
    last = f"burst {round_no} line {lines - 1}\n".encode()
    counter.expect(lines)
    began = time.monotonic()
    reply = call(control, {"cmd": "set", "args": {"job": "flood", "setting": "burst",
                                                  "value": str(lines)}}, 30)
    assert reply["ok"], reply
    # The broker first, waited on without polling: polling SQLite and the file meanwhile took
    # CPU from the job and the daemon it measured. They are checked once the broker has it all.
    if not counter.reached.wait(120):
        raise TimeoutError(f"a burst of {lines} lines: {counter.count - counter.target + lines} "
                           "on the broker")
    done = {"mqtt": counter.last_at}

    def all_there() -> bool:
        now = time.monotonic()
        if "sqlite" not in done and _rows_after(daemon, rowid) >= lines:
            done["sqlite"] = now
        if "file" not in done and _file_has(log_file, offset, last):
            done["file"] = now
        return len(done) == 3

    wait_for(all_there, 120, f"a burst of {lines} lines in SQLite and the file", poll=0.002)
    return lines / (max(done.values()) - began)


def measure(broker: Broker, rounds: int, lines: int) -> tuple[Figure, Figure]:
    """(log lines/s through the daemon, the paho QoS-0 ceiling), measured back to back."""
    daemon = Daemon(broker.port)
    daemon.add_plugin("flood", FLOOD_JOB)
    counter = Counter(broker.port, f"pioreactor/{daemon.unit}/+/logs/flood/#")
    figure = Figure("log lines, job -> SQLite + MQTT + file", "lines/s")
    try:
        daemon.start()
        daemon.pioctl("start", "flood")
        one_burst(daemon, counter, 1, lines)  # warm-up: the first burst pays for first touches
        for round_no in range(2, rounds + 2):
            with timed_round():
                figure.samples.append(one_burst(daemon, counter, round_no, lines))
    finally:
        counter.close()
        daemon.cleanup()
    return figure, mqtt_ceiling(broker.port, rounds, lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--lines", type=int, default=20000)
    options = parser.parse_args()
    broker = Broker()
    try:
        for figure in measure(broker, options.n, options.lines):
            print(f"{figure.name:45} {figure.text()}")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
