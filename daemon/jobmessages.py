"""What a job says on the job channel, one handler per message type (fields: `protocol.py`).

Everything a job says is turned into a call on the supervisor (its life), the GPIO service (its
pins) or the bridge (its MQTT traffic); replies go back through the job channel (jobchannel.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from .gpio import GpioService
from .jobchannel import JobChannel, Peer, PeerLookup
from .names import check_registration
from .registry import AlreadyRunning, Job, PinBusy, Registry
from .supervisor import Supervisor, refusal

log = structlog.get_logger("pioreactord.jobchannel")

# Hardware ops any process on the job socket may ask without registering as a job: nothing is
# held, so nothing needs releasing (`led_intensity` from a script or a short action).
ANONYMOUS_HW_OPS = frozenset({"led"})
# Messages kept from a connection that has not registered (yet): per connection, and how many
# such connections at once; for at most HOLD_WINDOW s (a job re-registers at once when asked).
HELD_PER_JOB = 10_000
HELD_CONNECTIONS = 64
HOLD_WINDOW = 30.0


class JobMessages:
    def __init__(self, *, channel: JobChannel, registry: Registry, supervisor: Supervisor,
                 gpio: GpioService, publish: Callable[..., Any], daemon_id: str, unit: str,
                 experiment: Callable[[], str]) -> None:
        self.channel, self.registry, self.supervisor, self.gpio = channel, registry, supervisor, gpio
        self.loop = channel.loop
        self._publish = publish
        self._daemon_id = daemon_id
        self._unit = unit
        self._experiment = experiment
        self._asked_who: set[bytes] = set()
        self._held: dict[bytes, Held] = {}  # from connections not registered (yet)
        self._sender: PeerLookup = lambda: None  # who sent the message being handled
        self._handlers: dict[str, Callable[[bytes, Job | None, dict, bytes | None], None]] = {
            "register": self._on_register, "whoami": self._on_whoami, "log": self._on_log,
            "logs": self._on_logs,
            "publish": self._on_publish, "ping": self._on_ping, "state": self._on_state,
            "setting": self._on_setting, "subscribe": self._on_subscribe, "hw": self._on_hw,
            "bye": self._on_bye, "reply": self._on_reply,
        }

    def handle(self, identity: bytes, msg: dict[str, Any], payload: bytes | None,
               peer: PeerLookup) -> None:
        self._sender = peer
        handler = self._handlers.get(str(msg.get("t")))
        if handler is None:
            log.warning("unknown message type on the job channel", type=msg.get("t"))
            return
        job = self.registry.by_identity(identity)
        if job is not None:
            job.last_seen = time.monotonic()
        handler(identity, job, msg, payload)

    def send(self, identity: bytes, header: dict[str, Any]) -> None:
        self.channel.send(identity, header)

    # --- handlers ------------------------------------------------------------------------------
    def _reply(self, identity: bytes, msg: dict, reply: dict[str, Any]) -> None:
        self.send(identity, {"t": "reply", "id": msg.get("id"), **reply})

    def _on_register(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        try:
            check_registration(msg.get("job_name"), msg.get("experiment"), msg.get("source"),
                               msg.get("settings"))
            reply = self.supervisor.register(identity, msg, self._sender())
        except AlreadyRunning as exc:
            reply = refusal(exc)
        except (KeyError, TypeError, ValueError) as exc:
            reply = {"ok": False, "error": f"bad registration: {exc}", "code": "bad_request"}
        self._asked_who.discard(identity)
        registered = self.registry.by_identity(identity) if reply.get("ok") else None
        if registered is not None:
            reply["result"]["daemon"] = self._daemon_id
            self.channel.subscribed(registered, registered.subscriptions)
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
        """A message only a job may send, from a connection that has not registered: a job's
        lines and hw requests sent while we were away arrive before its re-registration. Keep
        them until it has registered (its pins are ours again), serve them then; drop them if
        it never does (a client that is not a job may not speak for one)."""
        held = self._held.get(identity)
        if held is None:
            if len(self._held) >= HELD_CONNECTIONS:
                return self._refuse(identity, msg, Held(self._sender()))
            held = self._held[identity] = Held(self._sender())
            self.loop.call_later(HOLD_WINDOW, lambda: self._release_held(identity, None))
        if len(held.messages) >= HELD_PER_JOB:
            return self._refuse(identity, msg, held)
        held.messages.append((msg, payload))

    def _release_held(self, identity: bytes, job: Job | None) -> None:
        """Held messages: served for a registered `job`, refused (hw) or dropped without one."""
        held = self._held.pop(identity, None)
        if held is None:
            return
        for msg, payload in held.messages:
            if job is not None:
                self._handlers[str(msg.get("t"))](identity, job, msg, payload)
            else:
                self._refuse(identity, msg, held)
        if held.dropped:
            log.warning(f"dropped {held.dropped} message(s) from a client of the job socket that "
                        f"is not a registered job ({_who(held.peer)})")

    def _refuse(self, identity: bytes, msg: dict, held: Held) -> None:
        if msg.get("t") == "hw":
            self._reply(identity, msg, {"ok": False, "error": "not registered",
                                        "code": "not_registered"})
        else:
            held.dropped += 1

    def _on_log(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None:
            self._unknown(identity)
            return self._hold(identity, msg, payload)  # logged once it registers: never lost
        self.supervisor.job_log(job, msg)

    def _on_logs(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        """A burst of log lines in one message, `records`: each what a `log` message holds
        (one receive and one decode per burst instead of per line; MAX_FRAME bounds it)."""
        if job is None:
            self._unknown(identity)
            return self._hold(identity, msg, payload)  # logged once it registers: never lost
        for record in msg.get("records") or ():
            if isinstance(record, dict):
                self.supervisor.job_log(job, record)

    def _on_publish(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None:
            self._unknown(identity)
            return self._hold(identity, msg, payload)
        self._publish(str(msg["topic"]), payload or b"", qos=int(msg.get("qos", 0)),
                      retain=bool(msg.get("retain", False)))

    def _on_ping(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None:
            self._unknown(identity)
        else:
            self.supervisor.heartbeat(job, float(msg.get("busy") or 0))
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
            self.channel.subscribed(job, [pattern])
            self.supervisor.subscribe(job, str(pattern))

    def _on_hw(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        if job is None and msg.get("op") not in ANONYMOUS_HW_OPS:
            self._unknown(identity)
            if msg.get("daemon"):  # from a job registered with an earlier daemon: it will be back
                return self._hold(identity, msg, payload)
            return self._reply(identity, msg, {"ok": False, "error": "not registered",
                                               "code": "not_registered"})
        if job is None:
            log.info(f"{msg.get('op')} request from a process that is not a job ({_who(self._sender())})",
                     args=json.dumps(msg.get("args"), default=str)[:200])
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
        self.channel.answered(identity, msg)


@dataclass
class Held:
    """Messages from one connection that has not registered (yet)."""

    peer: Peer | None
    messages: list[tuple[dict, bytes | None]] = field(default_factory=list)
    dropped: int = 0


def _who(peer: Peer | None) -> str:
    return f"uid {peer.uid}, pid {peer.pid}" if peer else "peer unknown"
