"""The only SQLite writer: one thread, batched transactions, WAL; it survives every SQLite error.

The main loop never touches the database file: it queues rows here (`pending.py`: bounded, job
rows and settings never dropped) and goes on. The writer takes what is queued (up to `BATCH`
rows) and commits it in one transaction, one `executemany` per statement.

When a commit fails (disk full, read-only, I/O error) the batch is kept and retried with a backoff
(`RETRY_MIN`..`RETRY_MAX` s) until it goes through; meanwhile rows queue within their bound. The
first failure is reported once at ERROR, the recovery once at WARNING with what was dropped —
through `report`, which the daemon sends to MQTT and the console as well (the database is the
thing failing). A row SQLite refuses as such (a constraint) is dropped alone, with a console line.

Every `IDENTITY_EVERY` s the writer checks that the path still names the file it writes (deleted
or replaced: the old content is copied aside and a new database opened); every
`integrity_interval` s it runs `PRAGMA quick_check` (damaged: the file is moved aside). See
`dbfile.py`. Readers (`pioctl logs`) open their own read-only connections.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import dbfile
from .dbfile import FileIdentity, StorageError, open_database
from .pending import MAX_QUEUED_LOG_BYTES, MAX_QUEUED_LOG_LINES, Batch, Pending
from .protocol import utc_timestamp

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

UPSERT_SEQ = """INSERT OR REPLACE INTO pioreactord_job_seq (instance, seq, updated_at)
  VALUES (?, ?, ?)"""

BATCH = 2000
# Seconds the writer waits after the first row of a burst before it takes the batch. A job's
# start queues ~10 rows while the main loop handles it; a writer woken by the first took the GIL
# from the main loop at each SQLite call on the start's path. The rows wait that much longer in
# memory (a log line is confirmed to its job only once committed, so none is lost meanwhile).
GATHER = 0.01
RETRY_MIN, RETRY_MAX = 0.25, 5.0
IDENTITY_EVERY = 2.0
DEFAULT_INTEGRITY_INTERVAL = 3600.0
# Errors of the row itself, not of the disk: retrying cannot help, the row is dropped alone.
ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
              sqlite3.DataError)

Report = Callable[[str, str], None]  # (level, message), called from the writer thread


def _close(conn: sqlite3.Connection | None) -> None:
    try:
        if conn is not None:
            conn.close()  # a second close is a no-op
    except sqlite3.Error:
        pass  # a damaged file may fail its last checkpoint; the connection is gone anyway


def _console(level: str, message: str) -> None:
    print(f"pioreactord: {level}: {message}", flush=True)


class Sink:
    """Queue of rows written by one thread. `read_*` helpers run before the thread starts."""

    def __init__(self, path: Path, *, report: Report = _console,
                 integrity_interval: float = DEFAULT_INTEGRITY_INTERVAL) -> None:
        self.path = path
        self._report = report
        self._conn: sqlite3.Connection | None = open_database(path, report)
        self._identity = FileIdentity.of(path)
        self._seq_conn: sqlite3.Connection | None = None  # the main thread's (committed_seq)
        self._seq_identity: FileIdentity | None = None
        self._pending = Pending(UPSERT_SETTING)
        # Called by the writer thread after a commit that held numbered lines: {instance: seq}
        # (it only posts; daemon/confirm.py).
        self.on_committed: Callable[[dict[str, int]], None] = lambda origins: None
        self._thread = threading.Thread(target=self._run, name="sqlite-sink", daemon=True)
        self._integrity_interval = integrity_interval
        self._next_identity = time.monotonic() + IDENTITY_EVERY
        self._next_integrity = time.monotonic() + integrity_interval
        self._busy = 0  # rows of the batch the writer holds, not yet committed
        self._stopping = False
        self._state: dict[str, Any] = {"ok": True, "since": utc_timestamp(), "error": None}

    # --- start-up reads (main thread, before start()) ------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    def next_job_id(self) -> int:
        conn = self._reader()
        row = conn.execute("SELECT COALESCE(MAX(job_id), 0) FROM pio_job_metadata").fetchone()
        seq = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'pio_job_metadata'").fetchone()
        return max(row[0], seq[0] if seq else 0) + 1

    def running_rows(self) -> list[sqlite3.Row]:
        """Jobs marked running by a previous daemon (to adopt or to close as lost)."""
        conn = self._reader()
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute("SELECT * FROM pio_job_metadata WHERE is_running = 1").fetchall()
        finally:
            conn.row_factory = None

    def settings_meta_of(self, job_id: int) -> dict[str, dict[str, Any]]:
        """The published_settings metadata a job registered with ({} if unknown)."""
        row = self._reader().execute(
            "SELECT settings FROM pioreactord_job_settings WHERE job_id = ?", (job_id,)).fetchone()
        try:
            return dict(json.loads(row[0])) if row else {}
        except (ValueError, TypeError):
            return {}

    def resume_rows(self) -> list[sqlite3.Row]:
        """Jobs that were running when the previous daemon (or the unit) went down."""
        conn = self._reader()
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute("SELECT * FROM pioreactord_resume").fetchall()
        finally:
            conn.row_factory = None

    # --- writes (any thread) -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def write(self, sql: str, params: tuple) -> None:
        if sql == INSERT_LOG:
            self._pending.add_logs([params])
        else:
            self._pending.add_row(sql, params)

    def write_logs(self, rows: list[tuple],
                   origins: list[tuple[str, int] | None] | None = None) -> None:
        """Many INSERT_LOG rows at once (one lock, one wake-up). `origins`, one per row: the
        (job instance, seq) of a numbered job line; the highest of each instance is committed
        in the same transaction as its lines, then reported to `on_committed`."""
        if rows:
            self._pending.add_logs(rows, origins)

    def committed_seq(self, instance: str) -> int:
        """The highest numbered line of a job instance in the database (0: none); main thread,
        once per job instance, on its start's path."""
        try:
            rows = self._seq_reader().execute(
                "SELECT seq FROM pioreactord_job_seq WHERE instance = ?", (instance,)).fetchall()
        except sqlite3.Error:
            _close(self._seq_conn)
            self._seq_conn = None
            return 0
        return int(rows[0][0]) if rows else 0

    def _seq_reader(self) -> sqlite3.Connection:
        """A read-only connection kept for `committed_seq`: opening one costs 0.2-0.5 ms, a query
        on a kept one ~10 us. Opened again when the file was replaced (the writer then opens the
        new file too). fetchall() ends each statement, so no read snapshot outlives its query
        (one would keep WAL checkpoints from finishing)."""
        identity = FileIdentity.of(self.path)
        if self._seq_conn is None or identity != self._seq_identity:
            _close(self._seq_conn)
            self._seq_conn = None
            self._seq_conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
            self._seq_identity = identity
        return self._seq_conn

    def state(self) -> dict[str, Any]:
        """For `pioctl status`: ok, since, error, queued, dropped, path (cheap, thread-safe)."""
        with self._pending.changed:
            return {**self._state, "queued": len(self._pending) + self._busy,
                    "dropped": self._pending.dropped, "path": str(self.path)}

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued row is committed (tests and shutdown use it)."""
        with self._pending.changed:
            return self._pending.changed.wait_for(
                lambda: not len(self._pending) and not self._busy, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued (one last try if the database is failing), then stop."""
        with self._pending.changed:
            self._stopping = True
            self._pending.changed.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        if not self._thread.is_alive() and self._conn is not None:
            self._conn.close()
        _close(self._seq_conn)
        self._seq_conn = None

    # --- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                if not self._write_next():
                    return
            except Exception as exc:  # noqa: BLE001 - a bug here must not stop every later write
                self._report("ERROR", f"internal error in the SQLite writer (it goes on): {exc!r}")
                self._sleep(RETRY_MAX)
            finally:
                with self._pending.changed:
                    self._busy = 0
                    self._pending.changed.notify_all()

    def _write_next(self) -> bool:
        """Write the next batch, retrying until it goes through; False once stopped."""
        batch = self._next_batch()
        if batch is None:
            return False
        self._check_file()
        backoff = RETRY_MIN
        while batch and not self._commit(batch):
            if self._stopping:
                _console("ERROR", f"{len(batch) + len(self._pending)} rows could not be "
                                  f"written to {self.path} before exiting")
                return False
            self._sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX)
            self._check_file()
        if batch.origins:
            self.on_committed(dict(batch.origins))
        return True

    def _next_batch(self) -> Batch | None:
        """Wait for rows (or the next file check), then `GATHER` s for the rest of their burst;
        None once stopping with nothing left."""
        with self._pending.changed:
            while not len(self._pending):
                if self._stopping:
                    return None
                wait = min(self._next_identity, self._next_integrity) - time.monotonic()
                if wait <= 0:
                    break
                self._pending.changed.wait(wait)
            gather = 0 < len(self._pending) < BATCH and not self._stopping
        if gather:
            time.sleep(GATHER)  # without the lock: writers go on queueing meanwhile
        with self._pending.changed:
            batch = self._pending.take(BATCH)
            self._busy = len(batch)
            return batch

    def _sleep(self, seconds: float) -> None:
        with self._pending.changed:
            if not self._stopping:
                self._pending.changed.wait_for(lambda: self._stopping, seconds)

    def _commit(self, batch: Batch) -> bool:
        """True once the batch is written (rows SQLite refuses are dropped alone); False if the
        database cannot be written now (the batch is kept for the next try)."""
        try:
            if self._conn is None:
                self._conn = open_database(self.path, self._report)
                self._identity = FileIdentity.of(self.path)
            self._transaction(self._conn, batch)
        except ROW_ERRORS as exc:
            self._rollback()
            return self._one_by_one(batch, exc)
        except (sqlite3.Error, StorageError, OSError) as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error) and dbfile.is_corruption(exc):
                self._replace("corrupt", str(exc))  # the batch goes to the new file next try
            else:
                self._failing(exc)
            return False
        self._recovered()
        return True

    @staticmethod
    def _transaction(conn: sqlite3.Connection, batch: Batch) -> None:
        conn.execute("BEGIN")
        for sql, params in batch.rows:
            conn.execute(sql, params)
        if batch.logs:
            conn.executemany(INSERT_LOG, batch.logs)
        if batch.origins:  # in this same transaction: what the next daemon finds is exact
            now = utc_timestamp()
            conn.executemany(UPSERT_SEQ, [(i, seq, now) for i, seq in batch.origins.items()])
        conn.execute("COMMIT")

    def _rollback(self) -> None:
        """After a failed COMMIT SQLite may have rolled back already: ROLLBACK only if needed."""
        try:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is unusable; the next try reports what is wrong

    def _one_by_one(self, batch: Batch, batch_error: Exception) -> bool:
        """Never lose a whole batch to one bad row: write each alone, drop the bad ones."""
        assert self._conn is not None
        now = utc_timestamp()
        rows = [*batch.rows, *((INSERT_LOG, row) for row in batch.logs),
                *((UPSERT_SEQ, (i, seq, now)) for i, seq in batch.origins.items())]
        for index, (sql, params) in enumerate(rows):
            try:
                self._conn.execute(sql, params)
            except ROW_ERRORS as exc:
                _console("ERROR", f"sqlite write failed ({exc}; batch error {batch_error}): "
                                  f"{sql.split()[0]} {params!r:.200}")
            except sqlite3.Error:  # the disk, not the row: keep the rest for the next try
                batch.rows, batch.logs = rows[index:], []
                return False
        return True

    # --- state and reports ---------------------------------------------------------------------
    def _failing(self, exc: Exception) -> None:
        with self._pending.changed:
            first = self._state["ok"]
            self._state = {"ok": False, "since": utc_timestamp() if first else self._state["since"],
                           "error": str(exc)}
        if first:
            self._report("ERROR", (
                f"cannot write the SQLite database {self.path} ({exc}): log lines, job rows and "
                f"settings are kept in memory and retried every {RETRY_MAX:g} s; beyond "
                f"{MAX_QUEUED_LOG_LINES} log lines or {MAX_QUEUED_LOG_BYTES >> 20} MiB the oldest "
                "DEBUG/INFO lines are dropped from SQLite (MQTT and the log file still get them). "
                "Free space on that disk or fix its permissions"))

    def _recovered(self) -> None:
        """Said once everything queued is written: a disk at the edge of full lets a commit
        through now and then, which is not yet a recovery (and must not re-say the ERROR)."""
        with self._pending.changed:
            if self._state["ok"]:
                return
            if len(self._pending):
                self._state["error"] = None  # writing again, catching up
                return
            failed_since = self._state["since"]
            self._state = {"ok": True, "since": utc_timestamp(), "error": None}
            dropped = self._pending.dropped
        self._report("WARNING", f"the SQLite database {self.path} is written again (it failed "
                                f"from {failed_since}); queued rows are being caught up; "
                                f"{dropped} log lines dropped from SQLite since start")

    # --- the file under us ---------------------------------------------------------------------
    def _check_file(self) -> None:
        now = time.monotonic()
        if now >= self._next_identity:
            self._next_identity = now + IDENTITY_EVERY
            current = FileIdentity.of(self.path)
            if self._conn is not None and current != self._identity:
                self._replace("deleted" if current is None else "replaced", "")
        if now >= self._next_integrity:
            self._next_integrity = now + self._integrity_interval
            verdict = dbfile.quick_check(self.path) if self._conn is not None else "ok"
            if verdict != "ok":
                self._replace("corrupt", verdict)

    def _replace(self, why: str, detail: str) -> None:
        """The file is damaged, deleted or replaced: keep the old one aside, open a new one."""
        old, self._conn = self._conn, None
        aside, kept = None, ""
        try:
            if why == "corrupt":  # closed first: its last checkpoint goes to the file, not aside
                _close(old)
                aside = dbfile.set_aside(self.path, why)
            elif old is not None:  # only our connection still reaches the old content: copy it
                old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                aside = dbfile.copy_aside(old, self.path, why)
            kept = f"the old one is kept as {aside}"
        except (sqlite3.Error, OSError) as exc:
            kept = f"the old one could not be kept ({exc})"
        finally:
            _close(old)
        what = {"corrupt": f"is damaged ({detail})", "deleted": "was deleted while in use",
                "replaced": "was replaced by another file while in use"}[why]
        carried = self._reopen(aside)
        self._report("ERROR", f"the SQLite database {self.path} {what}; {kept}; writing to "
                              f"{'a new database' if why != 'replaced' else 'the file now'} at "
                              f"{self.path}{carried}")

    def _reopen(self, aside: Path | None) -> str:
        try:
            self._conn = open_database(self.path, self._report)
            self._identity = FileIdentity.of(self.path)
        except StorageError as exc:
            return f" (not yet: {exc}; retrying)"
        if aside is None:
            return ""
        try:
            count = dbfile.carry_over_running(self._conn, aside)
        except sqlite3.Error as exc:
            return f" (the running jobs' rows could not be carried over: {exc})"
        return f" ({count} running jobs' rows carried over)" if count else ""
