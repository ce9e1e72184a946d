"""The real daemon's storage faults: a read-only state_dir at start, a full disk while running."""

from __future__ import annotations

import json
import subprocess

from tests.support.daemon import BIN
from tests.support.raw_job import run_raw_job
from tests.support.storage_plugins import LOGGER_JOB
from tests.support.tmpfs import fill, mounted_tmpfs
from tests.support.waiting import wait_for


def move_state(daemon, where) -> None:
    """Point state_dir and the database at `where` (a tmpfs of the test's own)."""
    text = daemon.config.read_text()
    text = text.replace(f"state_dir = {daemon.root}/state", f"state_dir = {where}")
    text = text.replace(f"database = {daemon.database}", f"database = {where}/pioreactord.sqlite")
    daemon.config.write_text(text)
    daemon.database = where / "pioreactord.sqlite"


def test_a_read_only_state_dir_exits_78_with_one_line_naming_it(make_daemon):
    daemon = make_daemon()
    with mounted_tmpfs("1m", read_only=True) as read_only:
        move_state(daemon, read_only)
        result = subprocess.run([str(BIN / "pioreactord"), "--config", str(daemon.config)],
                                env=daemon.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert str(read_only) in lines[0] and "Read-only file system" in lines[0]


def test_a_full_disk_is_said_on_mqtt_and_the_console_and_caught_up(make_daemon, watcher):
    daemon = make_daemon()
    daemon.add_plugin("logger", LOGGER_JOB)
    with mounted_tmpfs("3m") as disk:
        move_state(daemon, disk)
        daemon.start()
        filler = fill(disk)
        daemon.pioctl("start", "logger", "--count", "6000", "--size", "300", "--tag", "full")
        error_topic = f"pioreactor/{daemon.unit}/exp1/logs/app/error"
        seen = watcher.wait(error_topic, timeout=20, predicate=lambda m: b"cannot write the SQLite"
                            in m.payload)
        assert "full" in json.loads(seen.payload)["message"]
        wait_for(lambda: "cannot write the SQLite database" in daemon.log_text(), 10, "console")
        assert daemon.status()["logger"]["state"] == "ready"  # the job goes on
        filler.unlink()
        wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE message = 'full done'")
                 [0][0], 30, "the queued lines caught up")
        assert daemon.query("SELECT count(*) FROM logs WHERE message LIKE 'full %'")[0][0] == 6001
        warning_topic = f"pioreactor/{daemon.unit}/exp1/logs/app/warning"
        watcher.wait(warning_topic, timeout=10, predicate=lambda m: b"is written again" in m.payload)
        assert len(watcher.find(error_topic, lambda m: b"cannot write the SQLite" in m.payload)) == 1
        daemon.pioctl("stop", "logger")
        assert daemon.stop() == 0


BURST_BY_HAND = """
records = [{"level": "INFO", "message": f"burst {i}", "timestamp": "2026-01-01T00:00:00.000Z"}
           for i in range(500)]
s.send_multipart(encode({"t": "logs", "records": records}))
assert ask({"t": "bye", "id": "b"})["ok"]
"""


def test_a_burst_of_log_lines_in_one_logs_message_reaches_sqlite_in_order(make_daemon):
    # A registered connection: an unregistered one's lines are held until it registers (issue 12).
    daemon = make_daemon().start()
    run_raw_job(daemon, BURST_BY_HAND)
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE task = 'byhand' AND message "
                                  "LIKE 'burst %'")[0][0] == 500, 10, "the burst in SQLite")
    rows = daemon.query("SELECT message FROM logs WHERE task = 'byhand' AND message LIKE 'burst %' "
                        "ORDER BY rowid")
    assert [r[0] for r in rows] == [f"burst {i}" for i in range(500)]
