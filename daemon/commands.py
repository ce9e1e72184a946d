"""The control channel: one small function per pioctl command; its docstring is its contract.

Request `{v, id, cmd, args}`; reply `{v, id, ok: true, result}` or `{v, id, ok: false, error, code}`.
A command gets `args` and a `reply` callable and may answer later (start answers when the job is
ready, stop when the process is gone). Exceptions become error replies in exactly one place,
`_dispatch`. Error codes pioctl maps to exit 1: already_running, unknown_job, start_failed,
not_running, refused, not_settable, timeout, bad_request, failed.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
import zmq

from . import __version__
from .bridge import Incoming
from .names import BadName, check_filter
from .protocol import CommandError, ProtocolError, decode, encode, topic_matches
from .registry import AlreadyRunning

if TYPE_CHECKING:
    from .loop import Loop
    from .operations import Operations

log = structlog.get_logger("pioreactord.commands")
Reply = Callable[[dict[str, Any]], None]

STREAM_IDLE = 10.0  # seconds an `mqtt` stream lives without its caller renewing it


@dataclass
class Stream:
    """One `pioctl mqtt`: the patterns it follows and when its caller last renewed it."""

    identity: bytes
    request_id: str | None
    patterns: list[str]
    renewed: float


class Control:
    def __init__(self, socket: zmq.Socket, ops: Operations, loop: Loop) -> None:
        self.socket, self.ops, self.loop = socket, ops, loop
        self._commands: dict[str, Callable[[dict[str, Any], Reply], None]] = {
            name[4:]: getattr(self, name) for name in dir(self) if name.startswith("cmd_")
        }
        self._streams: dict[bytes, Stream] = {}

    def on_readable(self) -> None:
        for _ in range(100):
            try:
                identity, *frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            peer = _peer(identity, frames)
            self._dispatch(identity.bytes, [f.bytes for f in frames], peer)

    def _dispatch(self, identity: bytes, frames: list[bytes], peer: str = "uid=?") -> None:
        request_id = None

        def reply(answer: dict[str, Any]) -> None:  # the caller's identity: reply.identity
            try:
                self.socket.send_multipart([identity, *encode({"t": "reply", "id": request_id, **answer})],
                                           zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # pioctl gave up waiting; nothing to tell

        try:
            header, _ = decode(frames)
            request_id = header.get("id")
            reply.identity, reply.request_id = identity, request_id  # type: ignore[attr-defined]
            command = self._commands.get(str(header.get("cmd")))
            if command is None:
                raise CommandError(f"unknown command {header.get('cmd')!r}", "bad_request")
            _log_if_changing(str(header.get("cmd")), header.get("args"), peer)
            command(dict(header.get("args") or {}), reply)
        except ProtocolError as exc:
            reply({"ok": False, "error": f"bad request: {exc}", "code": "bad_request"})
        except CommandError as exc:
            reply({"ok": False, "error": str(exc), "code": exc.code})
        except AlreadyRunning as exc:
            reply({"ok": False, "error": str(exc), "code": "already_running"})
        except Exception as exc:  # noqa: BLE001 - a bug in a command must not kill the daemon
            log.error("control command failed", error=repr(exc))
            reply({"ok": False, "error": f"internal error: {exc!r}", "code": "failed"})

    def _running(self, name: str):
        job = self.ops.job(name)
        if job is None:
            raise CommandError(f"{name} is not running", "not_running")
        return job

    # --- commands ------------------------------------------------------------------------------
    def cmd_ping(self, args: dict[str, Any], reply: Reply) -> None:
        """{} -> {unit, experiment, pid, daemon, jobs: int, streams: int (pioctl mqtt)}"""
        ops = self.ops
        reply({"ok": True, "result": {"unit": ops.unit, "experiment": ops.experiment(),
                                      "pid": ops.pid, "daemon": ops.daemon_id,
                                      "jobs": len(ops.jobs()),
                                      "streams": len(self._streams)}})

    def cmd_version(self, args: dict[str, Any], reply: Reply) -> None:
        """{} -> {daemon: version, pid, started_at, exec_at} (exec_at: when this process last
        exec'd its code; started_at survives an in-place re-exec)."""
        ops = self.ops
        reply({"ok": True, "result": {"daemon": __version__, "pid": ops.pid,
                                      "started_at": ops.started_at, "exec_at": ops.exec_at}})

    def cmd_start(self, args: dict[str, Any], reply: Reply) -> None:
        """{job, args: [str]} -> once ready: {job_name, pid, state, ...}; a short action that
        exits 0 -> {..., finished: true}. Errors: already_running (names the pid), unknown_job,
        start_failed (the job's own error and traceback tail)."""
        self.ops.start(str(args["job"]), [str(a) for a in args.get("args") or []], on_ready=reply)

    def cmd_stop(self, args: dict[str, Any], reply: Reply) -> None:
        """{jobs: [name], all: bool} -> once every process is gone: {stopped: [{job_name,
        end_state, exit_code}]}. `all` spares long-running jobs (LongRunning* classes): name them
        to stop them. Error: not_running (nothing was stopped)."""
        running = {job.name: job for job in self.ops.jobs()}
        names = ([n for n, job in running.items() if not job.is_long_running] if args.get("all")
                 else [str(n) for n in args.get("jobs") or []])
        missing = [n for n in names if n not in running]
        if missing:
            raise CommandError(f"not running: {', '.join(missing)}", "not_running")
        if not names:
            return reply({"ok": True, "result": {"stopped": []}})
        results: list[dict[str, Any]] = []

        def gone(answer: dict[str, Any]) -> None:
            results.append(answer.get("result") or {})
            if len(results) == len(names):
                reply({"ok": True, "result": {"stopped": results}})

        for name in names:
            self.ops.stop(running[name], on_gone=gone)

    def cmd_pause(self, args: dict[str, Any], reply: Reply) -> None:
        """{job} -> {job_name, state: sleeping}. Errors: not_running, refused."""
        self._set_state(str(args["job"]), "sleeping", reply)

    def cmd_resume(self, args: dict[str, Any], reply: Reply) -> None:
        """{job} -> {job_name, state: ready}. Errors: not_running, refused."""
        self._set_state(str(args["job"]), "ready", reply)

    def _set_state(self, name: str, state: str, reply: Reply) -> None:
        job = self._running(name)

        def answered(answer: dict[str, Any]) -> None:
            if answer.get("ok"):
                answer = {"ok": True, "result": {"job_name": name, "state": state}}
            reply(answer)

        self.ops.set_state(job, state, answered)

    def cmd_set(self, args: dict[str, Any], reply: Reply) -> None:
        """{job, setting, value: str} -> {job_name, setting, value}. The job casts and checks it
        exactly as for MQTT /set. Errors: not_running, not_settable, bad_value."""
        job = self._running(str(args["job"]))
        self.ops.set(job, str(args["setting"]), str(args["value"]), reply)

    def cmd_status(self, args: dict[str, Any], reply: Reply) -> None:
        """{job?, daemon?: bool} -> [{job_name, state, pid, experiment, settings, uptime,
        cpu_percent, rss_mib, source, job_id, started_at, version}]; with `daemon: true`
        {jobs: [those], daemon: {version, pid, started_at, exec_at, broker: {connected, since,
        reason, ...}, sink: {ok, since, error, ...}}}. Error: not_running (when a job is named)."""
        selected = [self._running(str(args["job"]))] if args.get("job") else self.ops.jobs()
        rows = [self._status_row(job) for job in selected]
        reply({"ok": True, "result": {"jobs": rows, "daemon": self.ops.daemon_status()}
               if args.get("daemon") else rows})

    def _status_row(self, job) -> dict[str, Any]:
        import psutil  # ~1 MiB: loaded once a job is shown, not in an idle daemon

        row = self.ops.describe(job)
        try:
            process = psutil.Process(job.pid)
            row["cpu_percent"] = process.cpu_percent(interval=None)
            row["rss_mib"] = round(process.memory_info().rss / 2**20, 1)
        except (psutil.Error, TypeError, ValueError):
            row["cpu_percent"], row["rss_mib"] = None, None
        return row

    def cmd_locks(self, args: dict[str, Any], reply: Reply) -> None:
        """{} -> [{pin, job_name, pid, since}] of the held pins only."""
        reply({"ok": True, "result": [vars(lock) for lock in self.ops.locks()]})

    def cmd_experiment(self, args: dict[str, Any], reply: Reply) -> None:
        """{name?} -> {experiment, previous?}. Changing it affects jobs started from then on."""
        name = args.get("name")
        if name is None:
            return reply({"ok": True, "result": {"experiment": self.ops.experiment()}})
        previous = self.ops.set_experiment(str(name))
        reply({"ok": True, "result": {"experiment": str(name), "previous": previous}})

    def cmd_jobs(self, args: dict[str, Any], reply: Reply) -> None:
        """{} -> [{name, source, origin, help, error?}]: startable jobs, built-in and plugins;
        a plugin that fails to import is listed with its error. Built in a subprocess, so a bad
        plugin can neither crash nor block the daemon."""
        env = self.ops.job_env()
        loop = self.loop

        def work() -> None:
            try:
                out = subprocess.run([sys.executable, "-m", "pioreactor.catalog", "--json"],
                                     env=env, capture_output=True, text=True, timeout=60)
                answer = {"ok": True, "result": json.loads(out.stdout)}
            except (subprocess.SubprocessError, json.JSONDecodeError) as exc:
                answer = {"ok": False, "error": f"cannot list jobs: {exc}", "code": "failed"}
            loop.post(lambda: reply(answer))

        threading.Thread(target=work, name="catalog", daemon=True).start()

    # --- streams -------------------------------------------------------------------------------
    def cmd_mqtt(self, args: dict[str, Any], reply: Reply) -> None:
        """{topics: [pattern], end?: bool} -> {topics}, then, to the same caller until it stops
        renewing: {t: "mqtt", id, topic, retain, qos} + payload frame, for every broker message
        matching a pattern. Re-sending the request renews the stream (send it at least every
        STREAM_IDLE s; a restarted daemon takes it up again); `end: true` ends it. The daemon
        subscribes through the bridge (ref-counted) and unsubscribes when the stream ends, also
        when a send fails because the caller is gone."""
        identity: bytes = reply.identity  # type: ignore[attr-defined]
        if args.get("end"):
            self._end_stream(identity, "ended by pioctl")
            return reply({"ok": True, "result": {"topics": []}})
        patterns = [str(p) for p in args.get("topics") or ["#"]]
        for pattern in patterns:
            try:
                check_filter(pattern)
            except BadName as exc:
                raise CommandError(str(exc), "bad_request") from None
        stream = self._streams.get(identity)
        if stream is not None:
            stream.renewed = time.monotonic()
            return reply({"ok": True, "result": {"topics": stream.patterns}})
        stream = Stream(identity, reply.request_id, patterns, time.monotonic())  # type: ignore[attr-defined]
        self._streams[identity] = stream
        reply({"ok": True, "result": {"topics": patterns}})
        for pattern in patterns:
            self.ops.follow(pattern)
        self.loop.call_later(STREAM_IDLE, lambda: self._expire(stream))

    def forward(self, message: Incoming) -> None:
        """A broker message to every stream following a matching pattern."""
        for stream in list(self._streams.values()):
            if not any(topic_matches(p, message.topic) for p in stream.patterns):
                continue
            header = {"t": "mqtt", "id": stream.request_id, "topic": message.topic,
                      "retain": message.retain, "qos": message.qos}
            try:
                self.socket.send_multipart([stream.identity, *encode(header, message.payload)],
                                           zmq.NOBLOCK)
            except zmq.ZMQError:  # ROUTER_MANDATORY: the caller is gone (or hopelessly behind)
                self._end_stream(stream.identity, "pioctl went away")

    def _expire(self, stream: Stream) -> None:
        if self._streams.get(stream.identity) is not stream:
            return
        idle = time.monotonic() - stream.renewed
        if idle >= STREAM_IDLE:
            return self._end_stream(stream.identity, f"not renewed for {idle:.0f} s")
        self.loop.call_later(STREAM_IDLE - idle, lambda: self._expire(stream))

    def _end_stream(self, identity: bytes, why: str) -> None:
        stream = self._streams.pop(identity, None)
        if stream is not None:
            for pattern in stream.patterns:
                self.ops.unfollow(pattern)
            log.debug("mqtt stream ended", why=why, topics=stream.patterns)


# Commands that change nothing; every other one is logged with the caller's uid.
READ_ONLY = frozenset({"ping", "status", "locks", "jobs", "version", "mqtt"})


def _peer(identity: zmq.Frame, frames: list[zmq.Frame]) -> str:
    """Who sent this message, from the kernel (SO_PEERCRED, never what a message claims).
    libzmq reads it when it accepts an ipc connection and gives it as the Peer-Address property
    (`<host>:<uid>:<gid>:<pid>`); bookworm's libzmq 4.3.4 leaves that off the first message of a
    connection when the socket was polled before it came (pioctl sends just one), so then we ask
    the kernel about the connection the message came in on (ZMQ_SRCFD)."""
    try:
        _, uid, _, pid = str(identity.get("Peer-Address")).rsplit(":", 3)
        return f"uid={int(uid)} pid={int(pid)}"
    except (zmq.ZMQError, ValueError, TypeError):
        pass
    try:
        fd = frames[0].get(zmq.SRCFD)
        with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            pid, uid, _ = struct.unpack("3i", connection.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return f"uid={uid} pid={pid}"
    except (zmq.ZMQError, OSError, IndexError, AttributeError, ValueError):
        return "uid=?"


def _log_if_changing(cmd: str, args: Any, peer: str) -> None:
    args = args if isinstance(args, dict) else {}
    if cmd in READ_ONLY or (cmd == "experiment" and args.get("name") is None):
        return
    shown = " ".join(f"{k}={v!r}" for k, v in sorted(args.items()) if k != "end")[:300]
    log.info(f"control request {cmd} {shown} from {peer}".replace("  ", " "))
