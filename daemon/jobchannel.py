"""The daemon's end of the job channel: one ROUTER socket, one handler per message type.

Messages and their fields are documented in `protocol.py`. Everything a job says is turned into a
call on the supervisor (its life), the GPIO service (its pins) or the bridge (its MQTT traffic).
Requests the daemon sends to jobs (`set`, `state_set`) are matched to their replies here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
import zmq

from .bridge import Incoming
from .loop import Loop
from .names import check_registration
from .protocol import ProtocolError, decode, encode, new_id, topic_matches
from .registry import AlreadyRunning, Job, PinBusy, Registry
from .supervisor import Reply, Supervisor, refusal

log = structlog.get_logger("pioreactord.jobchannel")

# Hardware ops any process on the job socket may ask without registering as a job: nothing is
# held, so nothing needs releasing (`led_intensity` from a script or a short action).
ANONYMOUS_HW_OPS = frozenset({"led"})
RETAINED_WINDOW = 5.0  # seconds after subscribing during which a job accepts retained re-sends
JOB_REQUEST_TIMEOUT = 10.0
HELD_PER_JOB = 100  # hw requests kept from a job that has not re-registered yet


class JobChannel:
    def __init__(self, *, socket: zmq.Socket, loop: Loop, registry: Registry,
                 supervisor: Supervisor, gpio: Any, publish: Callable[..., Any],
                 daemon_id: str, unit: str, experiment: Callable[[], str]) -> None:
        self.socket, self.loop, self.registry, self.supervisor = socket, loop, registry, supervisor
        self.gpio = gpio
        self._publish = publish
        self._daemon_id = daemon_id
        self._unit = unit
        self._experiment = experiment
        self._pending: dict[str, Reply] = {}
        self._asked_who: set[bytes] = set()
        self._held: dict[bytes, list[tuple[dict, bytes | None]]] = {}  # hw requests before `who`
        self._fresh: dict[tuple[int, str], float] = {}  # (job_id, pattern) -> retained window end
        self._handlers: dict[str, Callable[[bytes, Job | None, dict, bytes | None], None]] = {
            "register": self._on_register, "whoami": self._on_whoami, "log": self._on_log,
            "publish": self._on_publish, "ping": self._on_ping, "state": self._on_state,
            "setting": self._on_setting, "subscribe": self._on_subscribe, "hw": self._on_hw,
            "bye": self._on_bye, "reply": self._on_reply,
        }

    # --- socket --------------------------------------------------------------------------------
    def on_readable(self) -> None:
        for _ in range(1000):  # bounded, so one chatty job cannot starve the loop
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, rest = frames[0], frames[1:]
            try:
                msg, payload = decode(rest)
            except ProtocolError as exc:
                log.warning("bad message on the job channel", error=str(exc))
                continue
            handler = self._handlers.get(str(msg.get("t")))
            if handler is None:
                log.warning("unknown message type on the job channel", type=msg.get("t"))
                continue
            job = self.registry.by_identity(identity)
            if job is not None:
                job.last_seen = time.monotonic()
            handler(identity, job, msg, payload)

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
        self._pending[request_id] = on_reply

        def expire() -> None:
            waiter = self._pending.pop(request_id, None)
            if waiter:
                waiter({"ok": False, "error": f"{job.name} did not answer within {timeout:g} s",
                        "code": "timeout"})

        if not self.send(job.identity, {**header, "id": request_id}):
            self._pending.pop(request_id, None)
            on_reply({"ok": False, "error": f"{job.name} is not reachable", "code": "gone"})
            return
        self.loop.call_later(timeout, expire)

    # --- MQTT -> jobs --------------------------------------------------------------------------
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

    # --- handlers ------------------------------------------------------------------------------
    def _reply(self, identity: bytes, msg: dict, reply: dict[str, Any]) -> None:
        self.send(identity, {"t": "reply", "id": msg.get("id"), **reply})

    def _on_register(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        try:
            check_registration(msg.get("job_name"), msg.get("experiment"), msg.get("source"),
                               msg.get("settings"))
            reply = self.supervisor.register(identity, msg)
        except AlreadyRunning as exc:
            reply = refusal(exc)
        except (KeyError, TypeError, ValueError) as exc:
            reply = {"ok": False, "error": f"bad registration: {exc}", "code": "bad_request"}
        self._asked_who.discard(identity)
        registered = self.registry.by_identity(identity) if reply.get("ok") else None
        if registered is not None:
            reply["result"]["daemon"] = self._daemon_id
            for pattern in registered.subscriptions:
                self._fresh[(registered.job_id, pattern)] = time.monotonic() + RETAINED_WINDOW
            if msg.get("adopt"):
                self.gpio.adopt(registered, msg.get("pins") or [], msg.get("driven") or [])
        self._reply(identity, msg, reply)
        self._release_held(identity, registered)

    def _on_whoami(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        self._reply(identity, msg, {"ok": True, "result": {
            "unit": self._unit, "experiment": self._experiment(), "daemon": self._daemon_id}})

    def _unknown(self, identity: bytes) -> None:
        """A job we do not know (we restarted): ask it once to register again."""
        if identity not in self._asked_who:
            self._asked_who.add(identity)
            self.send(identity, {"t": "who", "daemon": self._daemon_id})

    def _hold(self, identity: bytes, msg: dict, payload: bytes | None) -> None:
        """A hw request a job sent while we were away arrives before its re-registration:
        keep it until the job has registered (its pins are ours again), answer it then."""
        held = self._held.setdefault(identity, [])
        if not held:
            self.loop.call_later(JOB_REQUEST_TIMEOUT, lambda: self._release_held(identity, None))
        if len(held) >= HELD_PER_JOB:
            return self._reply(identity, msg, {"ok": False, "error": "not registered",
                                               "code": "not_registered"})
        held.append((msg, payload))

    def _release_held(self, identity: bytes, job: Job | None) -> None:
        """Answer held hw requests: served for a registered `job`, refused without one."""
        for msg, payload in self._held.pop(identity, []):
            if job is not None:
                self._on_hw(identity, job, msg, payload)
            else:
                self._reply(identity, msg, {"ok": False, "error": "not registered",
                                            "code": "not_registered"})

    def _on_log(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        self.supervisor.job_log(job, msg)  # logged even before re-registration: never lose a line

    def _on_publish(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        self._publish(str(msg["topic"]), payload or b"", qos=int(msg.get("qos", 0)),
                      retain=bool(msg.get("retain", False)))

    def _on_ping(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None:
            self._unknown(identity)
        self.send(identity, {"t": "pong", "daemon": self._daemon_id})

    def _on_state(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None:
            return self._unknown(identity)
        self.supervisor.state_changed(job, str(msg["state"]))

    def _on_setting(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None:
            return self._unknown(identity)
        value = msg.get("value")
        self.supervisor.setting_changed(job, str(msg["name"]), None if value is None else str(value))

    def _on_subscribe(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None:
            return self._unknown(identity)
        for pattern in msg.get("patterns") or []:
            self._fresh[(job.job_id, pattern)] = time.monotonic() + RETAINED_WINDOW
            self.supervisor.subscribe(job, str(pattern))

    def _on_hw(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None and msg.get("op") not in ANONYMOUS_HW_OPS:
            self._unknown(identity)
            if msg.get("daemon"):  # from a job registered with an earlier daemon: it will be back
                return self._hold(identity, msg, payload)
            return self._reply(identity, msg, {"ok": False, "error": "not registered",
                                               "code": "not_registered"})
        try:
            result = self.gpio.handle(job, str(msg["op"]), dict(msg.get("args") or {}))
            self._reply(identity, msg, {"ok": True, "result": result})
        except PinBusy as exc:
            self._reply(identity, msg, {"ok": False, "error": str(exc), "code": "pin_busy"})
        except (KeyError, TypeError, ValueError) as exc:
            self._reply(identity, msg, {"ok": False, "error": str(exc), "code": "bad_request"})
        except Exception as exc:  # noqa: BLE001 - a hardware fault is the job's error, not ours
            log.error("hardware request failed", job=job.name if job else "-", op=msg.get("op"), error=repr(exc))
            self._reply(identity, msg, {"ok": False, "error": f"hardware error: {exc}",
                                        "code": "hardware"})

    def _on_bye(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is not None:
            self.supervisor.said_bye(job)
        self._reply(identity, msg, {"ok": True})

    def _on_reply(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        waiter = self._pending.pop(str(msg.get("id")), None)
        if waiter:
            waiter({k: v for k, v in msg.items() if k not in ("v", "t", "id")})
