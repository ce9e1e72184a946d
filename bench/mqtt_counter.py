"""The benches' MQTT subscriber: it only counts what arrives, and costs little doing it.

Why not paho: paho's receive path costs about 50 µs a message here, more than the daemon spends on
a log line (28 µs). On a 2-core machine the counter then competes with the job, the daemon and
mosquitto, and its own pace is what gets measured. This one speaks just enough MQTT 3.1.1 (CONNECT,
one SUBSCRIBE at QoS 0, PUBLISH in; no keepalive asked, so no PINGREQ) on a plain socket and
reads in 256 KiB chunks: about 2 µs a message.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

from pioreactord.packed import remaining_length

TagOf = Callable[[bytes], bytes]


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + remaining_length(len(body)) + body


def _string(text: bytes) -> bytes:
    return len(text).to_bytes(2, "big") + text


def log_tag(payload: bytes) -> bytes:
    """A log line's first word: `{"message":"r3 17 ..."}` -> b"r3" (the benches tag rounds so)."""
    start = payload.find(b'"message":"') + 11
    end = payload.find(b" ", start)
    return payload[start:end] if start >= 11 and end > 0 else b""


class Counter:
    """Counts the messages arriving on `pattern`: in all, and per `tag_of(payload)` if given.
    `expect(n)` then `reached` (an Event) and `last_at` time the arrival of n more; `first_at`
    gives when a tag's first message came."""

    def __init__(self, port: int, pattern: str, tag_of: TagOf | None = None) -> None:
        self.count = 0
        self.counts: dict[bytes, int] = {}
        self.first_at: dict[bytes, float] = {}  # monotonic time of each tag's first message
        self.target = 0
        self.last_at = 0.0
        self.reached = threading.Event()
        self._tag_of = tag_of
        self.ended = ""  # why the connection ended, if it did (the broker closed it, an error)
        self._subscribed = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._sock.settimeout(None)
        client_id = f"bench-counter-{os.getpid()}-{time.monotonic_ns()}".encode()
        # CONNECT: "MQTT", level 4 (3.1.1), clean session, keepalive 0 (none); then SUBSCRIBE
        # (packet id 1, the filter at QoS 0). The broker answers CONNACK and SUBACK.
        self._sock.sendall(_packet(0x10, _string(b"MQTT") + b"\x04\x02\x00\x00" + _string(client_id))
                           + _packet(0x82, b"\x00\x01" + _string(pattern.encode()) + b"\x00"))
        self._thread = threading.Thread(target=self._read, name="counter", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(5):
            raise TimeoutError("counter could not subscribe")

    def expect(self, more: int) -> None:
        self.reached.clear()
        self.target = self.count + more

    def count_of(self, tag: str) -> int:
        return self.counts.get(tag.encode(), 0)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._sock.recv(256 * 1024)
            except OSError as exc:
                self.ended = f"ended: {exc}"
                return
            if not chunk:
                self.ended = "closed by the broker"
                return
            buffer = self._packets(buffer + chunk)

    def _packets(self, data: bytes) -> bytes:
        """Handle the whole packets in `data`; return what is left of an unfinished one."""
        at, end = 0, len(data)
        while at + 2 <= end:
            length, shift, i = 0, 0, at + 1
            while i < end:
                length |= (data[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not data[i - 1] & 0x80:
                    break
            else:
                break  # the length itself is not all here yet
            if i + length > end:
                break
            kind = data[at] & 0xF0
            if kind == 0x30:  # PUBLISH (QoS 0: no packet id)
                self._published(data[i + 2 + int.from_bytes(data[i:i + 2], "big"):i + length])
            elif kind == 0x90:  # SUBACK
                self._subscribed.set()
            at = i + length
        return data[at:]

    def _published(self, payload: bytes) -> None:
        self.count += 1
        self.last_at = now = time.monotonic()
        if self._tag_of is not None:
            tag = self._tag_of(payload)
            seen = self.counts.get(tag, 0)
            if not seen:
                self.first_at[tag] = now
            self.counts[tag] = seen + 1
        if self.count >= self.target:
            self.reached.set()

    def close(self) -> None:
        try:
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            pass
        self._sock.close()
        self._thread.join(5)
