"""The only SQLite writer: one thread, batched transactions, WAL.

The main loop never touches the database file: it queues rows here and goes on. The writer takes
everything queued (up to `BATCH` rows) and commits it in one transaction, which is what makes a
burst of log lines cheap (see shared/notes: 35k rows/s one per transaction, 185k batched).
Readers (`pioctl logs`) open their own read-only connections; WAL lets them read while we write.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (experiment TEXT NOT NULL, pioreactor_unit TEXT NOT NULL,
  timestamp TEXT NOT NULL, message TEXT NOT NULL, source TEXT NOT NULL, level TEXT, task TEXT);
CREATE INDEX IF NOT EXISTS logs_ix ON logs (timestamp);
CREATE TABLE IF NOT EXISTS pio_job_metadata (job_id INTEGER PRIMARY KEY AUTOINCREMENT,
  unit TEXT NOT NULL, experiment TEXT NOT NULL, job_name TEXT NOT NULL, job_source TEXT NOT NULL,
  started_at TEXT NOT NULL, is_running INTEGER NOT NULL, leader TEXT NOT NULL, pid INTEGER NOT NULL,
  is_long_running_job INTEGER NOT NULL, ended_at TEXT, exit_code INTEGER, end_state TEXT);
CREATE TABLE IF NOT EXISTS pio_job_published_settings (setting TEXT NOT NULL, value BLOB,
  proposed_value BLOB, created_at TEXT, updated_at TEXT, job_id INTEGER NOT NULL,
  UNIQUE(setting, job_id));
-- Ours: a job's published_settings metadata (JSON), so that the next daemon, after a crash, can
-- clear the non-persist settings of a job that ended meanwhile.
CREATE TABLE IF NOT EXISTS pioreactord_job_settings (job_id INTEGER PRIMARY KEY, settings TEXT NOT NULL);
-- Ours: jobs to start again at the next daemon start if the unit goes down under them
-- (resume_jobs): written when a job spawned by the daemon registers, removed when it ends for
-- any reason but the daemon's own shutdown (which sets `shutdown`).
CREATE TABLE IF NOT EXISTS pioreactord_resume (job_id INTEGER PRIMARY KEY, job_name TEXT NOT NULL,
  experiment TEXT NOT NULL, command TEXT NOT NULL, boot_id TEXT NOT NULL,
  shutdown INTEGER NOT NULL DEFAULT 0);
"""

INSERT_LOG = "INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?)"
INSERT_JOB = """INSERT INTO pio_job_metadata (job_id, unit, experiment, job_name, job_source,
  started_at, is_running, leader, pid, is_long_running_job) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"""
UPDATE_JOB_PID = "UPDATE pio_job_metadata SET pid = ?, job_name = ? WHERE job_id = ?"
END_JOB = """UPDATE pio_job_metadata SET is_running = 0, ended_at = ?, exit_code = ?, end_state = ?
  WHERE job_id = ?"""
SAVE_SETTINGS_META = "INSERT OR REPLACE INTO pioreactord_job_settings VALUES (?, ?)"
SAVE_RESUME = "INSERT OR REPLACE INTO pioreactord_resume VALUES (?, ?, ?, ?, ?, 0)"
RESUME_AFTER_SHUTDOWN = "UPDATE pioreactord_resume SET shutdown = 1 WHERE job_id = ?"
FORGET_RESUME = "DELETE FROM pioreactord_resume WHERE job_id = ?"
UPSERT_SETTING = """INSERT INTO pio_job_published_settings
  (setting, value, created_at, updated_at, job_id) VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (setting, job_id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"""

BATCH = 500
_STOP = object()


def open_database(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


class Sink:
    """Queue of (sql, params) written by one thread. `read_*` helpers run before the thread starts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = open_database(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-sink", daemon=True)
        self._idle = threading.Event()

    # --- start-up reads (main thread, before start()) ------------------------------------------
    def next_job_id(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(job_id), 0) FROM pio_job_metadata").fetchone()
        seq = self._conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'pio_job_metadata'").fetchone()
        return max(row[0], seq[0] if seq else 0) + 1

    def running_rows(self) -> list[sqlite3.Row]:
        """Jobs marked running by a previous daemon (to adopt or to close as lost)."""
        self._conn.row_factory = sqlite3.Row
        try:
            return self._conn.execute(
                "SELECT * FROM pio_job_metadata WHERE is_running = 1").fetchall()
        finally:
            self._conn.row_factory = None

    def settings_meta_of(self, job_id: int) -> dict[str, dict[str, Any]]:
        """The published_settings metadata a job registered with ({} if unknown)."""
        row = self._conn.execute(
            "SELECT settings FROM pioreactord_job_settings WHERE job_id = ?", (job_id,)).fetchone()
        try:
            return dict(json.loads(row[0])) if row else {}
        except (ValueError, TypeError):
            return {}

    def resume_rows(self) -> list[sqlite3.Row]:
        """Jobs that were running when the previous daemon (or the unit) went down."""
        self._conn.row_factory = sqlite3.Row
        try:
            return self._conn.execute("SELECT * FROM pioreactord_resume").fetchall()
        finally:
            self._conn.row_factory = None

    # --- writes (any thread) -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def write(self, sql: str, params: tuple) -> None:
        self._idle.clear()
        self._queue.put((sql, params))

    def close(self, timeout: float = 10.0) -> None:
        """Flush everything queued, then stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._conn.close()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued row is committed (tests and shutdown use it)."""
        self._idle.clear()
        self._queue.put(None)
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [b for b in batch if b is not None and b is not _STOP]
            if rows:
                self._commit(rows)
            if self._queue.empty():
                self._idle.set()
            if _STOP in batch:
                return

    def _commit(self, rows: list[tuple[str, tuple]]) -> None:
        try:
            self._conn.execute("BEGIN")
            for sql, params in rows:
                self._conn.execute(sql, params)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # Never lose the whole batch to one bad row: retry them one by one, report the bad.
            self._conn.execute("ROLLBACK")
            for sql, params in rows:
                try:
                    self._conn.execute(sql, params)
                except sqlite3.Error as row_exc:
                    print(f"pioreactord: sqlite write failed ({row_exc}; batch error {exc}): "
                          f"{sql.split()[0]} {params!r:.200}", flush=True)
