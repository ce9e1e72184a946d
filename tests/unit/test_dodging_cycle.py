"""The OD-dodging cycle against a stream of readings, without a daemon: `before` runs between
readings (pre_delay ahead of the next), `after` post_delay after each one, a reading at another
time restarts the cycle from it, and delays that do not fit raise DodgingTimingError."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from pioreactor.background_jobs.dodging import BackgroundJobWithDodging, OdReadings
from pioreactor.exc import DodgingTimingError
from tests.support.waiting import wait_for

INTERVAL, PRE, POST = 0.4, 0.12, 0.08


class Recorder(BackgroundJobWithDodging):
    job_name = "recorder"

    def action_to_do_before_od_reading(self) -> None:
        self.events.append(("before", time.monotonic()))

    def action_to_do_after_od_reading(self) -> None:
        self.events.append(("after", time.monotonic()))


class WaitSeen(threading.Condition):
    """A condition that tells when someone first waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def make_job() -> Recorder:
    job = object.__new__(Recorder)  # the cycle's parts only: no daemon, no registration
    job.events, job.state, job.currently_dodging_od = [], "ready", True
    job._lock, job._od = threading.RLock(), OdReadings()
    job.logger = logging.getLogger("test_dodging")
    job._od.set_interval(INTERVAL)
    return job


def run_cycle(job: Recorder, readings: list[float]) -> threading.Event:
    stop = threading.Event()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            job._run_cycle(stop, PRE, POST)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    start = time.monotonic()
    for offset in readings:
        while time.monotonic() < start + offset:
            time.sleep(0.005)
        job._od.saw_reading()
    job.errors = errors  # type: ignore[attr-defined]
    return stop


def test_before_falls_between_readings_and_after_follows_each():
    job = make_job()
    seen: list[float] = []
    original = job._od.saw_reading

    def saw() -> None:
        seen.append(time.monotonic())
        original()

    job._od.saw_reading = saw  # type: ignore[method-assign]
    stop = run_cycle(job, [0.05 + k * INTERVAL for k in range(5)])
    wait_for(lambda: sum(kind == "after" for kind, _ in job.events) == 5, 5, "the fifth after")
    stop.set()
    afters = [t for kind, t in job.events if kind == "after"]
    befores = [t for kind, t in job.events if kind == "before"]
    assert len(afters) == 5 and len(befores) >= 4, job.events
    for reading, after in zip(seen, afters, strict=True):
        assert after >= reading + POST
    for k, before in enumerate(befores[:4]):
        assert seen[k] + POST < before < seen[k + 1]  # off before the next reading, after the on


def test_a_reading_at_another_time_restarts_the_cycle_from_it():
    job = make_job()
    stop = run_cycle(job, [0.05, 0.05 + INTERVAL / 4])  # the second comes early (interval changed)
    wait_for(lambda: len(job.events) >= 2, 5, "two actions")
    stop.set()
    assert [kind for kind, _ in job.events[:2]] == ["after", "after"]  # no `before` in between


def test_a_retained_reading_that_arrives_after_the_cycle_started_still_sets_its_phase():
    # od_reading runs already: its retained reading (taken 0.1 s ago) comes a moment after the
    # cycle began waiting; the first reading to come is dodged, not left to run with the pin on.
    job = make_job()
    job._od.changed = WaitSeen()
    stop = run_cycle(job, [])
    assert job._od.changed.waiting.wait(5)  # the cycle waits, the interval known, no reading yet
    taken = time.monotonic() - 0.1
    job._od.saw_reading(taken)
    wait_for(lambda: any(kind == "before" for kind, _ in job.events), 5, "the first `before`")
    stop.set()
    before = next(at for kind, at in job.events if kind == "before")
    assert before < taken + INTERVAL, job.events  # off before the next reading


def test_nothing_runs_unless_ready():
    job = make_job()
    job.state = "sleeping"
    stop = run_cycle(job, [0.05, 0.05 + INTERVAL])
    assert not stop.wait(POST + 0.05)  # a window in which `after` would have run
    stop.set()
    assert job.events == []


def test_delays_that_do_not_fit_the_interval_raise():
    job = make_job()
    job._od.set_interval(PRE + POST)  # no room at all
    run_cycle(job, [0.05])
    wait_for(lambda: job.errors, 5, "the timing error")  # type: ignore[attr-defined]
    assert job.errors and isinstance(job.errors[0], DodgingTimingError)  # type: ignore[attr-defined]
    assert "do not fit in the od_reading interval" in str(job.errors[0])  # type: ignore[attr-defined]


@pytest.mark.parametrize("payload, expected", [(b"5", 5.0), (b"", None), (b"0", None)])
def test_interval_messages(payload, expected):
    from pioreactor.types import MQTTMessage

    job = make_job()
    job._od_interval_changed(MQTTMessage("t", payload))
    assert job._od.interval == expected
