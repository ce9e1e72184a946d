"""The SQLite database file itself: open it, check it, and set a damaged or vanished one aside.

The writer (sink.py) owns the only connection. This module holds what it does to the *file*:
  - `open_database`: refuses a directory it cannot write with a `StorageError` naming the path
    and the reason (main exits 78: a restart cannot help), and moves a corrupt file aside before
    starting a new one (`PRAGMA quick_check` on a fresh connection, not the writer's page cache).
  - `FileIdentity`: st_dev/st_ino of the path, so a file deleted or replaced under us is noticed
    (otherwise SQLite goes on writing into the unlinked inode, and nobody ever reads it again).
  - `set_aside`: the old database kept beside the new one, renamed `NAME.<why>-<UTC time>`.
  - `carry_over_running`: the rows of jobs still running, copied from the old file into the new,
    so that their end is recorded and a restarted daemon can re-adopt them.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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

# SQLite's names for "the file is damaged" (everything else is the disk or the permissions).
CORRUPTION = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
# A directory we cannot write is a configuration problem: exit 78, no restart loop.
CONFIG_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


class StorageError(Exception):
    """The database cannot be opened; the message names the path and the reason."""

    def __init__(self, message: str, *, is_config: bool) -> None:
        super().__init__(message)
        self.is_config = is_config  # True: retrying cannot help (read-only, permissions)


@dataclass(frozen=True)
class FileIdentity:
    dev: int
    ino: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_dev, st.st_ino)


def is_corruption(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(CORRUPTION) or "malformed" in str(exc) or "not a database" in str(exc)


def check_writable_dir(directory: Path, what: str) -> None:
    """Raise StorageError unless a file can be created in `directory` (created if missing)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory, prefix=".pioreactord-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StorageError(f"{what} {directory} is not writable ({reason})",
                           is_config=exc.errno in CONFIG_ERRNOS) from None


def quick_check(path: Path) -> str:
    """'ok', or what SQLite found wrong with the file (a fresh connection: no cached pages)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        return "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()


def open_database(path: Path, report=lambda level, message: None) -> sqlite3.Connection:
    """The writer's connection (WAL). A corrupt file is set aside first and reported at ERROR."""
    check_writable_dir(path.parent, "the database's directory")
    if path.exists() and path.stat().st_size > 0:
        verdict = quick_check(path)
        if verdict != "ok":
            aside = set_aside(path, "corrupt")
            report("ERROR", f"the SQLite database {path} is damaged ({verdict}); it was moved to "
                            f"{aside} and a new, empty database started")
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the database {path}: {exc}", is_config=False) from None
    return conn


def aside_name(path: Path, why: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate = path.with_name(f"{path.name}.{why}-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{why}-{stamp}-{n}")
    return candidate


def set_aside(path: Path, why: str) -> Path:
    """Rename the database and its -wal/-shm together (a WAL belongs to its own file only)."""
    aside = aside_name(path, why)
    for suffix in ("", "-wal", "-shm"):
        try:
            os.rename(f"{path}{suffix}", f"{aside}{suffix}")
        except FileNotFoundError:
            pass
    return aside


def copy_aside(conn: sqlite3.Connection, path: Path, why: str) -> Path:
    """A copy of what `conn` still holds (its file was deleted or replaced: only we can reach it)."""
    aside = aside_name(path, why)
    target = sqlite3.connect(aside)
    try:
        conn.backup(target)
    finally:
        target.close()
    return aside


def carry_over_running(conn: sqlite3.Connection, old: Path) -> int:
    """Copy the running jobs' rows from the database `old` into `conn`'s; returns how many jobs."""
    conn.execute("ATTACH DATABASE ? AS previous", (str(old),))
    try:
        conn.execute("BEGIN")
        running = "SELECT job_id FROM previous.pio_job_metadata WHERE is_running = 1"
        conn.execute("INSERT OR IGNORE INTO main.pio_job_metadata SELECT * FROM "
                     "previous.pio_job_metadata WHERE is_running = 1")
        for table in ("pio_job_published_settings", "pioreactord_job_settings"):
            conn.execute(f"INSERT OR IGNORE INTO main.{table} SELECT * FROM previous.{table} "
                         f"WHERE job_id IN ({running})")
        count = conn.execute(f"SELECT count(*) FROM ({running})").fetchone()[0]
        conn.execute("COMMIT")
        return int(count)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("DETACH DATABASE previous")
