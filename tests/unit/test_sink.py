"""The SQLite writer against real files: a full disk, a deleted, replaced or damaged database."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import pioreactord.sink as sink_module
from pioreactord.pending import Pending
from pioreactord.sink import END_JOB, INSERT_JOB, UPSERT_SETTING, Sink
from tests.support.tmpfs import fill, mounted_tmpfs
from tests.support.waiting import wait_for


class Reports(list):
    def __call__(self, level: str, message: str) -> None:
        self.append((level, message))

    def at(self, level: str, text: str) -> list[str]:
        return [m for lv, m in list(self) if lv == level and text in m]


def log_row(i: int, level: str = "INFO", size: int = 20) -> tuple:
    return ("exp", "unit", f"2026-01-01T00:00:{i % 60:02d}.000Z", f"line {i} " + "x" * size,
            "app", level, "job")


def job_row(job_id: int) -> tuple:
    return (job_id, "unit", "exp", f"job{job_id}", "app", "2026-01-01T00:00:00.000Z", "leader",
            1000 + job_id, 0)


def count(path: Path, sql: str = "SELECT count(*) FROM logs"):
    """The first column of the first row (a count unless `sql` says otherwise)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def sink_at(tmp_path):
    made: list[Sink] = []

    def make(path: Path | None = None, **kwargs) -> tuple[Sink, Reports]:
        reports = Reports()
        sink = Sink(path or tmp_path / "db.sqlite", report=reports, **kwargs)
        sink.start()
        made.append(sink)
        return sink, reports

    yield make
    for sink in made:
        sink.close(timeout=5)


def test_a_full_disk_is_survived_reported_once_and_caught_up(sink_at):
    with mounted_tmpfs("4m") as disk:
        sink, reports = sink_at(disk / "db.sqlite")
        sink.write(INSERT_JOB, job_row(1))
        assert sink.flush()
        filler = fill(disk)
        for i in range(400):  # ~1 MB: more than the WAL already holds
            sink.write_logs([log_row(i, size=2500)])
        sink.write(UPSERT_SETTING, ("rate", "1", "t", "t", 1))
        sink.write(END_JOB, ("2026-01-01T00:01:00.000Z", 0, "disconnected", 1))
        wait_for(lambda: not sink.state()["ok"], 10, "the sink to report failing")
        state = sink.state()
        assert "full" in state["error"] and state["queued"] > 0
        assert len(reports.at("ERROR", "cannot write the SQLite database")) == 1
        assert "Free space" in reports.at("ERROR", "cannot write")[0]
        filler.unlink()
        assert sink.flush(timeout=20), sink.state()
        assert sink.state()["ok"] and sink.state()["queued"] == 0
        assert count(disk / "db.sqlite") == 400
        assert count(disk / "db.sqlite", "SELECT end_state FROM pio_job_metadata") == "disconnected"
        assert count(disk / "db.sqlite", "SELECT value FROM pio_job_published_settings") == "1"
        assert len(reports.at("WARNING", "is written again")) == 1
        assert len(reports.at("ERROR", "cannot write the SQLite database")) == 1  # still once


def test_the_queue_drops_oldest_debug_info_first_and_never_job_rows_or_settings():
    pending = Pending(UPSERT_SETTING, max_lines=5, max_bytes=10**9)
    pending.add_row(INSERT_JOB, job_row(1))
    pending.add_logs([log_row(0, "ERROR"), log_row(1, "INFO"), log_row(2, "DEBUG")])
    for value in ("1", "2", "3"):  # a setting is a current value: only the newest waits
        pending.add_row(UPSERT_SETTING, ("rate", value, "t", "t", 1))
    pending.add_logs([log_row(i, "INFO") for i in range(3, 8)])
    assert pending.dropped == 3  # lines 1, 2, 3: the oldest DEBUG/INFO, not the ERROR
    batch = pending.take(100)
    assert [sql for sql, _ in batch.rows] == [INSERT_JOB, UPSERT_SETTING]
    assert batch.rows[1][1][1] == "3"
    assert [row[3].split()[1] for row in batch.logs] == ["0", "4", "5", "6", "7"]  # in order
    assert len(pending) == 0


def test_the_byte_bound_holds_too():
    pending = Pending(UPSERT_SETTING, max_lines=10**6, max_bytes=10_000)
    pending.add_logs([log_row(i, "WARNING", size=1000) for i in range(50)])
    assert len(pending) <= 10 and pending.dropped >= 40


def test_a_row_sqlite_refuses_is_dropped_alone(sink_at, tmp_path):
    sink, _ = sink_at()
    sink.write(INSERT_JOB, job_row(1))
    sink.write(INSERT_JOB, job_row(1))  # the same job_id twice: a constraint error
    sink.write_logs([log_row(1)])
    assert sink.flush()
    assert count(tmp_path / "db.sqlite", "SELECT count(*) FROM pio_job_metadata") == 1
    assert count(tmp_path / "db.sqlite") == 1 and sink.state()["ok"]


