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
exit all end in the same clean-up.
"""

from __future__ import annotations

import atexit
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
from dataclasses import dataclass
from typing import Any

from pioreactord import __version__
from pioreactord.protocol import JOB_SOCKET_ENV, JOB_TOKEN_ENV, SOURCE_ENV, to_wire, utc_timestamp

from ..channel import Channel, RequestFailed, check_daemon_listening
from .settings import SettingRefused, cast_value, normalise_settings
from .stdio_guard import guard_standard_streams, reroute_orphaned_output

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

TRANSITIONS = {
    "init": {"ready", "disconnected", "lost"},
    "ready": {"sleeping", "disconnected", "lost"},
    "sleeping": {"ready", "disconnected", "lost"},
    "disconnected": set(),
    "lost": set(),
}

_live_jobs: list[BackgroundJob] = []  # every job of this process, for signals and atexit


class JobAlreadyRunning(RuntimeError):
    """The daemon refused registration: another instance of this job runs (the message says
    which pid). Raised by the constructor before the job published or touched anything."""


@dataclass(frozen=True)
class Message:
    """What a subscribe_and_callback callback receives (the shape of paho's MQTTMessage)."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0


class _ChannelHandler(logging.Handler):
    def __init__(self, job: BackgroundJob) -> None:
        super().__init__(logging.DEBUG)
        self._job = job
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._job._send_log(record.levelname, self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise into job code
            self.handleError(record)


class BackgroundJob:
    INIT, READY, SLEEPING, DISCONNECTED, LOST = "init", "ready", "sleeping", "disconnected", "lost"

    published_settings: dict[str, dict[str, Any]] = {}
    job_name: str | None = None  # may be set on the class instead of passed to __init__

    # Set in __init__ through __dict__ (so that assigning them publishes nothing).
    unit: str
    experiment: str
    state: str
    source: str
    logger: logging.Logger
    _meta: dict[str, dict[str, Any]]
    _subscriptions: list[tuple[str, Callable[[Message], Any], bool]]
    _lock: threading.RLock
    _send_lock: threading.RLock  # a value changes and is sent in one step (see _reregister)
    _reregistering: threading.Lock
    _locked_pins: set[int]  # what the daemon granted (kept by utils.pwm.hw_request)
    _driven_pins: dict[int, dict[str, float]]
    _daemon_id: str | None  # the daemon instance we are registered with
    _disconnected: threading.Event
    _blocking: bool
    _publishing: bool
    _channel: Channel

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _wrap_init(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(self, unit: str | None = None, experiment: str | None = None,
                 job_name: str | None = None, source: str | None = None, **_: Any) -> None:
        from pioreactor.whoami import get_latest_experiment_name, get_unit_name

        d = self.__dict__
        d["job_name"] = job_name or type(self).job_name or _snake_case(type(self).__name__)
        d["unit"] = unit or get_unit_name()
        d["experiment"] = experiment or get_latest_experiment_name()
        d["state"] = self.INIT
        d["source"] = source or os.environ.get(SOURCE_ENV) or _default_source(type(self))
        d["_meta"] = normalise_settings(type(self).published_settings)
        d["_subscriptions"] = []  # (pattern, callback, allow_retained)
        d["_lock"] = threading.RLock()
        d["_send_lock"] = threading.RLock()
        d["_reregistering"] = threading.Lock()
        d["_locked_pins"], d["_driven_pins"], d["_daemon_id"] = set(), {}, None
        d["_disconnected"] = threading.Event()
        d["_blocking"] = False
        d["_publishing"] = False
        d["logger"] = self._make_logger()
        d["_channel"] = self._connect()
        d["_publishing"] = True
        if os.environ.get(JOB_TOKEN_ENV):  # spawned: stdout/stderr are pipes to this daemon
            guard_standard_streams(self._send_log)
        _live_jobs.append(self)
        self._install_exit_handlers()
        self._send_state(self.INIT)
        if d.get("_init_depth", 0) == 0:  # constructed directly, not through a subclass
            self._init_finished()

    # --- connecting ----------------------------------------------------------------------------
    def _connect(self) -> Channel:
        from pioreactor.config import job_socket_path

        path = os.environ.get(JOB_SOCKET_ENV) or job_socket_path()
        check_daemon_listening(path)
        identity = f"{self.job_name}:{os.getpid()}:{os.urandom(3).hex()}"
        channel = Channel(path, identity, self._on_daemon_event)
        try:
            self.__dict__["_daemon_id"] = channel.request(self._registration(adopt=False)).get("daemon")
        except RequestFailed as exc:
            channel.close()
            if exc.code == "already_running":
                raise JobAlreadyRunning(str(exc)) from None
            raise RuntimeError(f"pioreactord refused {self.job_name}: {exc}") from None
        channel.start_heartbeat()
        return channel

    def _registration(self, adopt: bool) -> dict[str, Any]:
        values = {}
        if adopt:
            values = {n: self._wire(getattr(self, n, None)) for n in self._meta}
        return {"t": "register", "job_name": self.job_name, "pid": os.getpid(),
                "token": os.environ.get(JOB_TOKEN_ENV) or None, "unit": self.unit,
                "experiment": self.experiment, "source": self.source, "settings": self._meta,
                "adopt": adopt, "values": values, "version": __version__, "state": self.state if adopt else None,
                "subscriptions": sorted({p for p, _, _ in self._subscriptions}),
                "pins": sorted(self._locked_pins),
                "driven": [dict(v) for _, v in sorted(dict(self._driven_pins).items())]}

    def _make_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"pioreactor.jobs.{self.job_name}.{id(self)}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.handlers.clear()
        logger.addHandler(_ChannelHandler(self))
        if not os.environ.get(JOB_TOKEN_ENV):  # started by hand: the terminal shows the log too
            console = logging.StreamHandler(sys.stderr)
            console.setLevel(logging.INFO)
            console.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-8s [{self.job_name}] %(message)s"))
            logger.addHandler(console)
        logger.notice = functools.partial(logger.log, NOTICE)  # type: ignore[attr-defined]
        return logger

    # --- published settings --------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_meta", ()) and self.__dict__.get("_publishing"):
            with self._send_lock:
                object.__setattr__(self, name, value)
                self._send_setting(name, value)
        else:
            object.__setattr__(self, name, value)

    @staticmethod
    def _wire(value: Any) -> str | None:
        return None if value is None else to_wire(value).decode("utf-8", "replace")

    def _send_setting(self, name: str, value: Any) -> None:
        self._channel.send({"t": "setting", "name": name, "value": self._wire(value)})

    def _send_state(self, state: str) -> None:
        self._channel.send({"t": "state", "state": state})

    def _send_log(self, level: str, message: str) -> None:
        channel = self.__dict__.get("_channel")
        if channel is not None and not self._disconnected.is_set():
            channel.send({"t": "log", "level": level, "message": message, "task": self.job_name,
                          "source": self.source, "experiment": self.experiment,
                          "timestamp": utc_timestamp()})

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
            with self._send_lock:
                object.__setattr__(self, "state", new_state)
                self._send_state(new_state)

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
        for name in self._meta:  # class defaults (e.g. `intensity = 0`) are published too
            if getattr(self, name, None) is not None:
                self._send_setting(name, getattr(self, name))
        self.set_state(self.READY)

    def _init_failed(self) -> None:
        if self.__dict__.get("_channel") is not None and self.state != self.DISCONNECTED:
            self._disconnect(clean=False)

    def _disconnect(self, clean: bool) -> None:
        """The one clean-up path: hooks, $state, bye (so the daemon knows it was clean), close."""
        with self._lock:
            if self._disconnected.is_set():
                return
            old = self.state
            self._run_hooks(old, self.DISCONNECTED)
            object.__setattr__(self, "state", self.DISCONNECTED)
            self._send_state(self.DISCONNECTED)
            if clean:
                try:
                    self._channel.request({"t": "bye"}, timeout=5)
                except RequestFailed:
                    pass  # the daemon is away; it will see the process end
            self._disconnected.set()
            self._channel.close()
            if self in _live_jobs:
                _live_jobs.remove(self)

    def clean_up(self) -> None:
        self.set_state(self.DISCONNECTED)

    def block_until_disconnected(self) -> None:
        self.__dict__["_blocking"] = True
        try:
            while not self._disconnected.wait(0.5):
                pass
        finally:
            self.__dict__["_blocking"] = False

    def __enter__(self) -> BackgroundJob:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.clean_up()

    # --- pub/sub -------------------------------------------------------------------------------
    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> None:
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        self._channel.send({"t": "publish", "topic": topic, "qos": int(qos), "retain": bool(retain)},
                           to_wire(payload))

    def subscribe_and_callback(self, callback: Callable[[Message], Any], subscriptions: str | list[str],
                               allow_retained: bool = True, qos: int = 2) -> None:
        patterns = [subscriptions] if isinstance(subscriptions, str) else list(subscriptions)
        for pattern in patterns:
            self._subscriptions.append((pattern, callback, allow_retained))
        self._channel.send({"t": "subscribe", "patterns": patterns})

    @property
    def pub_client(self) -> DaemonMqtt:
        """Not a paho client any more: `publish`/`subscribe` through pioreactord, nothing else."""
        return self._daemon_mqtt("pub_client")

    @property
    def sub_client(self) -> DaemonMqtt:
        return self._daemon_mqtt("sub_client")

    def _daemon_mqtt(self, name: str) -> DaemonMqtt:
        if f"_{name}" not in self.__dict__:
            self.__dict__[f"_{name}"] = DaemonMqtt(self, name)
        return self.__dict__[f"_{name}"]

    # --- from the daemon (dispatcher thread) ---------------------------------------------------
    def _on_daemon_event(self, header: dict[str, Any], payload: bytes | None) -> None:
        kind = header.get("t")
        if kind == "message":
            self._deliver(Message(str(header["topic"]), payload or b"", bool(header.get("retain")),
                                  int(header.get("qos", 0))))
        elif kind == "set":
            self._answer(header, self._apply_set(str(header["setting"]), str(header.get("value", ""))))
        elif kind == "state_set":
            self._remote_state(header)
        elif kind == "who" and "_channel" in self.__dict__:  # (else: still registering)
            # Not on this thread: a callback here may wait on a request the new daemon answers
            # only once we are registered again.
            threading.Thread(target=self._reregister, args=(header.get("daemon"),),
                             name="reregister", daemon=True).start()
        elif kind == "daemon_gone":
            reroute_orphaned_output()

    def _answer(self, header: dict[str, Any], reply: dict[str, Any]) -> None:
        if header.get("id"):
            self._channel.send({"t": "reply", "id": header["id"], **reply})

    def _deliver(self, message: Message) -> None:
        from pioreactord.protocol import topic_matches

        for pattern, callback, allow_retained in list(self._subscriptions):
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
            setter = getattr(self, f"set_{setting}", None)
            if callable(setter):
                setter(value)
            else:
                setattr(self, setting, value)
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
            main_thread_waits_for_us = self._blocking
            self._answer(header, {"ok": True, "result": {"state": state}})
            self.set_state(state)
            if not main_thread_waits_for_us:  # the main thread runs its own loop: end it too
                os.kill(os.getpid(), signal.SIGTERM)
            return
        self.set_state(state)
        ok = self.state == state
        self._answer(header, {"ok": True, "result": {"state": state}} if ok else
                     {"ok": False, "error": f"{self.job_name} is {self.state}, not {state}",
                      "code": "refused"})

    def _reregister(self, daemon_id: str | None) -> None:
        """The daemon restarted: tell the new one everything we hold, once per daemon instance
        (its `who` and a pong with its new id both ask). The snapshot is taken and sent under
        `_send_lock`, so every value change is either in it or sent after it."""
        with self._reregistering:
            if daemon_id is not None and daemon_id == self._daemon_id:
                return
            try:
                with self._send_lock:
                    pending = self._channel.begin(self._registration(adopt=True))
                result = self._channel.wait(pending, timeout=10)
            except RequestFailed as exc:
                self.logger.error(f"could not re-register with pioreactord: {exc}")
                return
            self.__dict__["_daemon_id"] = result.get("daemon")
            reroute_orphaned_output()

    # --- process exit --------------------------------------------------------------------------
    def _install_exit_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, _on_exit_signal)
        atexit.register(_clean_up_at_exit)


class DaemonMqtt:
    """What `job.pub_client` / `job.sub_client` are under pioreactord: the two paho calls old
    plugins make, routed through the daemon. Subscribed messages go to `on_message(client,
    userdata, message)` or to callbacks added with `message_callback_add(pattern, callback)`.
    Anything else raises AttributeError saying what to use instead."""

    def __init__(self, job: BackgroundJob, name: str) -> None:
        self.__dict__.update(_job=job, _name=name, on_message=None)
        job.__dict__.setdefault("_paho_callbacks", {})

    def publish(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False) -> None:
        self._job.publish(topic, b"" if payload is None else payload, qos=qos, retain=retain)

    def subscribe(self, topic: str | list, qos: int = 0) -> None:
        topics = [topic] if isinstance(topic, str) else [t[0] if isinstance(t, tuple) else t for t in topic]
        self._job.subscribe_and_callback(self._deliver, topics)

    def message_callback_add(self, pattern: str, callback: Callable[..., Any]) -> None:
        self._job.__dict__["_paho_callbacks"][pattern] = callback

    def _deliver(self, message: Message) -> None:
        from pioreactord.protocol import topic_matches

        for pattern, callback in list(self._job.__dict__["_paho_callbacks"].items()):
            if topic_matches(pattern, message.topic):
                return callback(self, None, message)
        if callable(self.__dict__.get("on_message")):
            self.__dict__["on_message"](self, None, message)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"job.{self._name}.{name}: under pioreactord jobs have no paho client; "
            f"{self._name} supports publish() and subscribe() only (or use self.publish / "
            f"self.subscribe_and_callback)")

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "on_message":
            self.__getattr__(name)
        self.__dict__[name] = value


_exiting = False  # the interpreter is running atexit handlers: a signal must not raise there


def _clean_up_at_exit() -> None:
    global _exiting
    _exiting = True
    _clean_up_all()


def _on_exit_signal(signum: int, frame: Any) -> None:
    if _exiting:
        return
    blocking = any(job._blocking for job in _live_jobs)
    _clean_up_all()
    if not blocking:
        raise SystemExit(0)


def _clean_up_all() -> None:
    for job in list(_live_jobs):
        job.clean_up()


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: BackgroundJob, *args: Any, **kwargs: Any) -> None:
        depth = self.__dict__.get("_init_depth", 0)
        self.__dict__["_init_depth"] = depth + 1
        try:
            original(self, *args, **kwargs)
        except BaseException:
            self.__dict__["_init_depth"] = depth
            if depth == 0:
                self._init_failed()
            raise
        self.__dict__["_init_depth"] = depth
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
