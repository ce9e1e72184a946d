"""What a job has for the daemon: the frames waiting for the socket, and the log lines sent but
not yet confirmed (the daemon's `ack` follows its SQLite commit). Settings are current values:
the job sends them all again when it registers with a new daemon (link.py).

Every log line gets a sequence number (`seq`, per channel: per job instance) and is
held until an `ack` covers it; a `resend` (the daemon saw a gap, e.g. it restarted and lost what
its predecessor had not read) puts the held ones from a number on back at the front, behind a
`resending` marker. The daemon drops what it already has by `seq`.

Bounds, and the rule when they are met (the I/O thread never blocks; a logging thread waits at
most `ROOM_WAIT` s, and only while the daemon is keeping up):
- log lines held unconfirmed: `MAX_LOG_LINES` or `MAX_LOG_BYTES`. While the daemon confirms (an
  `ack` in the last `ALIVE_WITHIN` s), a thread logging past the bound waits up to `ROOM_WAIT` s
  for its acks to make room: a burst faster than the daemon commits is slowed, not cut. With no
  room then, or a daemon that is away, a new log line is dropped and counted, and once the daemon has taken half of them the channel logs one WARNING
  with the count. (Until the daemon has confirmed anything, as with a daemon that does not
  confirm, the oldest sent ones make room instead.)
- everything waiting for the socket: `MAX_WAITING` messages or `MAX_WAITING_BYTES`; beyond it a
  new message of any kind is dropped and counted the same way (a request among them then times
  out as if the daemon were away). Settings and state are few; a flood is of log lines or data.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from typing import Any

from pioreactord.protocol import encode, encode_log, join_logs

SEQUENCED = frozenset({"log"})  # settings are current values: sent again at re-registration
MAX_LOG_LINES = 20_000
MAX_LOG_BYTES = 8 * 2**20
MAX_WAITING = 100_000
MAX_WAITING_BYTES = 32 * 2**20
GROUP_LINES = 512  # log lines waiting back to back go as one `logs` message of at most these
GROUP_BYTES = 256 * 1024  # (one send here and one receive and decode in the daemon, not 512)
ROOM_WAIT = 2.0  # s a logging thread may wait for room while the daemon confirms
ALIVE_WITHIN = 2.0  # s since the last ack for the daemon to count as keeping up


def _size(frames: list[bytes]) -> int:
    return sum(map(len, frames))


class Held:
    """Thread-safe: any thread adds, the I/O thread takes, acks and resends."""

    def __init__(self, *, max_lines: int = MAX_LOG_LINES, max_bytes: int = MAX_LOG_BYTES,
                 max_waiting: int = MAX_WAITING, max_waiting_bytes: int = MAX_WAITING_BYTES,
                 room_wait: float = ROOM_WAIT) -> None:
        self.room_wait = room_wait
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self.max_waiting, self.max_waiting_bytes = max_waiting, max_waiting_bytes
        self.confirming = False  # the daemon has sent an ack: it confirms what it commits
        self.sent_upto = 0  # the highest seq handed to the socket
        self.dropped = 0  # messages dropped at a bound, not yet reported
        self.last_log: dict[str, Any] = {}  # task, source, experiment of the last log line
        self._lock = threading.Lock()
        self.all_confirmed = threading.Condition(self._lock)
        self._waiting: deque[tuple[int, list[bytes]]] = deque()  # (seq or 0, frames)
        self._waiting_bytes = 0
        self._unconfirmed: OrderedDict[int, tuple[bool, list[bytes]]] = OrderedDict()  # seq -> (is log, frames)
        self._lines = 0
        self._line_bytes = 0
        self._seq = 0
        self.io_thread: threading.Thread | None = None  # set by the channel that owns this
        self._last_ack = 0.0  # monotonic time of the last `ack`
        self._room = threading.Condition(self._lock)  # an ack made room for log lines
        self._peeked = 1  # how many waiting entries the frames `peek` gave stand for

    # --- any thread ----------------------------------------------------------------------------
    def add(self, header: dict[str, Any], payload: bytes | None) -> bool:
        """Queue one message; False if a bound dropped it."""
        kind = header.get("t")
        with self._lock:
            if kind == "log":
                self.last_log = header  # (the drop warning takes task, source, experiment from it)
                if not self._room_for_a_line() and not self._wait_for_room():
                    self.dropped += 1
                    return False
            if len(self._waiting) >= self.max_waiting or self._waiting_bytes > self.max_waiting_bytes:
                self.dropped += 1
                return False
            seq = 0
            if kind in SEQUENCED:
                self._seq = seq = self._seq + 1
            frames = (encode_log(header, seq) if seq and payload is None
                      else encode(header, payload))
            if seq:
                self._unconfirmed[seq] = (kind == "log", frames)
                if kind == "log":
                    self._lines += 1
                    self._line_bytes += _size(frames)
            self._waiting.append((seq, frames))
            self._waiting_bytes += _size(frames)
            return True

    def _room_for_a_line(self) -> bool:
        while self._lines >= self.max_lines or self._line_bytes > self.max_bytes:
            if self.confirming:
                return False
            oldest = next(iter(self._unconfirmed), None)
            if oldest is None or oldest > self.sent_upto:
                return False  # nothing sent to make room with
            self._forget(oldest)
        return True

    def _wait_for_room(self) -> bool:
        """Wait (lock held) for acks to make room, if the daemon is confirming and alive."""
        if threading.current_thread() is self.io_thread:
            return False  # the thread that reads the acks must never wait for them
        deadline = time.monotonic() + self.room_wait
        while time.monotonic() - self._last_ack < ALIVE_WITHIN:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._room.wait(min(left, ALIVE_WITHIN))
            if self._room_for_a_line():
                return True
        return False

    def _forget(self, seq: int) -> None:
        is_log, frames = self._unconfirmed.pop(seq)
        if is_log:
            self._lines -= 1
            self._line_bytes -= _size(frames)

    # --- the I/O thread ------------------------------------------------------------------------
    def peek(self) -> list[bytes] | None:
        """The next message for the socket. Log lines waiting back to back become one `logs`
        message whose `records` are their headers as they are (up to GROUP_LINES/GROUP_BYTES)."""
        with self._lock:
            if not self._waiting:
                return None
            seq, frames = self._waiting[0]
            self._peeked = 1
            if not seq or len(frames) != 1 or len(self._waiting) == 1:
                return frames
            parts, size = [frames[0]], len(frames[0])
            for seq, frames in itertools.islice(self._waiting, 1, GROUP_LINES):
                if not seq or len(frames) != 1 or size + len(frames[0]) > GROUP_BYTES:
                    break
                parts.append(frames[0])
                size += len(frames[0])
            if len(parts) == 1:
                return self._waiting[0][1]
            self._peeked = len(parts)
            return join_logs(parts)

    def sent(self) -> None:
        """The frames `peek` gave went to the socket."""
        with self._lock:
            for _ in range(self._peeked):
                seq, frames = self._waiting.popleft()
                self._waiting_bytes -= _size(frames)
                if seq:
                    self.sent_upto = max(self.sent_upto, seq)
            self._peeked = 1

    def confirmed(self, upto: int) -> None:
        """The daemon's `ack`: everything up to `upto` is in its database."""
        with self._lock:
            self.confirming = True
            self._last_ack = time.monotonic()
            while self._unconfirmed:
                seq = next(iter(self._unconfirmed))
                if seq > upto:
                    break
                self._forget(seq)
            self._room.notify_all()
            if not self._unconfirmed:
                self.all_confirmed.notify_all()

    def resend(self, start: int) -> int:
        """The daemon's `resend`: the held messages from `start` that went out already go again
        first (those still waiting go in their turn), behind a `resending` that says from which
        seq on this job still has them (the daemon counts anything before it as lost). Returns
        how many go again."""
        with self._lock:
            again = [(seq, frames) for seq, (_, frames) in self._unconfirmed.items()
                     if start <= seq <= self.sent_upto]
            for seq, frames in reversed(again):
                self._waiting.appendleft((seq, frames))
                self._waiting_bytes += _size(frames)
            held = [seq for seq in self._unconfirmed if seq >= start]
            marker = encode({"t": "resending", "from": held[0] if held else self._seq + 1})
            self._waiting.appendleft((0, marker))
            self._waiting_bytes += _size(marker)
            if again:
                self.sent_upto = start - 1
            return len(again)

    def drop_report(self) -> int:
        """How many were dropped, once there is room again (then counted anew); else 0."""
        with self._lock:
            # Held lines: those unconfirmed or, with a daemon that does not confirm, unsent.
            held = self._lines if self.confirming else self._seq - self.sent_upto
            if not self.dropped or held > self.max_lines // 2 \
                    or len(self._waiting) > self.max_waiting // 2:
                return 0
            dropped, self.dropped = self.dropped, 0
            return dropped

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def unconfirmed(self) -> int:
        with self._lock:
            return len(self._unconfirmed)

    def unconfirmed_locked(self) -> int:
        """For a predicate of `all_confirmed` (its lock is held then)."""
        return len(self._unconfirmed)