def test_a_deleted_database_is_noticed_kept_aside_and_a_new_one_written(sink_at, tmp_path):
    path = tmp_path / "db.sqlite"
    sink, reports = sink_at(path)
    sink.write(INSERT_JOB, job_row(7))
    sink.write_logs([log_row(i) for i in range(10)])
    assert sink.flush()
    path.unlink()
    wait_for(lambda: reports.at("ERROR", "was deleted while in use"), 10, "the deletion noticed")
    sink.write_logs([log_row(99)])
    sink.write(END_JOB, ("t", 0, "disconnected", 7))
    assert sink.flush()
    assert count(path) == 1  # the new database gets what came after
    assert count(path, "SELECT end_state FROM pio_job_metadata WHERE job_id = 7") == "disconnected"
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("db.sqlite.deleted-")]
    assert len(aside) == 1 and count(aside[0]) == 10  # and nothing before it is lost
    assert str(aside[0]) in reports.at("ERROR", "deleted")[0]


def test_a_replaced_database_is_noticed_and_the_new_file_used(sink_at, tmp_path):
    path = tmp_path / "db.sqlite"
    sink, reports = sink_at(path)
    sink.write_logs([log_row(i) for i in range(5)])
    assert sink.flush()
    other = tmp_path / "other.sqlite"
    Sink(other).close()  # a valid, empty database of the same schema
    os.replace(other, path)
    wait_for(lambda: reports.at("ERROR", "was replaced"), 10, "the replacement noticed")
    sink.write_logs([log_row(42)])
    assert sink.flush()
    assert count(path) == 1
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("db.sqlite.replaced-")]
    assert len(aside) == 1 and count(aside[0]) == 5


def test_a_burst_of_writes_is_gathered_into_one_transaction(sink_at, monkeypatch):
    monkeypatch.setattr(sink_module, "GATHER", 0.5)  # wide: the two writes below are µs apart
    sink, _ = sink_at()
    commits: list[dict[str, int]] = []
    sink.on_committed = commits.append
    sink.write(INSERT_JOB, job_row(1))
    sink.write_logs([log_row(0)], [("job:1:aa", 1)])
    sink.write_logs([log_row(1)], [("job:2:bb", 1)])
    assert sink.flush()
    assert commits == [{"job:1:aa": 1, "job:2:bb": 1}]


def test_committed_seq_reads_what_was_committed_and_follows_a_replaced_file(sink_at, tmp_path):
    path = tmp_path / "db.sqlite"
    sink, reports = sink_at(path)
    assert sink.committed_seq("job:1:aa") == 0
    sink.write_logs([log_row(i) for i in range(3)], [("job:1:aa", i + 1) for i in range(3)])
    assert sink.flush()
    assert sink.committed_seq("job:1:aa") == 3  # on the reader it kept from the first lookup
    assert sink.committed_seq("job:2:bb") == 0
    other = tmp_path / "other.sqlite"
    seeded = Sink(other)
    seeded.start()
    seeded.write_logs([log_row(0)], [("job:2:bb", 7)])
    seeded.close()
    os.replace(other, path)
    wait_for(lambda: reports.at("ERROR", "was replaced"), 10, "the replacement noticed")
    assert sink.committed_seq("job:2:bb") == 7  # the file now there, not the one it had open
    path.unlink()
    assert sink.committed_seq("job:2:bb") == 0  # no file: nothing committed, and no exception


def test_a_damaged_database_at_start_is_set_aside(sink_at, tmp_path):
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    sink, reports = sink_at(path)
    assert reports.at("ERROR", "is damaged")
    sink.write_logs([log_row(1)])
    assert sink.flush() and count(path) == 1
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("db.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")


def test_a_database_damaged_while_running_is_set_aside(sink_at, tmp_path):
    path = tmp_path / "db.sqlite"
    sink, reports = sink_at(path, integrity_interval=0.3)
    sink.write(INSERT_JOB, job_row(3))
    sink.write_logs([log_row(i, size=400) for i in range(2000)])
    assert sink.flush()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(path, "r+b") as handle:  # scribble over the pages after the schema
        handle.seek(8192)
        handle.write(os.urandom(200_000))
    wait_for(lambda: reports.at("ERROR", "is damaged"), 10, "the damage noticed")
    sink.write_logs([log_row(5)])
    assert sink.flush()
    assert count(path) == 1 and sink.state()["ok"]
    assert any(p.name.startswith("db.sqlite.corrupt-") for p in tmp_path.iterdir())


def test_the_writer_survives_an_unexpected_error(sink_at, tmp_path, monkeypatch):
    sink, reports = sink_at()
    calls = []

    def broken_once(batch):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return original(batch)

    original = sink._commit
    monkeypatch.setattr(sink, "_commit", broken_once)
    monkeypatch.setattr("pioreactord.sink.RETRY_MAX", 0.05)
    sink.write_logs([log_row(1)])
    wait_for(lambda: reports.at("ERROR", "internal error"), 5, "the bug reported")
    sink.write_logs([log_row(2)])
    assert sink.flush() and count(tmp_path / "db.sqlite") == 1  # row 1 went with the bug
    assert sink._thread.is_alive()
