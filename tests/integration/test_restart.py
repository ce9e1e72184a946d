"""A daemon that dies (kill -9) leaves its jobs running; the next one adopts them (SPEC §1, §5)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.plugins import CHATTY_JOB
from tests.support.waiting import wait_for

STIRRING_INI = """
[stirring]
target_rpm = 500
initial_duty_cycle = 30
rpm_interval = 1
"""


def topic(d: Daemon, job: str, leaf: str) -> str:
    return f"pioreactor/{d.unit}/exp1/{job}/{leaf}"


def pwms(d: Daemon) -> str:
    return f"pioreactor/{d.unit}/exp1/pwms/dc"


def payload(message) -> dict:
    return json.loads(message.payload) if message.payload else {}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def say(inbox: Path, word: str) -> None:
    """Make the chatty job log `heard WORD` and set note = WORD; returns once it did."""
    tmp = inbox.with_suffix(".tmp")
    tmp.write_text(word)
    tmp.replace(inbox)
    wait_for(lambda: Path(f"{inbox}.done").exists() and not inbox.exists(), 10, f"chatty heard {word}")
    Path(f"{inbox}.done").unlink()


def logged(d: Daemon, message: str) -> int:
    return d.query("SELECT count(*) FROM logs WHERE message = ?", (message,))[0][0]


def readopted(d: Daemon, pids: dict[str, int]):
    def check():
        status = d.pioctl_json("status")
        return {r["job_name"]: (r["pid"], r["state"]) for r in status} == \
            {name: (pid, "ready") for name, pid in pids.items()}
    return check


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon(extra_ini=STIRRING_INI)
    d.add_plugin("chatty", CHATTY_JOB)
    d.inbox = d.root / "inbox"
    return d.start()


def start_both(d: Daemon, watcher) -> dict[str, int]:
    d.pioctl("start", "stirring")
    d.pioctl("start", "chatty", "--inbox", str(d.inbox))
    watcher.wait(pwms(d), predicate=lambda m: payload(m).get("17", 0) > 0)
    return {name: row["pid"] for name, row in d.status().items()}


def test_jobs_outlive_kill_9_and_the_next_daemon_adopts_them(daemon, watcher):
    pids = start_both(daemon, watcher)
    daemon.stop(signal.SIGKILL)
    assert all(alive(pid) for pid in pids.values())
    say(daemon.inbox, "while-down")  # a log line and a value change nobody receives yet

    restarted = time.monotonic()
    daemon.start()
    wait_for(readopted(daemon, pids), 10, "both jobs adopted with their pids, ready")
    print(f"re-adopted {time.monotonic() - restarted:.2f} s after the new daemon was started")
    assert [(r["pin"], r["job_name"], r["pid"]) for r in daemon.pioctl_json("locks")] == \
        [(17, "stirring", pids["stirring"])]
    watcher.wait(topic(daemon, "chatty", "note"), "while-down", since=restarted)
    watcher.wait(topic(daemon, "stirring", "target_rpm"), "500.0", since=restarted)
    wait_for(lambda: logged(daemon, "heard while-down") == 1, 5, "the buffered log line in SQLite")
    # Its stdout pipe died with the old daemon: the print went to the log instead of raising.
    wait_for(lambda: logged(daemon, "printed while-down") == 1, 5, "the printed line in SQLite")
    assert daemon.status()["chatty"]["settings"]["note"] == "while-down"

    # The new daemon's simulated motor runs again: the adopted duty cycle was re-applied.
    watcher.wait(pwms(daemon), since=restarted, predicate=lambda m: payload(m).get("17", 0) > 0)
    watcher.wait(topic(daemon, "stirring", "measured_rpm"), since=restarted, timeout=15,
                 predicate=lambda m: abs(payload(m).get("measured_rpm", 0) - 500) <= 50)

    errors = daemon.query("SELECT task, message FROM logs WHERE level IN ('ERROR', 'WARNING') "
                          "AND task != 'pioreactord'")
    assert errors == [], errors  # the jobs never noticed (a hw request made meanwhile waited)
    daemon.pioctl("set", "chatty", "note", "hello")
    watcher.wait(topic(daemon, "chatty", "note"), "hello")
    assert "chatty disconnected" in daemon.pioctl("stop", "chatty").stdout
    wait_for(lambda: daemon.query("SELECT end_state FROM pio_job_metadata WHERE job_name='chatty'")
             == [("disconnected",)], 5, "chatty's row closed as a clean stop")


def test_adopted_job_killed_is_lost_with_its_pin_off(daemon, watcher):
    pids = start_both(daemon, watcher)
    daemon.stop(signal.SIGKILL)
    daemon.start()
    wait_for(readopted(daemon, pids), 10, "both jobs adopted")
    watcher.wait(pwms(daemon), predicate=lambda m: payload(m).get("17", 0) > 0)
    killed = time.monotonic()
    os.kill(pids["stirring"], signal.SIGKILL)
    watcher.wait(topic(daemon, "stirring", "$state"), "lost", since=killed)
    watcher.wait(pwms(daemon), since=killed, predicate=lambda m: payload(m) == {})
    watcher.wait(topic(daemon, "stirring", "duty_cycle"), "", since=killed)
    wait_for(lambda: daemon.pioctl_json("locks") == [], 5, "pin 17 unlocked")
    wait_for(lambda: daemon.query("SELECT is_running, exit_code, end_state FROM pio_job_metadata "
                                  "WHERE job_name='stirring'") == [(0, None, "lost")], 5, "row")
    line = daemon.query("SELECT message FROM logs WHERE task='stirring' AND level='ERROR'")
    assert any("exit status unknown" in m for (m,) in line), line


def test_job_that_ended_while_the_daemon_was_down_is_lost(daemon, watcher):
    daemon.pioctl("start", "chatty", "--inbox", str(daemon.inbox))
    pid = daemon.status()["chatty"]["pid"]
    daemon.stop(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 5, "chatty gone")
    restarted = time.monotonic()
    daemon.start()
    watcher.wait(topic(daemon, "chatty", "$state"), "lost", since=restarted)
    watcher.wait(topic(daemon, "chatty", "note"), "", since=restarted)  # non-persist: cleared
    assert watcher.last(topic(daemon, "chatty", "kept")).text == "kept-value"
    wait_for(lambda: daemon.query("SELECT is_running, end_state FROM pio_job_metadata")
             == [(0, "lost")], 5, "row closed as lost")
    assert daemon.status() == {}
    assert "chatty ready" in daemon.pioctl("start", "chatty").stdout


def test_job_whose_row_is_unknown_is_adopted_anyway(daemon, watcher):
    import sqlite3

    pids = start_both(daemon, watcher)
    daemon.stop(signal.SIGKILL)
    with sqlite3.connect(daemon.database) as conn:  # as if the database had been replaced
        conn.execute("DELETE FROM pio_job_metadata")
    daemon.start()
    wait_for(readopted(daemon, pids), 10, "both jobs adopted without their rows")
    wait_for(lambda: sorted(daemon.query("SELECT job_name, pid, is_running FROM pio_job_metadata"))
             == sorted([(name, pid, 1) for name, pid in pids.items()]), 5, "new rows written")
    assert "stirring disconnected" in daemon.pioctl("stop", "stirring").stdout
    assert daemon.pioctl_json("locks") == []


def flood_lines(d: Daemon) -> tuple[int, int]:
    """(rows, distinct lines) of the flood job in SQLite."""
    return d.query("SELECT count(*), count(DISTINCT message) FROM logs WHERE task = 'flood' "
                   "AND message LIKE 'line %'")[0]


def test_kill_9_mid_burst_loses_no_line_and_stores_none_twice(make_daemon):
    """The job holds each line until the daemon says it is committed; the next daemon gets the
    unconfirmed ones again and drops those it already has (issue 10 item 6)."""
    from tests.support.plugins import FLOOD_JOB

    d = make_daemon()
    d.add_plugin("flood", FLOOD_JOB)
    d.start()
    d.pioctl("start", "flood")
    pid = d.status()["flood"]["pid"]
    bursts, size = 3, 3000
    for n in range(1, bursts + 1):
        before = flood_lines(d)[0]
        d.pioctl("set", "flood", "burst", str(size))
        wait_for(lambda b=before: flood_lines(d)[0] > b + 100, 10, "the burst under way")
        d.stop(signal.SIGKILL)
        d.start()
        wait_for(readopted(d, {"flood": pid}), 15, "the flood job adopted")
        wait_for(lambda n=n: flood_lines(d)[1] >= n * size, 30, f"all {n * size} lines")
    rows, distinct = flood_lines(d)
    assert (rows, distinct) == (bursts * size, bursts * size)
    numbers = sorted(int(m.split()[1]) for (m,) in d.query(
        "SELECT message FROM logs WHERE task = 'flood' AND message LIKE 'line %'"))
    assert numbers == list(range(1, bursts * size + 1))
