"""The few `hw` requests the built-in jobs make to pioreactord (private to this package).

Jobs never touch GPIO: each call below is one request over the job's channel to the daemon's
hardware backend (pioreactord.gpio lists the ops), sent by `BackgroundJob.hardware_request`, the
one place refusals are translated: a pin locked by another job raises PWMLockError naming the
holder; anything else (a duty cycle out of range, the daemon away) HardwareRequestError.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import BackgroundJob


class Hardware:
    """The hardware a job drives, as seen through its channel to the daemon."""

    def __init__(self, job: BackgroundJob) -> None:
        self._job = job

    def _request(self, op: str, **args: Any) -> dict[str, Any]:
        return self._job.hardware_request(op, args)

    def lock(self, pin: int) -> dict[str, Any]:
        """Take the daemon's lock on `pin`; PWMLockError names the holder if it is taken."""
        return self._request("lock", pin=pin)

    def unlock(self, pin: int) -> bool:
        return bool(self._request("unlock", pin=pin).get("released"))

    def pwm(self, pin: int, hz: float, dc: float) -> None:
        self._request("pwm", pin=pin, hz=hz, dc=dc)

    def pwm_off(self, pin: int) -> None:
        self._request("pwm_off", pin=pin)

    def led(self, intensities: dict[str, float]) -> dict[str, float]:
        """Set LED channels (A..D, 0..100); returns every channel's intensity after the change."""
        return {k: float(v) for k, v in self._request("led", intensities=intensities).items()}

    def adc(self, channel: int) -> float:
        return float(self._request("adc", channel=channel)["volts"])

    def edges(self, pin: int) -> int:
        """Rising edges counted on `pin` since it was first asked for (monotonic)."""
        return int(self._request("edges", pin=pin)["count"])


def utc_iso() -> str:
    """Now, as Pioreactor's payloads stamp it: ISO 8601 UTC with microseconds and a Z."""
    from datetime import datetime

    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
