"""`pioreactor.utils.pwm.PWM`: a PWM output driven by pioreactord, never by the job itself.

Every call is an `hw` request over the channel of the BackgroundJob running in this process (the
seeds create their PWM inside the job's `__init__`, after `super().__init__`). The daemon holds the
lock registry and the hardware, publishes `pwms/dc`, and switches the pin off when the job ends by
any path, so `cleanup()` is good manners rather than the only line of defence.

    pwm = PWM(pin, hz)       # no request yet (unit=, experiment=, pub_client=, logger= accepted)
    pwm.lock()               # PWMLockError naming the holder job and pid if another job holds it
    pwm.start(dc)            # 0..100, else DutyCycleError (a ValueError and Pioreactor's PWMError)
    pwm.change_duty_cycle(dc)
    pwm.stop()               # pin to 0, lock kept
    pwm.clean_up()           # pin to 0 and lock released (also `cleanup()`; `with PWM(...)` on exit)

`is_locked()` says whether this PWM holds its pin's lock (the registry is the daemon's:
`pioctl locks`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pioreactor.exc import HardwareRequestError, PWMError, PWMLockError

__all__ = ["PWM", "PWMLockError", "PWMError", "DutyCycleError", "HardwareRequestError"]


class DutyCycleError(PWMError, ValueError):
    """A duty cycle that is not a number in 0..100 (nothing was sent)."""


def current_job(job: Any = None) -> Any:
    """The job whose channel carries hardware requests: `job`, else the newest live job here."""
    from pioreactor.background_jobs import running

    return job if job is not None else running.current_job("PWM")


def check_duty_cycle(dc: Any) -> float:
    try:
        value = float(dc)
    except (TypeError, ValueError):
        raise DutyCycleError(f"duty cycle {dc!r} is not a number (use 0..100)") from None
    if not 0 <= value <= 100:
        raise DutyCycleError(f"duty cycle {value:g} is outside 0..100")
    return value


class PWM:
    def __init__(self, pin: int, hz: float, unit: str | None = None, experiment: str | None = None,
                 job: Any = None, pub_client: Any = None, logger: Any = None, **_: Any) -> None:
        # pub_client/logger: what Pioreactor's PWM publishes and logs with; here the daemon
        # publishes pwms/dc, so they are accepted and not needed.
        self.pin, self.hz = int(pin), float(hz)
        self.duty_cycle = 0.0
        self._job = current_job(job)
        self._locked = False
        self._driven = False

    def _request(self, op: str, **args: Any) -> dict[str, Any]:
        return self._job.hardware_request(op, {"pin": self.pin, **args})

    def lock(self) -> None:
        self._request("lock")
        self._locked = True

    def unlock(self) -> None:
        if self._locked:
            self._request("unlock")
        self._locked = False

    def is_locked(self) -> bool:
        return self._locked

    @contextlib.contextmanager
    def lock_temporarily(self) -> Iterator[None]:
        self.lock()
        try:
            yield
        finally:
            self.unlock()

    def start(self, duty_cycle: float) -> None:
        self.change_duty_cycle(duty_cycle)

    def change_duty_cycle(self, duty_cycle: float) -> None:
        dc = check_duty_cycle(duty_cycle)
        self._request("pwm", hz=self.hz, dc=dc)
        self.duty_cycle, self._driven = dc, True

    def stop(self) -> None:
        if self._driven or self._locked:  # (after the job ended: answered by the job itself)
            self._request("pwm_off")
        self.duty_cycle, self._driven = 0.0, False

    def clean_up(self) -> None:
        self.stop()
        self.unlock()

    cleanup = clean_up  # the seeds' name

    def __enter__(self) -> PWM:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.clean_up()

    def __repr__(self) -> str:
        return f"PWM(pin={self.pin}, hz={self.hz:g}, duty_cycle={self.duty_cycle:g}, locked={self._locked})"
