"""A job's registration with pioreactord: the channel, what the daemon granted, re-registration.

`DaemonLink` is the only part of a job that speaks the job protocol (pioreactord.protocol). It
registers the job (the daemon refuses a duplicate here, before any job code ran), carries its
sends, answers for the hardware it asked for, and registers again with a daemon that restarted,
handing it everything the job holds. Every other message from the daemon (`message`, `set`,
`state_set`) goes to the job's own handler on the channel's dispatcher thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from pioreactor.exc import HardwareRequestError, JobPresentError, PWMLockError
from pioreactord.protocol import JOB_SOCKET_ENV

from .. import stack_dump
from ..channel import (
    Channel,
    DaemonUnavailable,
    RequestFailed,
    check_daemon_listening,
    take_spare_channel,
)
from .stdio_guard import reroute_orphaned_output

# Answered by the link itself once the job has ended: the daemon switched off and freed
# everything the job held when it saw the job go, so there is nothing left to release.
RELEASE_OPS = frozenset({"pwm_off", "unlock"})
HW_TIMEOUT = 10.0  # seconds a hardware request may wait for its answer


class JobAlreadyRunning(JobPresentError):
    """The daemon refused registration: another instance of this job runs (the message says
    which pid). Raised by the constructor before the job published or touched anything."""


Handler = Callable[[dict[str, Any], bytes | None], None]
Describe = Callable[[bool], dict[str, Any]]


class DaemonLink:
    def __init__(self, job_name: str, describe: Describe, on_event: Handler,
                 report: Callable[[str], None]) -> None:
        self.job_name = job_name
        self.channel: Channel | None = None
        self.daemon_id: str | None = None  # the daemon instance we are registered with
        self.locked_pins: set[int] = set()  # what the daemon granted: a new daemon gets both
        self.driven_pins: dict[int, dict[str, float]] = {}
        self.send_lock = threading.RLock()  # a value changes and is sent in one step (reregister)
        self.ended = threading.Event()
        self.stack_dump = False  # faulthandler answers the daemon's STACK_SIGNAL (stack_dump.py)
        self._describe, self._on_event, self._report = describe, on_event, report
        self._reregistering = threading.Lock()

    # --- registration --------------------------------------------------------------------------
    def connect(self) -> None:
        """Register with the daemon; JobAlreadyRunning or RuntimeError if it refuses."""
        from pioreactor.config import job_socket_path

        path = os.environ.get(JOB_SOCKET_ENV) or job_socket_path()
        channel = take_spare_channel(path)  # forked: the spare's, already connected
        if channel is None or not channel.connected:
            try:
                check_daemon_listening(path)
            except DaemonUnavailable:
                if channel is not None:
                    channel.close()
                raise
        if channel is None:
            channel = Channel(path, f"{self.job_name}:{os.getpid()}:{os.urandom(3).hex()}")
        channel.claim(self.job_name, self._dispatch)
        self.stack_dump = stack_dump.install(path)  # the daemon may ask where we are stuck
        try:
            self.daemon_id = channel.request(self.registration(adopt=False)).get("daemon")
        except RequestFailed as exc:
            channel.close()
            if exc.code == "already_running":
                raise JobAlreadyRunning(str(exc)) from None
            raise RuntimeError(f"pioreactord refused {self.job_name}: {exc}") from None
        channel.start_heartbeat()
        self.channel = channel

    def registration(self, adopt: bool) -> dict[str, Any]:
        return {"t": "register", **self._describe(adopt), "pid": os.getpid(),
                "stack_dump": self.stack_dump,
                "pins": sorted(self.locked_pins),
                "driven": [dict(v) for _, v in sorted(dict(self.driven_pins).items())]}

    def _reregister(self, daemon_id: str | None) -> None:
        """The daemon restarted: tell the new one everything we hold, once per daemon instance
        (its `who` and a pong with its new id both ask). The snapshot is taken and sent under
        `send_lock`, so every value change is either in it or sent after it."""
        with self._reregistering:
            if daemon_id is not None and daemon_id == self.daemon_id or self.channel is None:
                return
            try:
                with self.send_lock:
                    pending = self.channel.begin(self.registration(adopt=True))
                result = self.channel.wait(pending, timeout=10)
            except RequestFailed as exc:
                self._report(f"could not re-register with pioreactord: {exc}")
                return
            self.daemon_id = result.get("daemon")
            reroute_orphaned_output()

    def _dispatch(self, header: dict[str, Any], payload: bytes | None) -> None:
        kind = header.get("t")
        if kind == "who" and self.channel is not None:  # (else: still registering)
            # Not on this thread: a callback here may wait on a request the new daemon answers
            # only once we are registered again.
            threading.Thread(target=self._reregister, args=(header.get("daemon"),),
                             name="reregister", daemon=True).start()
        elif kind == "daemon_gone":
            reroute_orphaned_output()
        elif kind != "who":
            self._on_event(header, payload)

    # --- sending -------------------------------------------------------------------------------
    def send(self, header: dict[str, Any], payload: bytes | None = None) -> None:
        if self.channel is not None and not self.ended.is_set():
            self.channel.send(header, payload)

    def answer(self, header: dict[str, Any], reply: dict[str, Any]) -> None:
        if header.get("id"):
            self.send({"t": "reply", "id": header["id"], **reply})

    def hardware(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """One `hw` request (ops: pioreactord.gpio). PWMLockError names the holder of a taken pin;
        any other refusal (a value out of range, the daemon away) is HardwareRequestError."""
        if self.ended.is_set() or self.channel is None:
            if op in RELEASE_OPS:
                return {}
            raise HardwareRequestError(f"{self.job_name} has ended: no more hardware requests")
        try:
            result = self._request_across_restarts({"t": "hw", "op": op, "args": args})
        except RequestFailed as exc:
            if exc.code == "pin_busy":
                raise PWMLockError(str(exc)) from None
            raise HardwareRequestError(f"pioreactord refused {op} {args}: {exc}") from None
        self._remember(op, args)
        return result

    def _request_across_restarts(self, header: dict[str, Any]) -> dict[str, Any]:
        """Send a request and wait for its answer (up to HW_TIMEOUT s). `daemon` says whom we
        registered with: a new daemon keeps a request sent while it was away until we are back.
        A request the old daemon took with it when it died is never answered: once we have
        registered with a new daemon, it is sent again (hw requests are idempotent)."""
        assert self.channel is not None
        deadline = time.monotonic() + HW_TIMEOUT
        while True:
            sent_to = self.daemon_id
            pending = self.channel.begin({**header, "daemon": sent_to})
            while not pending.done.wait(0.2):
                if time.monotonic() > deadline or self.daemon_id != sent_to:
                    break
            if pending.done.is_set():
                return self.channel.wait(pending, timeout=0)
            try:
                self.channel.wait(pending, timeout=0)  # forget it (and its late answer, if any)
            except RequestFailed:
                pass
            if time.monotonic() > deadline:
                raise RequestFailed(f"pioreactord did not answer 'hw' within {HW_TIMEOUT:g} s "
                                    f"(socket {self.channel.socket_path})", "timeout")

    def _remember(self, op: str, args: dict[str, Any]) -> None:
        """Keep what the daemon granted: the pins we hold and the duty cycles we drive. A new
        daemon (after a restart) gets both at re-registration, locks them again and drives them
        again on its own backend."""
        if "pin" not in args:
            return
        pin = int(args["pin"])
        if op == "lock":
            self.locked_pins.add(pin)
        elif op == "unlock":
            self.locked_pins.discard(pin)
        elif op == "pwm" and float(args["dc"]) > 0:
            self.driven_pins[pin] = {"pin": pin, "hz": float(args.get("hz") or 0),
                                     "dc": float(args["dc"])}
        elif op in ("pwm", "pwm_off"):
            self.driven_pins.pop(pin, None)

    def say_goodbye(self) -> None:
        """`bye` (so the daemon knows the end is clean), then close. After this, release ops
        are answered locally and sends are dropped."""
        if self.channel is None:
            return
        try:
            self.channel.request({"t": "bye"}, timeout=5)
        except RequestFailed:
            pass  # the daemon is away; it will see the process end
        self.close()

    def close(self) -> None:
        self.ended.set()
        if self.channel is not None:
            self.channel.close()
