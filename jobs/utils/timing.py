"""`pioreactor.utils.timing`: a repeating timer and Pioreactor's UTC timestamps.

    timer = RepeatedTimer(5, read_sensor, run_immediately=True).start()   # start() returns it
    timer.pause(); timer.unpause()        # skipped while paused, the schedule keeps its phase
    timer.interval = 10                   # takes effect from the next call on
    timer.cancel()                        # stops, and joins the thread

Calls fall on a fixed schedule (start + k x interval on the monotonic clock), so they do not
drift by the time the function takes; a call that overruns skips the slots it missed. An exception
in the function is logged at ERROR and the timer goes on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any


def current_utc_datetime() -> datetime:
    """Now, timezone-aware UTC, truncated to milliseconds (the precision of every timestamp)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_iso_format(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def current_utc_timestamp() -> str:
    """Now as `2026-12-02T07:50:00.123Z`."""
    return to_iso_format(current_utc_datetime())


def current_utc_datestamp() -> str:
    return current_utc_datetime().strftime("%Y-%m-%d")


def to_datetime(timestamp: str) -> datetime:
    """The inverse of current_utc_timestamp (with or without the milliseconds)."""
    for layout in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(timestamp, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"{timestamp!r} is not a UTC ISO-8601 timestamp like 2026-01-01T00:00:00.000Z")


@contextlib.contextmanager
def catchtime() -> Iterator[Callable[[], float]]:
    """`with catchtime() as elapsed: ...; elapsed()` -> seconds since the block began."""
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start


class RepeatedTimer:
    """Call `function(*args, **kwargs)` every `interval` seconds on a daemon thread.

    `run_immediately`: the first call at start (else after one interval). `run_after`: wait that
    many seconds after start() before the schedule begins."""

    def __init__(self, interval: float, function: Callable[..., Any], job_name: str | None = None,
                 run_immediately: bool = False, run_after: float | None = None,
                 logger: Any = None, args: tuple[Any, ...] = (),
                 kwargs: dict[str, Any] | None = None) -> None:
        if run_after is not None and run_after < 0:
            raise ValueError(f"run_after must be >= 0 seconds, not {run_after:g}")
        self.interval = float(interval)
        self.function, self.args, self.kwargs = function, args, kwargs or {}
        self.job_name = job_name
        self.run_immediately = run_immediately
        self.run_after = float(run_after or 0)
        self.is_paused = False
        self._logger = logger
        self.event = threading.Event()  # set: cancelled
        self.thread = threading.Thread(target=self._run, name=f"timer-{job_name or 'repeated'}",
                                       daemon=True)

    def start(self) -> RepeatedTimer:
        """Start the thread (again: nothing); returns the timer, for `t = RepeatedTimer(...).start()`."""
        with contextlib.suppress(RuntimeError):
            self.thread.start()
        return self

    def pause(self) -> None:
        """Skip calls until unpause(); the schedule keeps its phase meanwhile."""
        self.is_paused = True

    def unpause(self) -> None:
        self.is_paused = False

    def cancel(self, timeout: float | None = None) -> None:
        """Stop calling and wait (up to `timeout` s) for a call in progress to return."""
        self.pause()
        self.event.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    join = cancel

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        if self.event.wait(self.run_after):
            return
        next_call = time.monotonic()
        if not self.run_immediately:
            next_call += self.interval
        while not self.event.wait(max(0.0, next_call - time.monotonic())):
            if not self.is_paused:
                self._call()
            step = max(self.interval, 0.001)  # read every time: the interval is settable
            next_call += step
            behind = time.monotonic() - next_call
            if behind > 0:  # the call overran: skip the slots it missed, keep the phase
                next_call += (behind // step + 1) * step

    def _call(self) -> None:
        try:
            self.function(*self.args, **self.kwargs)
        except Exception as exc:  # noqa: BLE001 - a failing call must not end the timer
            self._log_error(exc)

    def _log_error(self, exc: Exception) -> None:
        logger = self._logger
        if logger is None:
            from pioreactor.logging import create_logger

            logger = self._logger = create_logger(self.job_name or "RepeatedTimer")
        logger.error(f"{getattr(self.function, '__name__', 'timer function')} failed: {exc}")


@contextlib.contextmanager
def paused_timer(timer: RepeatedTimer) -> Iterator[None]:
    timer.pause()
    try:
        yield
    finally:
        timer.unpause()
