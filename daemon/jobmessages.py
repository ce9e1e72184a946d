"""What a job says on the job channel, one handler per message type (fields: `protocol.py`).

Everything a job says is turned into a call on the supervisor (its life), the GPIO service (its
pins) or the bridge (its MQTT traffic); replies go back through the job channel (jobchannel.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from .gpio import GpioService
from .jobchannel import JOB_REQUEST_TIMEOUT, JobChannel
from .names import check_registration
from .registry import AlreadyRunning, Job, PinBusy, Registry
from .supervisor import Supervisor, refusal

log = structlog.get_logger("pioreactord.jobchannel")

# Hardware ops any process on the job socket may ask without registering as a job: nothing is
# held, so nothing needs releasing (`led_intensity` from a script or a short action).
ANONYMOUS_HW_OPS = frozenset({"led"})
HELD_PER_JOB = 100  # hw requests kept from a job that has not re-registered yet


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
        self._held: dict[bytes, list[tuple[dict, bytes | None]]] = {}  # hw requests before `who`
        self._handlers: dict[str, Callable[[bytes, Job | None, dict, bytes | None], None]] = {
            "register": self._on_register, "whoami": self._on_whoami, "log": self._on_log,
            "logs": self._on_logs,
            "publish": self._on_publish, "ping": self._on_ping, "state": self._on_state,
            "setting": self._on_setting, "subscribe": self._on_subscribe, "hw": self._on_hw,
            "bye": self._on_bye, "reply": self._on_reply,
        }

    def handle(self, identity: bytes, msg: dict[str, Any], payload: bytes | None) -> None:
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
            reply = self.supervisor.register(identity, msg)
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

    def _on_logs(self, identity: bytes, job: Job | None, msg: dict, payload: bytes | None) -> None:
        """A burst of log lines in one message, `records`: each what a `log` message holds
        (one receive and one decode per burst instead of per line; MAX_FRAME bounds it)."""
        for record in msg.get("records") or ():
            if isinstance(record, dict):
                self.supervisor.job_log(job, record)

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
            self.channel.subscribed(job, [pattern])
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
        self.channel.answered(msg)
