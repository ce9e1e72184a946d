"""Rows waiting for the SQLite writer: bounded, and what must never be lost kept apart.

The bound (`MAX_QUEUED_LOG_LINES` lines and `MAX_QUEUED_LOG_BYTES` of message text) applies to
log lines, the only rows that come in bulk. Beyond it the oldest DEBUG/INFO line goes first, then
the oldest line of any level; every drop is counted. Log lines are in MQTT and the log file too,
so a drop loses the SQLite copy only.

Job rows (start, pid, end) and settings are never dropped. A setting is a current value: a newer
value of the same (job, setting) replaces the queued one in place, so settings are bounded by
the number of settings of the jobs that ran; job rows are at most three per job start.

A log line may have an origin (job instance, seq: daemon/confirm.py). A batch carries the highest
seq of each instance among its lines (`Batch.origins`), written in the batch's own transaction:
lines are taken in arrival order, so everything before that seq is committed or was dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_QUEUED_LOG_LINES = 50_000
MAX_QUEUED_LOG_BYTES = 16 * 2**20
DROPPED_FIRST = frozenset({"DEBUG", "INFO"})
LOG_LEVEL, LOG_MESSAGE = 5, 3  # positions in an INSERT_LOG row


@dataclass
class Batch:
    rows: list[tuple[str, tuple]] = field(default_factory=list)  # job rows and settings, in order
    logs: list[tuple] = field(default_factory=list)  # INSERT_LOG parameters, in order
    origins: dict[str, int] = field(default_factory=dict)  # instance -> highest seq of its lines

    def __len__(self) -> int:
        return len(self.rows) + len(self.logs)


class Pending:
    """Thread-safe: the main loop adds, the writer takes. `changed` wakes the writer."""

    def __init__(self, upsert_sql: str, max_lines: int = MAX_QUEUED_LOG_LINES,
                 max_bytes: int = MAX_QUEUED_LOG_BYTES) -> None:
        self.changed = threading.Condition()
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self.dropped = 0  # log lines dropped since start
        self._upsert_sql = upsert_sql
        # (seq, row, origin): DEBUG/INFO, dropped first; NOTICE and above
        self._first: deque[tuple[int, tuple, tuple[str, int] | None]] = deque()
        self._kept: deque[tuple[int, tuple, tuple[str, int] | None]] = deque()
        self._rows: deque[tuple[str, Any]] = deque()  # (sql, params), or (upsert, key)
        self._settings: dict[tuple[Any, Any], tuple] = {}  # (setting, job_id) -> newest params
        self._seq = 0
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._first) + len(self._kept) + len(self._rows)

    # --- main loop -----------------------------------------------------------------------------
    def add_logs(self, rows: list[tuple], origins: list[tuple[str, int] | None] | None = None) -> None:
        with self.changed:
            for row, origin in zip(rows, origins or [None] * len(rows), strict=True):
                self._seq += 1
                (self._first if row[LOG_LEVEL] in DROPPED_FIRST else self._kept).append(
                    (self._seq, row, origin))
                self._bytes += len(row[LOG_MESSAGE])
            self._trim()
            self.changed.notify()

    def add_row(self, sql: str, params: tuple) -> None:
        with self.changed:
            if sql == self._upsert_sql:
                key = (params[0], params[4])  # (setting, job_id)
                if key not in self._settings:
                    self._rows.append((sql, key))
                self._settings[key] = params
            else:
                self._rows.append((sql, params))
            self.changed.notify()

    # --- writer --------------------------------------------------------------------------------
    def take(self, max_rows: int) -> Batch:
        """Up to `max_rows` rows: job rows and settings first, then log lines in arrival order."""
        batch = Batch()
        with self.changed:
            while self._rows and len(batch.rows) < max_rows:
                sql, params = self._rows.popleft()
                if sql == self._upsert_sql:
                    params = self._settings.pop(params)
                batch.rows.append((sql, params))
            while (self._first or self._kept) and len(batch) < max_rows:
                source = self._older_of_the_two()
                _, row, origin = source.popleft()
                self._bytes -= len(row[LOG_MESSAGE])
                batch.logs.append(row)
                if origin is not None:
                    batch.origins[origin[0]] = max(origin[1], batch.origins.get(origin[0], 0))
        return batch

    def _older_of_the_two(self) -> deque[tuple[int, tuple, tuple[str, int] | None]]:
        if not self._kept:
            return self._first
        if not self._first:
            return self._kept
        return self._first if self._first[0][0] < self._kept[0][0] else self._kept

    def _trim(self) -> None:
        while len(self._first) + len(self._kept) > self.max_lines or self._bytes > self.max_bytes:
            source = self._first or self._kept
            self._bytes -= len(source.popleft()[1][LOG_MESSAGE])
            self.dropped += 1
