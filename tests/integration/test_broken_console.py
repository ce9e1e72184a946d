"""The daemon's console (stdout/stderr) going away never stops or kills it (issue 10 item 2).

`bash scripts/demo.sh | tee demo.log` then Ctrl-C: tee dies first, and every later console
write of the daemon fails (EPIPE for a pipe, EIO for a terminal that was closed). The daemon
must go on logging to its file, SQLite and MQTT, and a SIGINT/SIGTERM must still stop every
job cleanly, leaving no process and no `is_running = 1` row behind.
"""

from __future__ import annotations

import os
import pty
import signal

import pytest

from tests.integration.test_restart import alive, topic
from tests.support.daemon import Daemon
from tests.support.plugins import CHATTY_JOB
from tests.support.waiting import wait_for


def broken_console(kind: str) -> tuple[int, int]:
    """(the fd to give the daemon as its console, the reader's end to close)."""
    if kind == "pipe":
        read_end, write_end = os.pipe()
        return write_end, read_end
    controller, terminal = pty.openpty()  # a terminal whose window is closed: EIO on write
    return terminal, controller


def console_daemon(make_daemon, kind: str) -> Daemon:
    d: Daemon = make_daemon()
    d.add_plugin("chatty", CHATTY_JOB)
    console, reader = broken_console(kind)
    d.start(console=console)
    os.close(console)  # the daemon holds its own copy
    d.close_console = lambda: os.close(reader)  # type: ignore[attr-defined]
    return d


def start_jobs(d: Daemon, watcher) -> dict[str, int]:
    d.pioctl("start", "stirring")
    d.pioctl("start", "chatty", "--tick", "0.05")  # logs 20 lines a second: console writes
    return {name: row["pid"] for name, row in d.status().items()}


def lines_logged(d: Daemon) -> int:
    return d.query("SELECT count(*) FROM logs")[0][0]


@pytest.mark.parametrize("kind, sig", [("pipe", signal.SIGINT), ("pipe", signal.SIGTERM),
                                       ("pty", signal.SIGINT)])
def test_a_stop_after_the_console_closed_stops_every_job(make_daemon, watcher, kind, sig):
    d = console_daemon(make_daemon, kind)
    pids = start_jobs(d, watcher)
    d.close_console()
    before = lines_logged(d)
    wait_for(lambda: lines_logged(d) > before + 20, 10, "the daemon logging on (and writing to "
             "the closed console) for a while")
    assert d.process.poll() is None, d.log_text()
    assert set(d.status()) == {"stirring", "chatty"}  # still serving
    wait_for(lambda: d.query("SELECT count(*) FROM logs WHERE level = 'WARNING' AND message "
                             "LIKE 'console output (stderr) failed%'") == [(1,)], 5,
             "one WARNING saying the console is gone")

    d.process.send_signal(sig)
    assert d.process.wait(20) == 0
    assert not any(alive(pid) for pid in pids.values()), "a job outlived its daemon"
    assert d.query("SELECT job_name, is_running, end_state FROM pio_job_metadata ORDER BY job_name") \
        == [("chatty", 0, "disconnected"), ("stirring", 0, "disconnected")]
    for job in pids:
        assert watcher.last(topic(d, job, "$state")).text == "disconnected"
        assert not watcher.find(topic(d, job, "$state"), lambda m: m.text == "lost")
    assert watcher.last(f"pioreactor/{d.unit}/$experiment/pioreactord/$state").text == "disconnected"
    assert d.query("SELECT count(*) FROM logs WHERE message LIKE 'internal error%'") == [(0,)]
