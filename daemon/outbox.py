"""What waits for the broker: the bridge's outbound queue, bounded, current values coalesced.

Two kinds of message, both kept here and handed to paho only as fast as it can have them in
flight (see bridge.py):

- **current values** (retained: `$state`, settings, `pwms/dc`, `leds/intensity`, a job's retained
  publish). The latest payload of every retained topic is kept in `current` for as long as the
  daemon runs, so a broker that restarts empty gets all of them again (`new_session`). A topic
  waits in the queue at most once: a newer value replaces the waiting one and moves to the back,
  so what reaches the broker is the true history minus values overtaken while they waited. An
  empty payload (a cleared setting) is forgotten once the broker has it.
  Bound: `MAX_CURRENT_TOPICS` topics, `MAX_CURRENT_BYTES` of payload; beyond it the topic updated
  longest ago is forgotten (counted in `evicted`): with tens of topics per job it is not reached.
- **stream messages** (log lines, a job's non-retained publishes): first in, first out. Bound:
  `MAX_STREAM` messages or `MAX_STREAM_BYTES` of topic + payload; beyond it the oldest are dropped
  and counted in `dropped` (log lines are in SQLite and the log file anyway).

Order out: by arrival, except that after a (re)connect every current value goes first (other
topics before `$state` ones: a watcher sees a job's settings before it sees it `ready`). A current
value whose topic is still in flight holds the queue (head of line): per topic the broker gets
values one at a time and in order, and a burst of one setting collapses to one message per round
trip whose last one is the last value (mosquitto drops the newest messages for a subscriber whose
queue is full, so the daemon must not be the one to flood it).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import NamedTuple

MAX_STREAM = 20_000
MAX_STREAM_BYTES = 8 * 2**20
MAX_CURRENT_TOPICS = 10_000
MAX_CURRENT_BYTES = 8 * 2**20


class Outgoing(NamedTuple):  # (a tuple: made per log line, 3x cheaper than a frozen dataclass)
    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int = 0  # arrival order (stream messages: to go back to the front if paho refuses)


class Outbox:
    """Not thread-safe: the main thread only."""

    def __init__(self, *, max_stream: int = MAX_STREAM, max_stream_bytes: int = MAX_STREAM_BYTES,
                 max_topics: int = MAX_CURRENT_TOPICS,
                 max_current_bytes: int = MAX_CURRENT_BYTES) -> None:
        self.max_stream, self.max_stream_bytes = max_stream, max_stream_bytes
        self.max_topics, self.max_current_bytes = max_topics, max_current_bytes
        self.current: OrderedDict[str, tuple[bytes, int]] = OrderedDict()  # topic -> (payload, qos)
        self.dropped = 0  # stream messages dropped at the bound since start
        self.evicted = 0  # current values forgotten at their bound since start
        self._current_bytes = 0
        self._waiting: OrderedDict[str, int] = OrderedDict()  # current topics to send -> seq
        self._busy: set[str] = set()  # current topics in flight
        self._stream: deque[Outgoing] = deque()
        self._stream_bytes = 0
        self._seq = 0
        self._current_first = False

    def __len__(self) -> int:
        return len(self._waiting) + len(self._stream)

    # --- in ------------------------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._seq += 1
        if retain:
            self._put_current(topic, payload, qos)
        else:
            self._stream.append(Outgoing(topic, payload, qos, False, self._seq))
            self._stream_bytes += len(topic) + len(payload)
            while len(self._stream) > self.max_stream or self._stream_bytes > self.max_stream_bytes:
                oldest = self._stream.popleft()
                self._stream_bytes -= len(oldest.topic) + len(oldest.payload)
                self.dropped += 1

    def _put_current(self, topic: str, payload: bytes, qos: int) -> None:
        old = self.current.pop(topic, None)
        if old is not None:
            self._current_bytes -= len(old[0])
        self.current[topic] = (payload, qos)
        self._current_bytes += len(payload)
        self._waiting.pop(topic, None)
        self._waiting[topic] = self._seq
        while len(self.current) > self.max_topics or self._current_bytes > self.max_current_bytes:
            oldest, (old_payload, _) = self.current.popitem(last=False)
            self._current_bytes -= len(old_payload)
            self._waiting.pop(oldest, None)
            self.evicted += 1

    def new_session(self) -> None:
        """The broker may have forgotten everything (clean session, maybe restarted empty):
        every current value waits again, before the stream."""
        topics = [t for t in self.current if not t.endswith("/$state")]
        topics += [t for t in self.current if t.endswith("/$state")]
        self._waiting = OrderedDict((topic, 0) for topic in topics)
        self._current_first = bool(self._waiting)

    def is_waiting(self, topic: str) -> bool:
        """A current value of `topic` is queued and not yet handed to paho."""
        return topic in self._waiting

    # --- out -----------------------------------------------------------------------------------
    def _current_is_next(self) -> bool:
        if self._current_first and not self._waiting:
            self._current_first = False
        return bool(self._waiting) and (self._current_first or not self._stream
                                        or next(iter(self._waiting.values())) < self._stream[0].seq)

    def take(self) -> Outgoing | None:
        """The next message to hand to paho, or None (empty, or the head's topic is in flight)."""
        if self._current_is_next():
            topic = next(iter(self._waiting))
            if topic in self._busy:
                return None  # head of line: this topic's previous value is not acknowledged yet
            del self._waiting[topic]
            self._busy.add(topic)
            payload, qos = self.current[topic]
            return Outgoing(topic, payload, qos, True)
        if self._stream:
            message = self._stream.popleft()
            self._stream_bytes -= len(message.topic) + len(message.payload)
            return message
        return None

    def stream_qos0_is_next(self) -> bool:
        return bool(self._stream) and self._stream[0].qos == 0 and not self._current_is_next()

    def take_run(self, max_bytes: int) -> list[Outgoing]:
        """The QoS-0 stream messages next in line, up to `max_bytes` of topic + payload (at least
        one if any): none when a current value or a QoS 1/2 message is next."""
        run: list[Outgoing] = []
        size = 0
        while self.stream_qos0_is_next():
            cost = len(self._stream[0].topic) + len(self._stream[0].payload)
            if run and size + cost > max_bytes:
                break
            run.append(self._stream.popleft())
            self._stream_bytes -= cost
            size += cost
        return run

    def put_back(self, message: Outgoing) -> None:
        """paho did not take `message` (not connected after all): it goes first next time."""
        if message.retain:
            self._busy.discard(message.topic)
            if message.topic in self.current and message.topic not in self._waiting:
                self._waiting[message.topic] = 0
                self._waiting.move_to_end(message.topic, last=False)
        else:
            self._stream.appendleft(message)
            self._stream_bytes += len(message.topic) + len(message.payload)

    def done(self, topic: str, retain: bool) -> None:
        """The broker has a message taken from here (or paho gave it up)."""
        if not retain:
            return
        self._busy.discard(topic)
        value = self.current.get(topic)
        if value is not None and value[0] == b"" and topic not in self._waiting:
            del self.current[topic]  # a cleared value: the broker has the clear

    def stats(self) -> dict[str, int]:
        return {"queued": len(self), "current_topics": len(self.current),
                "dropped": self.dropped, "evicted": self.evicted}
