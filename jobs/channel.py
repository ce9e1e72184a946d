"""A job's end of the job channel: one DEALER socket owned by one I/O thread.

ZeroMQ sockets are not thread-safe, so only the I/O thread touches the socket. Other threads
enqueue outgoing frames and poke a wake pipe; requests wait on an Event for their reply. Messages
from the daemon (`message`, `set`, `state_set`, `who`) are handed to a dispatcher thread, so a
slow callback never delays a reply (a callback may itself make requests, e.g. a PWM change).

While the daemon is away (restart, reload) ZeroMQ keeps the DEALER's outgoing queue and
reconnects by itself. A socket monitor says when: on reconnecting the job pings at once, and the
new daemon's `who` (or a changed daemon id in `pong`) makes the job register again.

Back-pressure never kills the channel. What waits for the socket and the log lines the daemon has
not confirmed are held in `Held` (held.py: bounds and the drop rule); ZeroMQ's own queue is kept
small (`SEND_HWM`). When the socket is full (the daemon stalled, stopped or gone) the I/O thread
waits for it to be writable and skips heartbeats meanwhile; nothing raises out of it. A ping
carries `sent`, the highest seq sent, so a daemon that missed some (a restart) asks for them.
"""

from __future__ import annotations

import atexit
import os
import queue
import socket as pysocket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from pioreactord.protocol import ProtocolError, decode, encode, new_id, utc_timestamp

from .held import Held

HEARTBEAT_SECONDS = 2.0
SEND_HWM = 1_000  # ZeroMQ's queue: a window only, what waits is in Held
CLOSE_CONFIRM_SECONDS = 2.0  # at close, how long to wait for the daemon to confirm the last lines


_spare_channels: list[Channel] = []  # see prepare_spare_channel


def prepare_spare_channel(socket_path: str) -> None:
    """Make this process's next channel now, connected to the daemon at `socket_path`: the fork
    server's spare does it while it waits to become a job, so a start neither builds a channel
    (ZeroMQ context, socket, monitor, two threads: ~2 ms) nor waits for ZeroMQ's handshake with
    the daemon (~1.5 ms). Never in a process that forks afterwards: a forked child must not
    inherit a context. The daemon hears nothing from it until the job registers."""
    if not _spare_channels:
        _spare_channels.append(Channel(socket_path, f"{os.getpid()}:{os.urandom(3).hex()}"))
        atexit.register(_close_spare_channels)  # a spare that never became a job, say


def take_spare_channel(socket_path: str) -> Channel | None:
    """The channel this process's spare made, if it is to `socket_path` (else it is closed)."""
    while _spare_channels:
        channel = _spare_channels.pop()
        if channel.socket_path == socket_path and channel.pid == os.getpid():
            return channel
        channel.close()
    return None


def _close_spare_channels() -> None:
    while _spare_channels:
        _spare_channels.pop().close()


class DaemonUnavailable(ConnectionError):
    pass


