"""One request, one reply on the daemon's control (or job) socket: how pioctl, `whoami` and
`led_intensity` call the daemon without keeping a connection.

`call` speaks ZMTP 3.0 (the ZeroMQ wire protocol, rfc.zeromq.org/spec/23, NULL security) as a
DEALER over a plain AF_UNIX socket, without pyzmq: importing pyzmq is a third of a `pioctl status`,
and a plain socket says at once why the daemon cannot be reached (ENOENT: no daemon; ECONNREFUSED:
a stale socket; EACCES: not in the socket's group) where a ZeroMQ socket connects lazily and only
ever times out. The daemon's end is an ordinary libzmq ROUTER. `stream` (pioctl mqtt, long-lived)
uses pyzmq.

    Unreachable  the daemon cannot be reached (pioctl exit 3); `.reason` says why
    TimedOut     connected, but no answer within the timeout (pioctl exit 1); an Unreachable
    Refused      the daemon answered no (a stream's first request; `call` returns the reply)
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import time
from collections.abc import Iterator

from .limits import MAX_FRAME, size_text

TYPE_CHECKING = False  # typing itself costs an import; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any

# protocol.VERSION, not imported: protocol.py pulls in uuid, datetime and typing, a tenth of a
# `pioctl status` (tests/unit/test_pioctl_core.py keeps the two equal).
PROTOCOL_VERSION = 1
CONTROL_GROUP = "pioreactor"  # the group that may use the sockets (srw-rw----, debian/postinst)
MAX_REPLY = 64 * 2**20  # bytes: a bigger frame is not a reply of ours
_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
_GREETING = _SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04


class Unreachable(ConnectionError):
    def __init__(self, message: str, reason: str = "unreachable") -> None:
        super().__init__(message)
        self.reason = reason  # no_daemon | stale_socket | permission_denied | closed | unreachable


class TimedOut(Unreachable):
    """Connected, but no answer in time (an Unreachable, so callers that only care whether the
    daemon answered catch one exception; pioctl tells the two apart)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "timed_out")


class TooLarge(ValueError):
    """A request bigger than the daemon takes (limits.MAX_FRAME): refused here, never sent."""


class Refused(Exception):
    """The daemon answered, and said no (the text is its error)."""


def connect_unix(path: str, timeout: float) -> socket.socket:
    """A connected AF_UNIX stream socket to `path`, or Unreachable saying why, at once."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise _unreachable(path, exc) from None
    return sock


def _unreachable(path: str, exc: OSError) -> Unreachable:
    if exc.errno == errno.ENOENT:
        return Unreachable(f"no socket at {path}: pioreactord is not running", "no_daemon")
    if exc.errno == errno.ECONNREFUSED:
        return Unreachable(f"stale socket {path}: nothing listens on it (pioreactord is not "
                           "running, or it died)", "stale_socket")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Unreachable(f"permission denied on {path}: add yourself to group {CONTROL_GROUP} "
                           f"(sudo adduser $USER {CONTROL_GROUP}, then log in again)",
                           "permission_denied")
    return Unreachable(f"cannot connect to {path}: {exc.strerror or exc}")


def call(socket_path: str, header: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send `header` (an `id` is added) and return the reply header. Unreachable at once if
    nobody listens on `socket_path`; TimedOut if no reply comes within `timeout` seconds;
    TooLarge (nothing sent) for a request the daemon would drop."""
    deadline = time.monotonic() + timeout
    request_id = os.urandom(6).hex()
    request = json.dumps({"v": PROTOCOL_VERSION, **header, "id": request_id},
                         separators=(",", ":")).encode()
    if len(request) > MAX_FRAME:  # the daemon's socket would drop it and never answer
        raise TooLarge(f"the request is {size_text(len(request))} (at most "
                       f"{size_text(MAX_FRAME)})")
    sock = connect_unix(socket_path, timeout)
    try:
        sock.sendall(_GREETING + _command(b"READY", {b"Socket-Type": b"DEALER"}))
        reader = _Reader(sock, deadline)
        reader.handshake()  # libzmq drops a peer whose message comes before its own READY
        sock.sendall(_frame(request))
        while True:
            frames = reader.message()
            try:
                reply = json.loads(frames[0])
            except (ValueError, IndexError):
                continue  # not a header of ours; the daemon never sends one
            if isinstance(reply, dict) and reply.get("id") == request_id:
                return reply
    except TimeoutError:
        raise TimedOut(f"no answer on {socket_path} within {timeout:g} s") from None
    except (ConnectionError, EOFError) as exc:
        raise Unreachable(f"pioreactord closed the connection on {socket_path} ({exc})",
                          "closed") from None
    finally:
        sock.close()


