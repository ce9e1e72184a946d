"""A job's channel under back-pressure (issue 11 item 5): the daemon SIGSTOPped while a job
floods it. The job's channel survives, holds what its bound allows, says what it dropped, and
the job is heard and obeyed again once the daemon runs."""

from __future__ import annotations

import signal
from pathlib import Path

from pioreactor.held import MAX_LOG_LINES
from tests.support.daemon import Daemon
from tests.support.plugins import FLOOD_JOB
from tests.support.waiting import wait_for


def numbers(d: Daemon) -> list[int]:
    rows = d.query("SELECT message FROM logs WHERE task = 'flood' AND message LIKE 'line %'")
    return sorted(int(m.split()[1]) for (m,) in rows)


def test_a_flood_while_the_daemon_is_stopped_is_held_in_order_and_the_job_lives(make_daemon) -> None:
    d: Daemon = make_daemon()
    d.add_plugin("flood", FLOOD_JOB)
    go, done = d.root / "go", d.root / "done"
    total = 2 * MAX_LOG_LINES
    d.start()
    d.pioctl("start", "flood", "--rate", "0", "--go", str(go), "--total", str(total),
             "--done", str(done))
    pid = d.status()["flood"]["pid"]
    assert d.process is not None
    d.process.send_signal(signal.SIGSTOP)
    try:
        go.touch()
        wait_for(done.exists, 60, "the job done flooding a stopped daemon")
    finally:
        d.process.send_signal(signal.SIGCONT)
    said = wait_for(lambda: d.query("SELECT message FROM logs WHERE task = 'flood' AND "
                                    "level = 'WARNING' AND message LIKE '%were dropped%'"), 30,
                    "the drop said")
    got = numbers(d)
    assert got == list(range(1, len(got) + 1))  # in order, none missing before the drop
    assert MAX_LOG_LINES <= len(got) < total
    assert int(said[0][0].split()[0]) == total - len(got)
    assert d.status()["flood"]["pid"] == pid
    d.pioctl("set", "flood", "burst", "5")  # heard and obeyed
    wait_for(lambda: numbers(d)[-1] == total + 5, 10, "a burst after the flood")
    assert Path(done).exists()
