"""`pioreactor.utils.pwm.PWM`: a PWM output driven by pioreactord, never by the job itself.

Every call is an `hw` request over the channel of the BackgroundJob running in this process (the
seeds create their PWM inside the job's `__init__`, after `super().__init__`). The daemon holds the
lock registry and the hardware, publishes `pwms/dc`, and switches the pin off when the job ends by
any path, so `cleanup()` is good manners rather than the only line of defence.

    pwm = PWM(pin, hz)       # no request yet
    pwm.lock()               # PWMLockError naming the holder job and pid if another job holds it
    pwm.start(dc)            # 0..100, else ValueError naming the value
    pwm.change_duty_cycle(dc)
    pwm.stop()               # pin to 0, lock kept
    pwm.cleanup()            # pin to 0 and lock released (what `with PWM(...)` does on exit)
"""

from __future__ import annotations

from typing import Any


class PWMLockError(RuntimeError):
    """The daemon refused the lock: the message names the job and pid that hold the pin."""


class HardwareRequestError(RuntimeError):
    """The daemon refused or failed a hardware request (its message says why)."""


def current_job(job: Any = None) -> Any:
    """The job whose channel carries hardware requests: `job`, else the newest live job here."""
    if job is not None:
        return job
    from pioreactor.background_jobs.base import _live_jobs

    if not _live_jobs:
        raise RuntimeError("PWM needs a running BackgroundJob in this process: create it inside "
                           "your job (after super().__init__), so pioreactord knows who holds the "
                           "pin and can switch it off when the job ends")
    return _live_jobs[-1]


def hw_request(job: Any, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """One `hw` request over `job`'s channel; PWMLockError / HardwareRequestError if refused."""
    from pioreactor.channel import RequestFailed

    try:
        # `daemon`: whom we registered with; a new daemon keeps the request until we are back.
        result = job._channel.request({"t": "hw", "op": op, "args": args,
                                       "daemon": job.__dict__.get("_daemon_id")}, timeout=10)
    except RequestFailed as exc:
        if exc.code == "pin_busy":
            raise PWMLockError(str(exc)) from None
        raise HardwareRequestError(f"pioreactord refused {op} {args}: {exc}") from None
    remember_pins(job, op, args)
    return result


def remember_pins(job: Any, op: str, args: dict[str, Any]) -> None:
    """Keep what the daemon granted: the pins `job` holds and the duty cycles it drives. A new
    daemon (after a restart) gets both at re-registration, locks them again and drives them again
    on its own backend."""
    if "pin" not in args:
        return
    pin = int(args["pin"])
    locked = job.__dict__.setdefault("_locked_pins", set())
    driven = job.__dict__.setdefault("_driven_pins", {})
    if op == "lock":
        locked.add(pin)
    elif op == "unlock":
        locked.discard(pin)
    elif op == "pwm" and float(args["dc"]) > 0:
        driven[pin] = {"pin": pin, "hz": float(args.get("hz") or 0), "dc": float(args["dc"])}
    elif op in ("pwm", "pwm_off"):
        driven.pop(pin, None)


def check_duty_cycle(dc: Any) -> float:
    try:
        value = float(dc)
    except (TypeError, ValueError):
        raise ValueError(f"duty cycle {dc!r} is not a number (use 0..100)") from None
    if not 0 <= value <= 100:
        raise ValueError(f"duty cycle {value:g} is outside 0..100")
    return value


class PWM:
    def __init__(self, pin: int, hz: float, unit: str | None = None, experiment: str | None = None,
                 job: Any = None, **_: Any) -> None:
        self.pin, self.hz = int(pin), float(hz)
        self.duty_cycle = 0.0
        self._job = current_job(job)
        self._locked = False
        self._driven = False

    def _request(self, op: str, **args: Any) -> dict[str, Any]:
        return hw_request(self._job, op, {"pin": self.pin, **args})

    def lock(self) -> None:
        self._request("lock")
        self._locked = True

    def is_locked(self) -> bool:
        return self._locked

    def start(self, duty_cycle: float) -> None:
        self.change_duty_cycle(duty_cycle)

    def change_duty_cycle(self, duty_cycle: float) -> None:
        dc = check_duty_cycle(duty_cycle)
        self._request("pwm", hz=self.hz, dc=dc)
        self.duty_cycle, self._driven = dc, True

    def _job_ended(self) -> bool:
        """After its job ended the daemon has switched the pin off and freed the lock already."""
        return self._job._disconnected.is_set()

    def stop(self) -> None:
        if (self._driven or self._locked) and not self._job_ended():
            self._request("pwm_off")
        self.duty_cycle, self._driven = 0.0, False

    def cleanup(self) -> None:
        self.stop()
        if self._locked and not self._job_ended():
            self._request("unlock")
        self._locked = False

    def __enter__(self) -> PWM:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"PWM(pin={self.pin}, hz={self.hz:g}, duty_cycle={self.duty_cycle:g}, locked={self._locked})"
