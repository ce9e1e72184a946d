"""One request, one reply over a ZeroMQ `ipc://` socket: how pioctl (and a job asking `whoami`)
calls the daemon without keeping a connection."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import zmq

from .protocol import decode, encode, new_id


class Unreachable(ConnectionError):
    pass


class Refused(Exception):
    """The daemon answered, and said no (the text is its error)."""


def call(socket_path: str, header: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send `header` (an `id` is added) and return the reply header. Unreachable if there is no
    socket file or no answer within `timeout` seconds."""
    if not os.path.exists(socket_path):
        raise Unreachable(f"no socket at {socket_path}")
    sock: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"ipc://{socket_path}")
        request_id = new_id()
        sock.send_multipart(encode({**header, "id": request_id}))
        deadline_ms = int(timeout * 1000)
        while sock.poll(deadline_ms):
            reply, _ = decode(sock.recv_multipart())
            if reply.get("id") == request_id:
                return reply
        raise Unreachable(f"no answer on {socket_path} within {timeout:g} s")
    finally:
        sock.close(0)


def stream(socket_path: str, header: dict[str, Any], *, renew_every: float,
           timeout: float) -> Iterator[tuple[dict[str, Any], bytes | None]]:
    """Send `header`, then yield every message the daemon streams back to this caller
    (`(header, payload)`), re-sending `header` every `renew_every` seconds as a keep-alive: the
    daemon ends a stream it has not heard about for a while, and a restarted daemon learns it again.
    Unreachable if the first request gets no answer within `timeout` seconds; Refused if the
    daemon refuses it."""
    if not os.path.exists(socket_path):
        raise Unreachable(f"no socket at {socket_path}")
    sock: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"ipc://{socket_path}")
    request_id = new_id()
    try:
        sock.send_multipart(encode({**header, "id": request_id}))
        if not sock.poll(int(timeout * 1000)):
            raise Unreachable(f"no answer on {socket_path} within {timeout:g} s")
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