def _frame(body: bytes, more: bool = False) -> bytes:
    flags = _MORE if more else 0
    if len(body) > 255:
        return struct.pack(">BQ", flags | _LONG, len(body)) + body
    return struct.pack(">BB", flags, len(body)) + body


def _command(name: bytes, properties: dict[bytes, bytes]) -> bytes:
    body = bytes([len(name)]) + name + b"".join(
        bytes([len(k)]) + k + struct.pack(">I", len(v)) + v for k, v in properties.items())
    return struct.pack(">BB", _COMMAND, len(body)) + body


class _Reader:
    """Reads ZMTP from `sock` until `deadline` (monotonic): TimeoutError past it."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline, self._buffer = sock, deadline, b""

    def _exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            chunk = self._sock.recv(max(65536, count - len(self._buffer)))
            if not chunk:
                raise EOFError("end of stream")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def handshake(self) -> None:
        """The peer's greeting and its READY command (NULL security)."""
        greeting = self._exactly(64)
        if greeting[0] != 0xFF or greeting[9] & 0x01 != 1 or greeting[10] < 3:
            raise ConnectionError("the peer does not speak ZMTP 3")
        if greeting[12:32].rstrip(b"\x00") != b"NULL":
            raise ConnectionError("the peer wants a security mechanism other than NULL")
        flags, body = self._frame()
        if not flags & _COMMAND or body[1:1 + body[0]] != b"READY":
            raise ConnectionError("the peer did not send READY")

    def _frame(self) -> tuple[int, bytes]:
        flags = self._exactly(1)[0]
        size = struct.unpack(">Q", self._exactly(8))[0] if flags & _LONG else self._exactly(1)[0]
        if size > MAX_REPLY:
            raise ConnectionError(f"a frame of {size} bytes")
        return flags, self._exactly(size)

    def message(self) -> list[bytes]:
        """The next multi-frame message; commands (READY, PING, ...) are skipped."""
        frames: list[bytes] = []
        while True:
            flags, body = self._frame()
            if flags & _COMMAND:
                if body[1:1 + body[0]] == b"ERROR":
                    raise ConnectionError(f"the peer refused us: {body[7:]!r}")
                continue
            frames.append(body)
            if not flags & _MORE:
                return frames


def stream(socket_path: str, header: dict[str, Any], *, renew_every: float,
           timeout: float) -> Iterator[tuple[dict[str, Any], bytes | None]]:
    """Send `header`, then yield every message the daemon streams back to this caller
    (`(header, payload)`), re-sending `header` every `renew_every` seconds as a keep-alive: the
    daemon ends a stream it has not heard about for a while, and a restarted daemon learns it again.
    Unreachable if nobody listens; TimedOut if the first request gets no answer within `timeout`
    seconds; Refused if the daemon refuses it."""
    import zmq

    from .protocol import decode, encode, new_id

    connect_unix(socket_path, timeout).close()  # why it cannot be reached, at once
    sock: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{socket_path}")
    request_id = new_id()
    try:
        sock.send_multipart(encode({**header, "id": request_id}))
        if not sock.poll(int(timeout * 1000)):
            raise TimedOut(f"no answer on {socket_path} within {timeout:g} s")
        first, _ = decode(sock.recv_multipart())
        if not first.get("ok"):
            raise Refused(str(first.get("error")))
        renew_at = time.monotonic() + renew_every
        while True:
            if sock.poll(max(0, int((renew_at - time.monotonic()) * 1000)) + 1):
                message, payload = decode(sock.recv_multipart())
                if message.get("t") != "reply":
                    yield message, payload
            if time.monotonic() >= renew_at:
                sock.send_multipart(encode({**header, "id": request_id}))
                renew_at = time.monotonic() + renew_every
    finally:
        try:
            sock.send_multipart(encode({**header, "args": {**header.get("args", {}), "end": True},
                                        "id": request_id}), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        sock.close(100)