class RequestFailed(Exception):
    def __init__(self, message: str, code: str = "failed", reply: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reply = reply or {}


def check_daemon_listening(path: str) -> None:
    """Fail at once, with what to do, if nothing listens on the job socket."""
    hint = ("start it with `pioreactord --config PATH` (or `systemctl start pioreactord`), or point "
            "$PIOREACTORD_CONFIG at the config of the running daemon")
    probe = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except FileNotFoundError:
        raise DaemonUnavailable(f"pioreactord is not running: no job socket at {path}; {hint}") from None
    except OSError as exc:
        raise DaemonUnavailable(
            f"pioreactord is not answering on {path} ({exc.strerror or exc}); {hint}") from None
    finally:
        probe.close()


@dataclass
class Pending:
    """A request sent and not answered yet (see Channel.begin)."""

    request_id: str
    kind: str
    done: threading.Event = field(default_factory=threading.Event)
    box: list[dict] = field(default_factory=list)


class Channel:
    """`identity` is the job's routing id on the daemon's ROUTER (unique per process: the daemon
    trusts the kernel's peer credentials, never a name). Nothing is dispatched until `claim`."""

    def __init__(self, socket_path: str, identity: str,
                 on_event: Callable[[dict[str, Any], bytes | None], None] | None = None) -> None:
        self.socket_path = socket_path
        self.pid = os.getpid()
        self.daemon_id: str | None = None
        self.connected = False  # ZeroMQ's handshake with the daemon is done (the monitor says)
        self._on_event: Callable[[dict[str, Any], bytes | None], None] = lambda header, payload: None
        self._held = Held()
        self._job_name = identity.split(":")[0]
        self._blocked = False  # the socket said Again: wait for POLLOUT
        self.pings_skipped = 0
        self._pending: dict[str, tuple[threading.Event, list[dict]]] = {}
        self._events: queue.SimpleQueue[tuple[dict, bytes | None] | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_pending = False  # a wake byte is on its way: a burst of sends writes one
        self._closing = threading.Event()
        self._busy_since: float | None = None  # a callback has been running since (monotonic)
        # No heartbeat until the job has registered: a ping from an identity the daemon does not
        # know yet is answered with `who`, which would make the job register a second time.
        self._heartbeat = threading.Event()
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.ROUTING_ID, identity.encode())
        self._socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._socket.setsockopt(zmq.LINGER, 2000)
        self._socket.connect(f"ipc://{socket_path}")
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self._io = threading.Thread(target=self._io_loop, name="daemon-channel", daemon=True)
        self._held.io_thread = self._io
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="callbacks", daemon=True)
        self._io.start()
        self._dispatcher.start()  # until `claim`, what it gets goes to a no-op (a spare's news)
        if on_event is not None:
            self.claim(self._job_name, on_event)

    def claim(self, job_name: str, on_event: Callable[[dict[str, Any], bytes | None], None]) -> None:
        """The job that uses this channel: its name (for the channel's own log lines) and the
        handler of the daemon's messages, called on the dispatcher thread from now on."""
        while True:  # a spare's stale news (a daemon that went away while it waited)
            try:
                self._events.get_nowait()
            except queue.Empty:
                break
        self._job_name, self._on_event = job_name, on_event

    # --- any thread ----------------------------------------------------------------------------
    def send(self, header: dict[str, Any], payload: bytes | None = None) -> None:
        """Queue a message (never blocks; a bound may drop it: see held.py)."""
        if self._held.add(header, payload) and not self._wake_pending:
            self._wake_pending = True  # else the I/O thread has yet to drain and sends this too
            self._wake()

    def request(self, header: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send and wait for the reply's result; RequestFailed on a refusal or a timeout."""
        return self.wait(self.begin(header), timeout)

    def begin(self, header: dict[str, Any]) -> Pending:
        """Send a request now and `wait` for its reply later (so a caller can send it while
        holding a lock of its own, and wait without it)."""
        pending = Pending(new_id(), str(header.get("t")))
        self._pending[pending.request_id] = (pending.done, pending.box)
        self.send({**header, "id": pending.request_id})
        return pending

    def wait(self, pending: Pending, timeout: float = 10.0) -> dict[str, Any]:
        if not pending.done.wait(timeout):
            self._pending.pop(pending.request_id, None)
            raise RequestFailed(f"pioreactord did not answer {pending.kind!r} within {timeout:g} s "
                                f"(socket {self.socket_path})", "timeout")
        reply = pending.box[0]
        if not reply.get("ok"):
            raise RequestFailed(str(reply.get("error")), str(reply.get("code", "failed")), reply)
        return reply.get("result") or {}

    def close(self) -> None:
        """Wait (bounded) for the daemon to confirm the last lines, flush what is queued
        (bounded by LINGER), then stop both threads."""
        if self._held.confirming and threading.current_thread() is not self._io:
            with self._held.all_confirmed:
                self._held.all_confirmed.wait_for(lambda: not self._held.unconfirmed_locked(),
                                                  CLOSE_CONFIRM_SECONDS)
        self._closing.set()
        self._wake()
        self._events.put(None)
        if threading.current_thread() is not self._io:
            self._io.join(5)
        if threading.current_thread() is not self._dispatcher:  # (a callback may close it)
            self._dispatcher.join(5)

    def start_heartbeat(self) -> None:
        """Called once registered; pings also tell the job when the daemon has restarted."""
        self._heartbeat.set()
        self._wake()

    def in_dispatcher(self) -> bool:
        return threading.current_thread() is self._dispatcher

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass

    # --- I/O thread ----------------------------------------------------------------------------
    def _io_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        self._next_ping = time.monotonic()
        try:
            while not self._io_step(poller):
                pass
        finally:
            self._socket.disable_monitor()
            self._monitor.close()
            self._socket.close()
            self._context.term()

    def _io_step(self, poller: zmq.Poller) -> bool:
        """One pass; True once closing is done. Survives whatever one pass raises."""
        try:
            poller.modify(self._socket, zmq.POLLIN | (zmq.POLLOUT if self._blocked else 0))
            timeout = max(0.0, self._next_ping - time.monotonic())
            ready = dict(poller.poll(int(timeout * 1000)))
            if self._wake_r in ready:
                self._drain_wake()
            self._flush()
            if self._closing.is_set() and (self._blocked or self._held.peek() is None):
                return True  # what ZeroMQ holds goes within LINGER; a stalled daemon gets no more
            if ready.get(self._socket, 0) & zmq.POLLIN:
                self._receive_all()
            if self._monitor in ready and self._connection_changed():
                self._next_ping = 0.0  # a daemon is back: say hello now, not at the next beat
            self._heartbeat_and_report()
        except zmq.ContextTerminated:
            return True
        except Exception as exc:  # noqa: BLE001 - the job must never go deaf and mute
            print(f"pioreactor: job channel error (going on): {exc!r}", flush=True)
        return False

    def _heartbeat_and_report(self) -> None:
        if not self._heartbeat.is_set():
            self._next_ping = time.monotonic() + HEARTBEAT_SECONDS
            return
        if time.monotonic() < self._next_ping:
            return
        self._next_ping = time.monotonic() + HEARTBEAT_SECONDS
        if self._blocked:
            self.pings_skipped += 1  # the daemon is not reading: a ping would only queue
        else:
            try:
                self._socket.send_multipart(
                    encode({"t": "ping", "sent": self._held.sent_upto, **self._busy()}), zmq.NOBLOCK)
            except zmq.Again:
                self._blocked = True  # the daemon is not reading: no ping until it does
        dropped = self._held.drop_report()
        if dropped:
            self.send({"t": "log", "level": "WARNING", "task": self._job_name, "source": "app",
                       **{k: v for k in ("task", "source", "experiment")
                          if (v := self._held.last_log.get(k)) is not None},
                       "timestamp": utc_timestamp(),
                       "message": f"{dropped} messages to pioreactord were dropped: it took none "
                                  f"while this job held {self._held.max_lines} unconfirmed log "
                                  "lines (stalled, stopped or restarting?)"})

    def _connection_changed(self) -> bool:
        """Monitor events; True once (re)connected. A lost connection is handed to the job as a
        `daemon_gone` event (it reroutes its output: see background_jobs/stdio_guard.py)."""
        connected = False
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return connected
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self.connected = False
                self._events.put(({"t": "daemon_gone"}, None))
            elif event["event"] == zmq.EVENT_CONNECTED:
                self.connected = connected = True

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        self._wake_pending = False

    def _flush(self) -> None:
        """Hand the socket what waits, until it is empty or the socket is full."""
        while True:
            frames = self._held.peek()
            if frames is None:
                self._blocked = False
                return
            try:
                self._socket.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                self._blocked = True  # kept; POLLOUT tells us when the daemon reads again
                return
            self._held.sent()

    def _receive_all(self) -> None:
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                header, payload = decode(frames)
            except ProtocolError:
                continue
            kind = header.get("t")
            if kind == "reply":
                waiter = self._pending.pop(str(header.get("id")), None)
                if waiter:
                    waiter[1].append(header)
                    waiter[0].set()
            elif kind == "ack":
                self._held.confirmed(int(header.get("seq", 0)))
            elif kind == "resend":
                self._held.resend(int(header.get("from", 0)))
            elif kind == "pong":
                previous, self.daemon_id = self.daemon_id, header.get("daemon")
                if previous is not None and previous != self.daemon_id:
                    self._events.put(({"t": "who", "daemon": self.daemon_id}, None))  # restarted
            else:
                self._events.put((header, payload))

    # --- dispatcher thread ---------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            header, payload = item
            self._busy_since = time.monotonic()
            try:
                self._on_event(header, payload)
            except Exception as exc:  # noqa: BLE001 - reported by the job's own handler
                print(f"pioreactor: callback failed: {exc!r}", flush=True)
            finally:
                self._busy_since = None

    def _busy(self) -> dict[str, float]:
        """For the heartbeat: how long the running callback (set_*, a state change, a message
        callback) has not returned; the daemon warns past hung_job_warning s."""
        since = self._busy_since
        return {"busy": round(time.monotonic() - since, 1)} if since is not None else {}
