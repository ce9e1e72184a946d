"""Pioreactor's plugin API through a real daemon, broker and jobs: the Contrib classes, OD
dodging against a running od_reading, `@run.command`, subscribe_and_callback replacing."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.plugin_api import BUBBLER, BUBBLER_INI, RESUBSCRIBER
from tests.support.waiting import wait_for

OD_INTERVAL = 2.0
PIN = "16"  # PWM channel 3


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon(extra_ini=BUBBLER_INI)
    d.config.write_text(d.config.read_text().replace("3 = alt_media", "3 = bubbler"))
    d.add_plugin("bubbler_plugin", BUBBLER)
    d.add_plugin("resub_plugin", RESUBSCRIBER)
    return d.start()


def pin_on(message) -> bool:
    return PIN in json.loads(message.payload)


def dodging_cycles(watcher, unit: str, since: float, readings: int) -> list[dict[str, float]]:
    """For each OD reading after `since`: how long before it the pin went off, and how long after
    it the pin came on again."""
    ods_topic, pwms_topic = f"pioreactor/{unit}/exp1/od_reading/ods", f"pioreactor/{unit}/exp1/pwms/dc"
    wait_for(lambda: len(watcher.find(ods_topic, since=since)) >= readings + 1, readings * OD_INTERVAL + 10,
             f"{readings + 1} OD readings")
    ods = [m.at for m in watcher.find(ods_topic, since=since)]
    wait_for(lambda: any(m.at > ods[readings - 1] and pin_on(m) for m in watcher.find(pwms_topic)), 10,
             "the pin on after the last reading")
    pwms = watcher.find(pwms_topic, since=since - OD_INTERVAL)
    cycles = []
    for reading in ods[:readings]:
        before = [m for m in pwms if m.at < reading]
        after = [m for m in pwms if m.at > reading]
        assert before and not pin_on(before[-1]), f"pin on during the reading at {reading:.3f}"
        switched_off = next(m.at for m in reversed(before) if not pin_on(m))
        switched_on = next(m.at for m in after if pin_on(m))
        cycles.append({"off_before": reading - switched_off, "on_after": switched_on - reading})
    return cycles


def test_a_dodging_job_switches_its_pin_off_around_each_od_reading(daemon, watcher):
    unit = daemon.unit
    daemon.pioctl("start", "od_reading", "--interval", str(OD_INTERVAL))
    daemon.pioctl("start", "bubbler")
    watcher.wait(f"pioreactor/{unit}/exp1/bubbler/currently_dodging_od", "True")
    watcher.wait(f"pioreactor/{unit}/exp1/bubbler/enable_dodging_od", "True")
    since = time.monotonic()
    cycles = dodging_cycles(watcher, unit, since, readings=3)
    print("dodging cycles (s):", [{k: round(v, 3) for k, v in c.items()} for c in cycles])
    for cycle in cycles:
        assert 0.5 - 0.25 < cycle["off_before"] < 0.5 + 0.4  # pre_delay_duration = 0.5
        assert 0.3 - 0.05 < cycle["on_after"] < 0.3 + 0.4  # post_delay_duration = 0.3
    assert daemon.query("SELECT DISTINCT source FROM logs WHERE task = 'bubbler'") == [("bubbler_plugin",)]


def test_without_od_reading_it_runs_continuously_and_dodges_once_od_starts(daemon, watcher):
    unit = daemon.unit
    pwms = f"pioreactor/{unit}/exp1/pwms/dc"
    daemon.pioctl("start", "bubbler")
    watcher.wait(f"pioreactor/{unit}/exp1/bubbler/currently_dodging_od", "False")
    watcher.wait(pwms, predicate=lambda m: json.loads(m.payload).get(PIN) == 10.0)
    since = time.monotonic()
    daemon.pioctl("start", "od_reading", "--interval", str(OD_INTERVAL))
    # (od_reading's first reading is taken as it starts, before anyone can know it runs)
    dodging = watcher.wait(f"pioreactor/{unit}/exp1/bubbler/currently_dodging_od", "True", since=since)
    dodging_cycles(watcher, unit, dodging.at + OD_INTERVAL / 2, readings=1)
    since = time.monotonic()
    daemon.pioctl("stop", "od_reading")
    watcher.wait(f"pioreactor/{unit}/exp1/bubbler/currently_dodging_od", "False", since=since)
    watcher.wait(pwms, predicate=pin_on, since=since)  # continuous again


def test_pause_switches_the_pin_off_and_resume_on(daemon, watcher):
    unit = daemon.unit
    pwms = f"pioreactor/{unit}/exp1/pwms/dc"
    daemon.pioctl("start", "bubbler")
    watcher.wait(pwms, predicate=pin_on)
    since = time.monotonic()
    daemon.pioctl("pause", "bubbler")
    watcher.wait(pwms, predicate=lambda m: not pin_on(m), since=since)
    since = time.monotonic()
    daemon.pioctl("resume", "bubbler")
    watcher.wait(pwms, predicate=pin_on, since=since)
    daemon.pioctl("set", "bubbler", "duty_cycle", "150")  # the plugin clamps
    watcher.wait(f"pioreactor/{unit}/exp1/bubbler/duty_cycle", "100")


def test_subscribing_a_topic_again_replaces_the_callback(daemon, watcher):
    unit = daemon.unit
    daemon.pioctl("start", "resubscriber")
    watcher.publish(f"pioreactor/{unit}/exp1/resubscriber/ping", "1")
    watcher.wait(f"pioreactor/{unit}/exp1/resubscriber/heard", "second:")
    rows = daemon.query("SELECT level, source FROM logs WHERE task = 'resubscriber' AND message = 'listening'")
    assert rows == [("NOTICE", "resub_plugin")]


def test_is_pio_job_running_asks_the_daemon(daemon):
    import subprocess
    import sys

    daemon.pioctl("start", "resubscriber")
    code = ("from pioreactor.utils import is_pio_job_running, pio_jobs_running; "
            "print(is_pio_job_running('resubscriber'), is_pio_job_running(['od_reading', "
            "'resubscriber']), pio_jobs_running())")
    out = subprocess.run([sys.executable, "-c", code], env=daemon.env, capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.strip() == "True [False, True] ['resubscriber']", out.stderr
