"""One request, one reply over a ZeroMQ `ipc://` socket: how pioctl (and a job asking `whoami`)
calls the daemon without keeping a connection."""

from __future__ import annotations

import os
from typing import Any

import zmq

from .protocol import decode, encode, new_id


class Unreachable(ConnectionError):
    pass


def call(socket_path: str, header: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send `header` (an `id` is added) and return the reply header. Unreachable if there is no
    socket file or no answer within `timeout` seconds."""
    if not os.path.exists(socket_path):
        raise Unreachable(f"no socket at {socket_path}")
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
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
