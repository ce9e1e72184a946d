"""The daemon's end of the job channel: one ROUTER socket, its sends and its replies.

Messages and their fields are documented in `protocol.py`. This is the transport only: it is
built first (the supervisor sends through it), and `listen` hands every decoded message to the
handlers in jobmessages.py. Requests the daemon sends to jobs (`set`, `state_set`) are matched
to their replies here, and broker messages are delivered to the jobs subscribed to them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
import zmq

from .bridge import Incoming
from .loop import Loop
from .protocol import ProtocolError, decode, encode, new_id, topic_matches
from .registry import Job, Registry

log = structlog.get_logger("pioreactord.jobchannel")

Reply = Callable[[dict[str, Any]], None]
PeerLookup = Callable[[], "Peer | None"]  # asked only when it matters (registering, anonymous)
Handler = Callable[[bytes, dict[str, Any], bytes | None, PeerLookup], None]
RETAINED_WINDOW = 5.0  # seconds after subscribing during which a job accepts retained re-sends
JOB_REQUEST_TIMEOUT = 10.0
MAX_PASS_MESSAGES = 1000  # read from the job channel in one loop pass at most, and
MAX_PASS_BYTES = 1 << 19  # (about 2,500 log lines): then timers, acks and the broker get a turn


@dataclass(frozen=True)
class Peer:
    """The process at the other end of a job-channel connection, as the kernel recorded it when
    that process connected (SO_PEERCRED): never what a message claims."""

    uid: int
    gid: int
    pid: int


def peer_of(frame: zmq.Frame) -> Peer | None:
    """libzmq gives every message from an ipc:// peer the metadata Peer-Address
    "<address>:uid:gid:pid" where the kernel has SO_PEERCRED (Linux; libzmq 4.3.4 and 4.3.5)."""
    try:
        address = str(frame.get("Peer-Address"))
    except (zmq.ZMQError, TypeError):
        return None
    fields = address.rsplit(":", 3)[1:]
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    uid, gid, pid = (int(f) for f in fields)
    return Peer(uid, gid, pid)


class JobChannel:
    def __init__(self, *, socket: zmq.Socket, loop: Loop, registry: Registry) -> None:
        self.socket, self.loop, self.registry = socket, loop, registry
        self._pending: dict[str, tuple[bytes | None, Reply]] = {}  # request id -> (to whom, waiter)
        self._fresh: dict[tuple[int, str], float] = {}  # (job_id, pattern) -> retained window end
        self._handle: Handler = lambda identity, msg, payload, peer: None

    # --- socket --------------------------------------------------------------------------------
    def listen(self, handle: Handler) -> None:
        """From now on every message from a job goes to `handle(identity, header, payload,
        peer)`; `peer()` says who sent it (the kernel's word)."""
        self._handle = handle
        self.loop.watch(self.socket, self.on_readable)

    def on_readable(self) -> None:
        # Bounded (the socket is polled again next pass), so one chatty job cannot starve the
        # loop: a pass over 20,000 grouped log lines would fill the broker's queue before the
        # loop ever saw paho say it wrote the first of them.
        budget = MAX_PASS_BYTES
        for _ in range(MAX_PASS_MESSAGES):
            try:
                identity = self.socket.recv(zmq.NOBLOCK)  # ROUTER: the sender, then its frames
            except zmq.Again:
                return
            first = self.socket.recv(copy=False)
            rest = [first.bytes, *self._rest_of(first)]
            budget -= sum(map(len, rest))
            # libzmq 4.3.4 (bookworm) puts the peer's metadata on the frames it received, not on
            # the identity frame the ROUTER adds; 4.3.5 on both.
            peer = functools.partial(peer_of, first)
            try:
                msg, payload = decode(rest)
            except ProtocolError as exc:
                known = peer()
                log.warning("bad message on the job channel", error=str(exc),
                            uid=known.uid if known else "?", pid=known.pid if known else "?")
                continue
            self._handle(identity, msg, payload, peer)
            if budget <= 0:
                return

    def _rest_of(self, frame: zmq.Frame) -> list[bytes]:
        """The frames after `frame` (all of them, so the next read starts a message). One frame
        at a time: cheaper than recv_multipart, and only the first is kept as a Frame."""
        rest: list[bytes] = []
        more = frame.more
        while more:
            part = self.socket.recv(copy=False)
            rest.append(part.bytes)
            more = part.more
        return rest

    def send(self, identity: bytes | None, header: dict[str, Any], payload: bytes | None = None) -> bool:
        if identity is None:
            return False
        try:
            self.socket.send_multipart([identity, *encode(header, payload)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # the job is gone or its queue is full: its end is handled elsewhere
            return False

    def request(self, job: Job, header: dict[str, Any], on_reply: Reply,
                timeout: float = JOB_REQUEST_TIMEOUT) -> None:
        """Send a request to a job; `on_reply` gets its reply, or a timeout error."""
        request_id = new_id()
        self._pending[request_id] = (job.identity, on_reply)

        def expire() -> None:
            pending = self._pending.pop(request_id, None)
            if pending:
                pending[1]({"ok": False, "error": f"{job.name} did not answer within {timeout:g} s",
                        "code": "timeout"})

        if not self.send(job.identity, {**header, "id": request_id}):
            self._pending.pop(request_id, None)
            on_reply({"ok": False, "error": f"{job.name} is not reachable", "code": "gone"})
            return
        self.loop.call_later(timeout, expire)

    def answered(self, identity: bytes, msg: dict[str, Any]) -> None:
        """A job's `reply` to one of our requests; only the connection asked may answer it."""
        request_id = str(msg.get("id"))
        pending = self._pending.get(request_id)
        if pending is None or pending[0] != identity:
            return
        del self._pending[request_id]
        pending[1]({k: v for k, v in msg.items() if k not in ("v", "t", "id")})

    # --- MQTT -> jobs --------------------------------------------------------------------------
    def subscribed(self, job: Job, patterns: Iterable[str]) -> None:
        """`job` just subscribed to `patterns`: the retained messages the broker re-sends now
        are for it."""
        for pattern in patterns:
            self._fresh[(job.job_id, pattern)] = time.monotonic() + RETAINED_WINDOW

    def forward(self, message: Incoming) -> None:
        """Deliver a broker message to every job subscribed to a matching pattern (once each)."""
        now = time.monotonic()
        for job in list(self.registry.jobs.values()):
            matching = [p for p in job.subscriptions if topic_matches(p, message.topic)]
            if not matching:
                continue
            if message.retain and not any(self._fresh.get((job.job_id, p), 0) > now
                                          for p in matching):
                continue  # a retained re-send triggered by another job's subscribe
            self.send(job.identity, {"t": "message", "topic": message.topic,
                                     "retain": message.retain, "qos": message.qos},
                      message.payload)
