"""OD dodging: a job that steps aside while `od_reading` takes each reading (an air bubbler
stops bubbling, a relay opens), as Pioreactor's BackgroundJobWithDodging(Contrib) does.

A subclass fills in `action_to_do_before_od_reading()` and `action_to_do_after_od_reading()`,
and optionally `initialize_dodging_operation()` / `initialize_continuous_operation()`. Config:

    [<job_name>.config]          ; required (a ValueError names it when missing)
    pre_delay_duration = 1.5     ; s before each reading: `before` runs
    post_delay_duration = 0.5    ; s after each reading: `after` runs

Dodging is on (`currently_dodging_od = True`) while `enable_dodging_od` is True and od_reading
runs (init, ready or sleeping) under this job's unit and experiment; otherwise the job runs
continuously. On entering a mode its initialize_* runs once. The cycle is timed against the
running od_reading itself: its `interval` setting and the arrival of each of its readings
(`ods`). After a reading, at +post_delay: `after`; at next reading - pre_delay: `before`. A reading
that comes at another time (a changed interval) starts the cycle from it. If no reading comes
within half an interval of when one was due (od_reading sleeping), the schedule goes on as if one
had. Actions run only while the job is `ready`. Delays that do not fit in the interval (with the
time `after` took) are an ERROR and the job stops, as in Pioreactor.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

from ..config import config
from ..exc import DodgingTimingError
from ..types import MQTTMessage
from ..utils.timing import to_datetime
from .base import BackgroundJob

DODGING_SETTINGS = {
    "enable_dodging_od": {"datatype": "boolean", "settable": True},
    "currently_dodging_od": {"datatype": "boolean", "settable": False},
}
OD_PRESENT_STATES = frozenset({"init", "ready", "sleeping"})


class OdReadings:
    """What this job knows of od_reading: its interval and when its latest reading arrived."""

    def __init__(self) -> None:
        self.interval: float | None = None
        self.latest: float | None = None  # time.monotonic() of the latest reading's arrival
        self.changed = threading.Condition()

    def saw_reading(self, when: float | None = None) -> None:
        with self.changed:
            self.latest = time.monotonic() if when is None else when
            self.changed.notify_all()

    def set_interval(self, value: float | None) -> None:
        with self.changed:
            self.interval = value if value and value > 0 else None
            self.changed.notify_all()


class BackgroundJobWithDodging(BackgroundJob):
    published_settings = dict(DODGING_SETTINGS)
    currently_dodging_od = False
    enable_dodging_od = False
    sneak_in_timer = None  # Pioreactor's attribute name; plugins test it with hasattr

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.published_settings = {**DODGING_SETTINGS, **cls.published_settings}

    def __init__(self, unit: str | None = None, experiment: str | None = None, *,
                 source: str | None = None, enable_dodging_od: bool = False, **kwargs: Any) -> None:
        self._od = OdReadings()  # (before registering: a failed start still finds them)
        self._od_state: str | None = None
        self._mode_known = False
        self._cycle_stop = threading.Event()
        super().__init__(unit=unit, experiment=experiment, source=source, **kwargs)
        section = f"{self.job_name}.config"
        if not config.has_section(section):
            message = f"Required section '{section}' does not exist in the configuration."
            self.logger.error(message)
            raise ValueError(message)
        self.enable_dodging_od = bool(enable_dodging_od)

    # --- the subclass's part ------------------------------------------------------------------
    def action_to_do_before_od_reading(self) -> None: ...

    def action_to_do_after_od_reading(self) -> None: ...

    def initialize_dodging_operation(self) -> None: ...

    def initialize_continuous_operation(self) -> None: ...

    # --- which mode ---------------------------------------------------------------------------
    def _before_ready(self) -> None:
        super()._before_ready()
        od_topic = f"pioreactor/{self.unit}/{self.experiment}/od_reading"
        self.subscribe_and_callback(self._od_state_changed, f"{od_topic}/$state", allow_retained=False)
        self.subscribe_and_callback(self._od_interval_changed, f"{od_topic}/interval")
        self.subscribe_and_callback(self._od_reading_seen, f"{od_topic}/ods")
        try:  # (subscribed first: a change from now on is seen either way)
            self._od_state, interval = _running_od_reading()
        except ConnectionError as exc:
            self.logger.warning(f"cannot tell whether od_reading runs ({exc}); assuming not")
        else:
            self._od.set_interval(interval)
        self.set_enable_dodging_od(self.enable_dodging_od)

    def set_enable_dodging_od(self, value: bool) -> None:
        self.enable_dodging_od = bool(value)
        self._choose_mode()

    def _od_state_changed(self, message: MQTTMessage) -> None:
        self._od_state = message.payload.decode() or None
        self._choose_mode()

    def _od_reading_seen(self, message: MQTTMessage) -> None:
        """A live reading is timed by its arrival; the retained one (the latest before we
        subscribed) by its own timestamp, so the first reading after start is dodged too."""
        if not message.retain:
            return self._od.saw_reading()
        try:
            taken = to_datetime(json.loads(message.payload)["timestamp"].replace("+00:00", "Z"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # cleared (od_reading ended) or not Pioreactor's shape
        age = time.time() - taken.timestamp()
        if 0 <= age < 3600:
            self._od.saw_reading(time.monotonic() - age)
        return None

    def _od_interval_changed(self, message: MQTTMessage) -> None:
        try:
            self._od.set_interval(float(message.payload))
        except ValueError:
            self._od.set_interval(None)  # cleared: od_reading ended

    def _choose_mode(self) -> None:
        with self._lock:
            if self.state in (self.DISCONNECTED, self.LOST):
                return
            dodging = self.enable_dodging_od and self._od_state in OD_PRESENT_STATES
            if self._mode_known and dodging == self.currently_dodging_od:
                return
            self._mode_known = True
            self.currently_dodging_od = dodging
            self._cycle_stop.set()  # the old mode's cycle ends; a new one starts below
            if dodging:
                self.logger.debug("Dodging enabled.")
                self.initialize_dodging_operation()
                self._start_cycle()
            else:
                self.logger.debug("Dodging disabled; running continuously.")
                self.initialize_continuous_operation()

    # --- the cycle ----------------------------------------------------------------------------
    def _start_cycle(self) -> None:
        section = f"{self.job_name}.config"
        pre = config.getfloat(section, "pre_delay_duration", fallback=1.5)
        post = config.getfloat(section, "post_delay_duration", fallback=0.5)
        for name, value in (("pre_delay_duration", pre), ("post_delay_duration", post)):
            if value < 0.25:
                self.logger.warning(f"For optimal OD readings, keep `{name}` more than 0.25 seconds.")
        stop = self._cycle_stop = threading.Event()
        threading.Thread(target=self._cycle, args=(stop, pre, post), name="od-dodging",
                         daemon=True).start()

    def _cycle(self, stop: threading.Event, pre: float, post: float) -> None:
        try:
            self._run_cycle(stop, pre, post)
        except DodgingTimingError as exc:
            self.logger.error(str(exc))
            self.clean_up()
        except Exception as exc:  # noqa: BLE001 - reported; the job goes on without dodging
            self.logger.error(f"OD dodging stopped: {exc}")

    def _run_cycle(self, stop: threading.Event, pre: float, post: float) -> None:
        od = self._od
        reading = self._next_reading(stop, after=time.monotonic(), due=None)
        while reading is not None:
            interval = od.interval or 0.0
            if self._wait(stop, until=reading + post, reading=reading):
                after_took = 0.0
                if time.monotonic() < reading + interval - pre:  # (else: straight to `before`)
                    after_took = self._act(stop, self.action_to_do_after_od_reading)
                if interval - (pre + post) - after_took <= 0:
                    raise DodgingTimingError(
                        f"pre_delay_duration={pre:g} s + post_delay_duration={post:g} s (+ "
                        f"{after_took:.2f} s the action after a reading took) do not fit in the "
                        f"od_reading interval of {interval:g} s: lower the delays in "
                        f"[{self.job_name}.config] or raise the interval")
                if self._wait(stop, until=reading + interval - pre, reading=reading):
                    self._act(stop, self.action_to_do_before_od_reading)
            if stop.is_set():
                return
            if od.latest != reading:  # a reading came meanwhile: the cycle starts from it
                reading = od.latest
                continue
            reading = self._next_reading(stop, after=reading, due=reading + interval)

    def _projected_reading(self) -> float | None:
        """The latest reading's slot on od_reading's schedule, when a reading (the retained one)
        and the interval are known: the cycle then starts in phase with the readings to come."""
        with self._od.changed:
            latest, interval = self._od.latest, self._od.interval
            if latest is None or interval is None:
                return None
            slots = math.floor((time.monotonic() - latest) / interval)
            projected = latest + slots * interval
            self._od.latest = projected  # the cycle's reference from now on
            return projected

    def _next_reading(self, stop: threading.Event, after: float, due: float | None) -> float | None:
        """The arrival of the first reading after `after`; if none comes within half an interval
        of `due` (or of one interval from now, for the first), `due` itself. None when stopped."""
        od = self._od
        first = due is None  # (due is filled in below; the retained reading may come later)
        with od.changed:
            while not stop.is_set():
                if od.latest is not None and od.latest > after:
                    return od.latest
                if first and (projected := self._projected_reading()) is not None:
                    return projected  # the retained reading came after all: start in phase
                interval = od.interval
                if interval is None:  # not known yet: wait for it (or a reading)
                    od.changed.wait(0.5)
                    continue
                expected = due if due is not None else time.monotonic() + interval
                if due is None:
                    due = expected
                left = expected + interval / 2 - time.monotonic()
                if left <= 0:
                    return expected
                od.changed.wait(min(left, 0.5))
        return None

    def _wait(self, stop: threading.Event, until: float, reading: float) -> bool:
        """Sleep until `until`; False if stopped or a new reading arrived first."""
        with self._od.changed:
            while not stop.is_set() and self._od.latest == reading:
                left = until - time.monotonic()
                if left <= 0:
                    return True
                self._od.changed.wait(min(left, 0.5))
        return False

    def _act(self, stop: threading.Event, action: Any) -> float:
        """Run `action` if the job is ready and still dodging (under the state lock, so never
        after the job left ready); the seconds it took."""
        started = time.monotonic()
        with self._lock:
            if not stop.is_set() and self.state == self.READY and self.currently_dodging_od:
                action()
        return time.monotonic() - started

    def _disconnect(self, clean: bool) -> None:
        self._cycle_stop.set()
        with self._od.changed:
            self._od.changed.notify_all()
        super()._disconnect(clean)


class BackgroundJobWithDodgingContrib(BackgroundJobWithDodging):
    """A plugin's dodging job (Pioreactor's signature: unit, experiment, plugin_name,
    enable_dodging_od=True)."""

    def __init__(self, unit: str | None = None, experiment: str | None = None,
                 plugin_name: str | None = None, enable_dodging_od: bool = True,
                 **kwargs: Any) -> None:
        from .contrib import _require_job_name

        _require_job_name(type(self), kwargs.get("job_name"))
        source = plugin_name or kwargs.pop("source", None)
        super().__init__(unit=unit, experiment=experiment, source=source,
                         enable_dodging_od=enable_dodging_od, **kwargs)


def _running_od_reading() -> tuple[str | None, float | None]:
    """od_reading's state and interval now, from the daemon ((None, None) if it is not running)."""
    from pioreactor.utils import running_jobs

    row = running_jobs().get("od_reading")
    if row is None:
        return None, None
    try:
        interval: float | None = float(row.get("settings", {}).get("interval"))
    except (TypeError, ValueError):
        interval = None
    return str(row.get("state")), interval
