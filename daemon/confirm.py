"""Nothing a job handed over is lost: numbered log lines, confirmed once committed.

A job numbers its log lines (`seq`, per channel identity: per job instance) and holds each until
the daemon confirms it (jobs/held.py). (Settings are current values: a job sends them all again
when it registers with a new daemon.) Here the daemon:
- admits each numbered line once and in order: a number it has seen is a duplicate (a job
  sending again what a killed daemon had already committed) and is dropped; a number beyond the
  next one is a gap (what the killed daemon had not read is gone) and is dropped too, with a
  `resend` from the next one. A job answers `resend` with `resending` (from which number on it
  still holds them; anything before is counted lost and said) and the lines again.
- learns of a gap at the end of a stream from the job's ping, which carries `sent`, the highest
  number it sent: everything sent before a ping has arrived by then (one ordered stream).
- confirms with `ack` (up to a number) only what is committed: a line travels to the sink with its
  origin (instance, seq); the sink writes the highest seq of each instance into
  `pioreactord_job_seq` in the same transaction as the lines (so the next daemon knows exactly
  what is in the database) and reports it after the commit; the ack goes then. The broker copy
  is queued by then (bridge.py). Rows not updated for `FORGET_AFTER_DAYS` are removed at start.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import structlog

from .loop import Loop

log = structlog.get_logger("pioreactord.confirm")

RESEND_AGAIN = 2.0  # seconds before the same resend is asked again (a lost request)
REMEMBERED = 1_000  # identities kept in memory (others are read again from SQLite)
FORGET_AFTER_DAYS = 30

PRUNE_SEQ = f"DELETE FROM pioreactord_job_seq WHERE updated_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{FORGET_AFTER_DAYS} days')"

Send = Callable[[bytes, dict[str, Any]], Any]


class Confirmations:
    def __init__(self, *, loop: Loop, sink: Any, send: Send) -> None:
        self._loop, self._sink, self._send = loop, sink, send
        self._next: OrderedDict[bytes, int] = OrderedDict()  # identity -> the next seq to admit
        self._committed: dict[bytes, int] = {}  # identity -> highest seq committed
        self._asked: dict[bytes, tuple[int, float]] = {}  # identity -> (resend from, when asked)
        self._to_ack: set[bytes] = set()
        self.lost = 0  # numbered lines a job no longer had when asked again (since start)
        sink.on_committed = lambda origins: loop.post(lambda: self._commits(origins))

    # --- the job channel's handlers ------------------------------------------------------------
    def admit(self, identity: bytes, msg: dict[str, Any]) -> bool:
        """True: handle `msg` now. False: a duplicate or beyond a gap, dropped."""
        seq = msg.get("seq")
        if not isinstance(seq, int):
            return True  # not numbered (a message kind the job does not hold)
        expected = self._expected(identity)
        if seq == expected:
            self._next[identity] = seq + 1
            self._asked.pop(identity, None)
            return True
        if seq < expected:
            self._ack_soon(identity)  # it holds what is committed already: confirm again
        else:
            self._ask(identity, expected)
        return False

    def origin(self, identity: bytes, msg: dict[str, Any]) -> tuple[str, int] | None:
        seq = msg.get("seq")
        return (identity.decode(errors="replace"), seq) if isinstance(seq, int) else None

    def resending(self, identity: bytes, msg: dict[str, Any]) -> None:
        """The job sends again from `from` on: what it no longer holds before that is lost."""
        start, expected = int(msg.get("from", 0)), self._expected(identity)
        self._asked.pop(identity, None)
        if start > expected:
            self.lost += start - expected
            log.warning(f"{start - expected} log lines from a job were lost: sent to a daemon "
                        "that died before reading them, and no longer held by the job",
                        instance=identity.decode(errors="replace"))
            self._next[identity] = start

    def ping(self, identity: bytes, msg: dict[str, Any]) -> None:
        sent = msg.get("sent")
        if isinstance(sent, int) and sent >= self._expected(identity):
            self._ask(identity, self._expected(identity))

    # --- internals -----------------------------------------------------------------------------
    def _expected(self, identity: bytes) -> int:
        if identity not in self._next:
            committed = self._sink.committed_seq(identity.decode(errors="replace"))
            self._committed[identity] = max(committed, self._committed.get(identity, 0))
            self._next[identity] = committed + 1
            while len(self._next) > REMEMBERED:
                self._committed.pop(self._next.popitem(last=False)[0], None)
        return self._next[identity]

    def _ask(self, identity: bytes, start: int) -> None:
        asked = self._asked.get(identity)
        now = time.monotonic()
        if asked and asked[0] == start and now - asked[1] < RESEND_AGAIN:
            return
        self._asked[identity] = (start, now)
        self._send(identity, {"t": "resend", "from": start})

    def _commits(self, origins: dict[str, int]) -> None:
        for instance, seq in origins.items():
            identity = instance.encode()
            self._committed[identity] = max(seq, self._committed.get(identity, 0))
            self._ack_soon(identity)

    def _ack_soon(self, identity: bytes) -> None:
        if not self._to_ack:
            self._loop.post(self._send_acks)  # one ack per identity per loop pass
        self._to_ack.add(identity)

    def _send_acks(self) -> None:
        to_ack, self._to_ack = self._to_ack, set()
        for identity in to_ack:
            if self._committed.get(identity):
                self._send(identity, {"t": "ack", "seq": self._committed[identity]})
