"""BackgroundJob: the job API of the Pioreactor docs, talking to pioreactord instead of a broker.

States and the transitions a job may take (anything else is refused with a warning):

                         ┌────────► lost ◄──────────┐      lost: decided by the daemon when the
                         │            ▲             │      process ends without a clean stop
      init ────────► ready ◄──► sleeping           │
        │              │            │               │
        └──────────────┴────────────┴──► disconnected

`set_state(new)` runs, in this order: `on_<old>_to_<new>()`, `on_<new>()` (for disconnected also
the older name `on_disconnect()`), then publishes `$state`. A hook that raises is logged at ERROR
with its traceback; during init -> ready it fails the start, otherwise the transition completes.

A job becomes `ready` when the outermost `__init__` returns (each subclass `__init__` is wrapped by
`__init_subclass__`, no metaclass). Assigning an attribute named in `published_settings` publishes
it. SIGTERM/SIGINT, a remote `disconnected`, `clean_up()`, leaving a `with` block and interpreter
exit all end in the same clean-up (running.py). The registration with the daemon, re-registration
after a daemon restart and hardware requests are the job's DaemonLink (link.py).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from pioreactord import __version__
from pioreactord.protocol import JOB_TOKEN_ENV, SOURCE_ENV, to_wire, topic_matches, utc_timestamp

from ..logging import NOTICE, job_logger
from ..types import MQTTMessage
from . import running
from .daemon_mqtt import DaemonMqtt, PahoCallback
from .hooks import TransitionHooks
from .link import DaemonLink, JobAlreadyRunning
from .settings import SettingRefused, cast_value, normalise_settings, with_unit
from .stdio_guard import guard_standard_streams

__all__ = ["NOTICE", "BackgroundJob", "JobAlreadyRunning", "Message"]

Message = MQTTMessage  # the name this module used first

TRANSITIONS = {
    "init": {"ready", "disconnected", "lost"},
    "ready": {"sleeping", "disconnected", "lost"},
    "sleeping": {"ready", "disconnected", "lost"},
    "disconnected": set(),
    "lost": set(),
}


class BackgroundJob(TransitionHooks):
    INIT, READY, SLEEPING, DISCONNECTED, LOST = "init", "ready", "sleeping", "disconnected", "lost"

    published_settings: dict[str, dict[str, Any]] = {}
    job_name: str | None = None  # may be set on the class instead of passed to __init__
    _IS_LONG_RUNNING = False  # LongRunning* classes (contrib.py): spared by `pioctl stop --all`

    # Plain attributes: only the names in `published_settings` publish when assigned.
    unit: str
    experiment: str
    state: str
    source: str
    logger: logging.Logger
    _meta: dict[str, dict[str, Any]]
    _subscriptions: dict[str, tuple[Callable[[Message], Any], bool]]  # pattern -> (callback, allow_retained)
    _lock: threading.RLock  # one state transition at a time
    _link: DaemonLink

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _wrap_init(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(self, unit: str | None = None, experiment: str | None = None,
                 job_name: str | None = None, source: str | None = None, **_: Any) -> None:
        from pioreactor.whoami import get_latest_experiment_name, get_unit_name

        self.job_name = job_name or type(self).job_name or _snake_case(type(self).__name__)
        self.unit = unit or get_unit_name()
        self.experiment = experiment or get_latest_experiment_name()
        self.state = self.INIT
        self.source = source or os.environ.get(SOURCE_ENV) or _default_source(type(self))
        self._meta = normalise_settings(type(self).published_settings)
        self._sent_in_init: dict[str, str | None] = {}  # setting -> its value as sent in __init__
        self._subscriptions = {}
        self._lock = threading.RLock()
        self._link = DaemonLink(self.job_name, self._describe, self._on_daemon_event,
                                report=lambda text: self.logger.error(text))
        paho_callbacks: dict[str, PahoCallback] = {}  # shared: paho has one client per job too
        self._pub_client = DaemonMqtt(self, "pub_client", paho_callbacks)
        self._sub_client = DaemonMqtt(self, "sub_client", paho_callbacks)
        self.logger = job_logger(self.job_name, id(self), self.send_log)
        self._link.connect()
        if os.environ.get(JOB_TOKEN_ENV):  # spawned: stdout/stderr are pipes to this daemon
            guard_standard_streams(self.send_log)
        running.add(self)
        self._send_state(self.INIT)
        self.logger.debug("Init.")
        try:
            self.on_init()
        except BaseException:
            self._init_failed()
            raise
        if getattr(self, "_init_depth", 0) == 0:  # constructed directly, not through a subclass
            self._init_finished()

    def _describe(self, adopt: bool) -> dict[str, Any]:
        """Who this job is, for its registration; with `adopt`, also everything it holds."""
        values = {n: self._wire(getattr(self, n, None)) for n in self._meta} if adopt else {}
        from pioreactor.cli.pio import JOBS_TO_SKIP_KILLING

        long_running = self._IS_LONG_RUNNING or self.job_name in JOBS_TO_SKIP_KILLING
        return {"job_name": self.job_name, "token": os.environ.get(JOB_TOKEN_ENV) or None,
                "unit": self.unit, "experiment": self.experiment, "source": self.source,
                "long_running": long_running,
                "settings": self._meta, "adopt": adopt, "values": values,
                "state": self.state if adopt else None,
                "subscriptions": sorted(self._subscriptions),
                "version": __version__}

    # --- hardware ------------------------------------------------------------------------------
    def hardware_request(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Ask the daemon's hardware backend (ops: pioreactord.gpio) on this job's behalf; what it
        grants is released when the job ends by any path. PWMLockError names the holder of a
        taken pin; any other refusal is HardwareRequestError (both in pioreactor.exc)."""
        return self._link.hardware(op, args)

    # --- published settings --------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_meta", ()) and "_link" in self.__dict__:
            with self._link.send_lock:
                object.__setattr__(self, name, value)
                self._send_setting(name, value)
        else:
            object.__setattr__(self, name, value)

    @staticmethod
    def _wire(value: Any) -> str | None:
        return None if value is None else to_wire(value).decode("utf-8", "replace")

    def _send_setting(self, name: str, value: Any) -> None:
        wire = self._wire(value)
        if self.state == self.INIT:
            self._sent_in_init[name] = wire
        self._link.send({"t": "setting", "name": name, "value": wire})

    def _send_state(self, state: str) -> None:
        self._link.send({"t": "state", "state": state})

    def send_log(self, level: str, message: str, task: str | None = None,
                 source: str | None = None) -> None:
        """One log line to the daemon (this job's logger, print() of a spawned job, and
        pioreactor.logging.create_logger's loggers all end here)."""
        if "_link" in self.__dict__:  # (a log line from a failing __init__ may come earlier)
            self._link.send({"t": "log", "level": level, "message": message,
                             "task": task or self.job_name, "source": source or self.source,
                             "experiment": self.experiment, "timestamp": utc_timestamp()})

    # --- states --------------------------------------------------------------------------------
    def set_state(self, new_state: str) -> None:
        new_state = str(new_state)
        with self._lock:
            old = self.state
            if new_state == old:
                return
            if new_state not in TRANSITIONS.get(old, set()):
                self.logger.warning(f"cannot go from {old} to {new_state}; state unchanged")
                return
            if new_state == self.DISCONNECTED:
                return self._disconnect(clean=True)
            failed = self._run_hooks(old, new_state)
            if failed and old == self.INIT:
                raise failed
            with self._link.send_lock:
                self.state = new_state
                self._send_state(new_state)
            self._log_state(new_state)

    def _log_state(self, state: str) -> None:
        """`Ready.`, `Disconnected.` at INFO, `Sleeping.` at DEBUG: lines Pioreactor's tools read."""
        self.logger.log(logging.INFO if state in (self.READY, self.DISCONNECTED) else logging.DEBUG,
                        f"{state.capitalize()}.")

    def _run_hooks(self, old: str, new: str) -> BaseException | None:
        names = [f"on_{old}_to_{new}", f"on_{new}"] + (["on_disconnect"] if new == self.DISCONNECTED else [])
        first_error = None
        for name in names:
            hook = getattr(self, name, None)
            if not callable(hook):
                continue
            try:
                hook()
            except Exception as exc:  # noqa: BLE001 - reported, and the transition goes on
                self.logger.error(f"{name}() failed: {exc}\n{traceback.format_exc().rstrip()}")
                first_error = first_error or exc
        return first_error

    def _init_finished(self) -> None:
        # Class defaults (e.g. `intensity = 0`) are published too. What __init__ sent and has
        # not changed since is not sent again: each repeat is a retained QoS-2 publish and a row
        # update queued ahead of `ready` on the start's path.
        sent, self._sent_in_init = self._sent_in_init, {}
        for name in self._meta:
            value = getattr(self, name, None)
            if value is not None and (name not in sent or sent[name] != self._wire(value)):
                self._send_setting(name, value)
        self._before_ready()
        self.set_state(self.READY)

    def _before_ready(self) -> None:
        """After the outermost __init__, before init -> ready (the OD-dodging classes start here,
        when the subclass's attributes exist)."""

    def _init_failed(self) -> None:
        if "_link" in self.__dict__ and self.state != self.DISCONNECTED:
            self._disconnect(clean=False)

    def _disconnect(self, clean: bool) -> None:
        """The one clean-up path: hooks, $state, bye (so the daemon knows it was clean), close."""
        with self._lock:
            if self._link.ended.is_set():
                return
            self._run_hooks(self.state, self.DISCONNECTED)
            self.state = self.DISCONNECTED
            self._send_state(self.DISCONNECTED)
            self._log_state(self.DISCONNECTED)
            if clean:
                self._link.say_goodbye()
            else:
                self._link.close()
            running.remove(self)

    def clean_up(self) -> None:
        self.set_state(self.DISCONNECTED)

    def block_until_disconnected(self) -> None:
        with running.main_thread_waiting_on(self):
            while not self._link.ended.wait(0.5):
                pass

    def __enter__(self) -> BackgroundJob:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.clean_up()

    # --- pub/sub -------------------------------------------------------------------------------
    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> None:
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        self._link.send({"t": "publish", "topic": topic, "qos": int(qos), "retain": bool(retain)},
                        to_wire(payload))

    def subscribe_and_callback(self, callback: Callable[[Message], Any], subscriptions: str | list[str],
                               allow_retained: bool = True, qos: int = 2) -> None:
        """Call `callback(message)` for each message on the topic(s) (MQTT wildcards allowed). A
        topic subscribed again gets the new callback instead of the old one, as paho's
        message_callback_add does. `allow_retained=False`: messages the broker kept are skipped."""
        patterns = [subscriptions] if isinstance(subscriptions, str) else list(subscriptions)
        for pattern in patterns:
            self._subscriptions[pattern] = (callback, allow_retained)
        self._link.send({"t": "subscribe", "patterns": patterns})

    @property
    def pub_client(self) -> DaemonMqtt:
        """Not a paho client any more: `publish`/`subscribe` through pioreactord, nothing else."""
        return self._pub_client

    @property
    def sub_client(self) -> DaemonMqtt:
        return self._sub_client

    # --- from the daemon (dispatcher thread) ---------------------------------------------------
    def _on_daemon_event(self, header: dict[str, Any], payload: bytes | None) -> None:
        kind = header.get("t")
        if kind == "message":
            self._deliver(Message(str(header["topic"]), payload or b"", bool(header.get("retain")),
                                  int(header.get("qos", 0))))
        elif kind == "set":
            self._link.answer(header, self._apply_set(str(header["setting"]),
                                                      str(header.get("value", ""))))
        elif kind == "state_set":
            self._remote_state(header)

    def _deliver(self, message: Message) -> None:
        for pattern, (callback, allow_retained) in list(self._subscriptions.items()):
            if (message.retain and not allow_retained) or not topic_matches(pattern, message.topic):
                continue
            try:
                callback(message)
            except Exception as exc:  # noqa: BLE001 - a bad message must not end the job
                self.logger.error(f"callback {getattr(callback, '__name__', callback)} failed on "
                                  f"{message.topic}: {exc}\n{traceback.format_exc().rstrip()}")

    def _apply_set(self, setting: str, raw: str) -> dict[str, Any]:
        try:
            value = cast_value(setting, raw, self._meta)
            previous = copy.copy(getattr(self, setting, None))
            setter = getattr(self, f"set_{setting}", None)
            if callable(setter):
                setter(value)
            else:
                setattr(self, setting, value)
            unit = self._meta[setting].get("unit")
            self.logger.info(f"Updated {setting} from {with_unit(previous, unit)} to "
                             f"{with_unit(getattr(self, setting, None), unit)}.")
        except SettingRefused as exc:
            self.logger.log(exc.level, str(exc))
            return {"ok": False, "error": str(exc), "code": exc.code}
        except Exception as exc:  # noqa: BLE001 - the job keeps running, the value is unchanged
            self.logger.error(f"set_{setting}({raw!r}) failed: {exc}")
            return {"ok": False, "error": f"set_{setting} failed: {exc}", "code": "bad_value"}
        return {"ok": True, "result": {"job_name": self.job_name, "setting": setting,
                                       "value": self._wire(getattr(self, setting, None))}}

    def _remote_state(self, header: dict[str, Any]) -> None:
        state = str(header.get("state"))
        if state == self.DISCONNECTED:
            # Read before disconnecting: block_until_disconnected returns the moment we do.
            main_thread_waits_for_us = running.main_thread_waits_on(self)
            self._link.answer(header, {"ok": True, "result": {"state": state}})
            self.set_state(state)
            if not main_thread_waits_for_us:  # the main thread runs its own loop: end it too
                os.kill(os.getpid(), signal.SIGTERM)
            return
        self.set_state(state)
        ok = self.state == state
        self._link.answer(header, {"ok": True, "result": {"state": state}} if ok else
                          {"ok": False, "error": f"{self.job_name} is {self.state}, not {state}",
                           "code": "refused"})


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    """Count nested __init__s, so the outermost one's return makes the job ready."""

    @functools.wraps(original)
    def __init__(self: BackgroundJob, *args: Any, **kwargs: Any) -> None:
        depth = getattr(self, "_init_depth", 0)
        self._init_depth = depth + 1
        try:
            original(self, *args, **kwargs)
        except BaseException:
            self._init_depth = depth
            if depth == 0:
                self._init_failed()
            raise
        self._init_depth = depth
        if depth == 0:
            try:
                self._init_finished()
            except BaseException:
                self._init_failed()
                raise

    return __init__


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _default_source(cls: type) -> str:
    module = cls.__module__
    if module.startswith("pioreactor."):
        return "app"
    if module == "__main__":
        return os.path.splitext(os.path.basename(sys.argv[0] or "main"))[0] or "app"
    return module.rsplit(".", 1)[-1]


_ELSEWHERE = {  # Pioreactor's other job classes, importable from this module as plugins do
    "BackgroundJobContrib": "contrib", "LongRunningBackgroundJob": "contrib",
    "LongRunningBackgroundJobContrib": "contrib", "BackgroundJobWithDodging": "dodging",
    "BackgroundJobWithDodgingContrib": "dodging",
}


def __getattr__(name: str) -> Any:
    """Loaded on first use (PEP 562): they subclass BackgroundJob, so they cannot be imported
    while this module is still being defined."""
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{_ELSEWHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
