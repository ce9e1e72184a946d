"""The built-in jobs on the simulated culture, through the real daemon, broker and pioctl."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.waiting import wait_for

JOBS_INI = """
[stirring]
target_rpm = 500
initial_duty_cycle = 30
rpm_interval = 1
[od_reading]
interval = 5
channels = 1
[growth_rate_calculating]
samples_for_od_statistics = 5
obs_std = 0.01
rate_variance = 0.05
initial_rate_std = 1000
"""
# Lines before the first section header land in the test config's [simulation]: 360 culture hours
# per clock hour, so the culture grows at 0.49 x 360 ~ 176 per (clock) hour while OD is low.
FAST_CULTURE = "time_scale = 360\n"
EXPECTED_RATE = 0.5 * (1 - 0.05 / 2.5) * 360


@pytest.fixture
def daemon(make_daemon):
    return make_daemon(extra_ini=JOBS_INI).start()


def topic(d, job: str, leaf: str) -> str:
    return f"pioreactor/{d.unit}/exp1/{job}/{leaf}"


def payload(message) -> dict:
    assert message is not None and message.payload, f"empty payload (a cleared setting?): {message}"
    return json.loads(message.payload)


def rpm_within(target: float, tolerance: float = 0.1):
    return lambda m: abs(payload(m)["measured_rpm"] - target) <= tolerance * target


# --- stirring ----------------------------------------------------------------------------------
def test_stirring_converges_within_10_s_and_publishes_its_values(daemon, watcher):
    started = time.monotonic()
    daemon.pioctl("start", "stirring", "--target-rpm", "600")
    watcher.wait(topic(daemon, "stirring", "target_rpm"), "600.0")
    hit = watcher.wait(topic(daemon, "stirring", "measured_rpm"), predicate=rpm_within(600),
                       timeout=10, since=started)
    print(f"stirring within 10% of 600 rpm after {hit.at - started:.1f} s")
    first = payload(hit)
    assert set(first) == {"measured_rpm", "timestamp"} and first["timestamp"].endswith("Z")
    dc = float(watcher.last(topic(daemon, "stirring", "duty_cycle")).text)
    assert 25 < dc < 45  # 600 rpm on the simulated motor is ~35 %
    pwms = payload(watcher.wait(f"pioreactor/{daemon.unit}/exp1/pwms/dc",
                                predicate=lambda m: "17" in payload(m)))
    assert pwms["17"] > 0
    assert [row["pin"] for row in daemon.pioctl_json("locks")] == [17]


def test_stirring_target_rpm_is_settable_and_reached(daemon, watcher):
    daemon.pioctl("start", "stirring")
    watcher.wait(topic(daemon, "stirring", "measured_rpm"), predicate=rpm_within(500), timeout=10)
    changed = time.monotonic()
    daemon.pioctl("set", "stirring", "target_rpm", "1000")
    hit = watcher.wait(topic(daemon, "stirring", "measured_rpm"), predicate=rpm_within(1000),
                       timeout=10, since=changed)
    print(f"stirring 500 -> 1000 rpm within 10% after {hit.at - changed:.1f} s")
    assert float(watcher.last(topic(daemon, "stirring", "duty_cycle")).text) > 45


def test_stirring_pause_stops_the_motor_and_resume_restores_it(daemon, watcher):
    pwms = f"pioreactor/{daemon.unit}/exp1/pwms/dc"
    daemon.pioctl("start", "stirring")
    watcher.wait(topic(daemon, "stirring", "measured_rpm"), predicate=rpm_within(500), timeout=10)
    paused = time.monotonic()
    daemon.pioctl("pause", "stirring")
    watcher.wait(pwms, since=paused, predicate=lambda m: "17" not in payload(m))
    watcher.wait(topic(daemon, "stirring", "$state"), "sleeping")
    assert [row["pin"] for row in daemon.pioctl_json("locks")] == [17]  # still ours while asleep
    resumed = time.monotonic()
    daemon.pioctl("resume", "stirring")
    watcher.wait(pwms, since=resumed, predicate=lambda m: payload(m).get("17", 0) > 0)
    watcher.wait(topic(daemon, "stirring", "measured_rpm"), predicate=rpm_within(500),
                 timeout=10, since=resumed)


def test_stirring_sigkilled_switches_its_pin_off_and_unlocks_it(daemon, watcher):
    pwms = f"pioreactor/{daemon.unit}/exp1/pwms/dc"
    daemon.pioctl("start", "stirring")
    watcher.wait(pwms, predicate=lambda m: payload(m).get("17", 0) > 0)
    killed = time.monotonic()
    os.kill(daemon.status()["stirring"]["pid"], signal.SIGKILL)
    watcher.wait(topic(daemon, "stirring", "$state"), "lost")
    watcher.wait(pwms, since=killed, predicate=lambda m: payload(m) == {})
    wait_for(lambda: daemon.pioctl_json("locks") == [], 5, "pin 17 unlocked")


def test_stirring_clean_stop_switches_off_and_unlocks(daemon, watcher):
    pwms = f"pioreactor/{daemon.unit}/exp1/pwms/dc"
    daemon.pioctl("start", "stirring")
    watcher.wait(pwms, predicate=lambda m: payload(m).get("17", 0) > 0)
    stopping = time.monotonic()
    assert "stirring disconnected" in daemon.pioctl("stop", "stirring").stdout
    watcher.wait(pwms, since=stopping, predicate=lambda m: payload(m) == {})
    assert daemon.pioctl_json("locks") == []


# --- od_reading --------------------------------------------------------------------------------
def spacings(messages) -> list[float]:
    return [b.at - a.at for a, b in zip(messages, messages[1:], strict=False)]


def test_od_reading_publishes_ods_and_od1_with_the_ir_led_on(daemon, watcher):
    leds = f"pioreactor/{daemon.unit}/exp1/leds/intensity"
    daemon.pioctl("start", "od_reading", "--interval", "0.2")
    watcher.wait(leds, predicate=lambda m: payload(m)["A"] == 100.0)
    ods = payload(watcher.wait(topic(daemon, "od_reading", "ods")))
    assert set(ods) == {"ods", "timestamp"} and set(ods["ods"]) == {"1"}
    one = ods["ods"]["1"]
    assert one["angle"] == "90" and one["channel"] == "1" and one["timestamp"].endswith("Z")
    assert 0.03 < one["od"] < 0.08  # the simulated culture starts at OD 0.05, 1 V per OD
    od1 = payload(watcher.wait(topic(daemon, "od_reading", "od1")))
    assert set(od1) == {"od", "angle", "channel", "timestamp"}
    assert watcher.last(topic(daemon, "od_reading", "interval")).text == "0.2"
    stopping = time.monotonic()
    daemon.pioctl("stop", "od_reading")
    watcher.wait(leds, since=stopping, predicate=lambda m: payload(m)["A"] == 0.0)


def test_od_reading_sigkilled_leaves_no_ir_led_on_but_an_action_s_leds_stay(daemon, watcher):
    """A crash skips the job's own clean-up, so the daemon switches off the LEDs it left on;
    LED B, set by a short action, is nobody's to switch off."""
    leds = f"pioreactor/{daemon.unit}/exp1/leds/intensity"
    daemon.pioctl("start", "led_intensity", "--B", "30")
    daemon.pioctl("start", "od_reading", "--interval", "0.2")
    watcher.wait(leds, predicate=lambda m: payload(m)["A"] == 100.0)
    killed = time.monotonic()
    os.kill(daemon.status()["od_reading"]["pid"], signal.SIGKILL)
    watcher.wait(topic(daemon, "od_reading", "$state"), "lost")
    assert payload(watcher.wait(leds, since=killed, predicate=lambda m: payload(m)["A"] == 0.0)) == \
        {"A": 0.0, "B": 30.0, "C": 0.0, "D": 0.0}


def test_od_reading_interval_is_kept_and_settable(daemon, watcher):
    ods = topic(daemon, "od_reading", "ods")
    started = time.monotonic()
    daemon.pioctl("start", "od_reading", "--interval", "0.2")
    wait_for(lambda: len(watcher.find(ods, since=started)) >= 11, 10, "11 readings")
    fast = spacings(watcher.find(ods, since=started)[1:11])
    mean_fast = sum(fast) / len(fast)
    daemon.pioctl("set", "od_reading", "interval", "0.5")
    # Count from when the job published the new interval, not from the request: under load the
    # request can take longer than a reading, and readings before it are still 0.2 s apart.
    changed = watcher.wait(topic(daemon, "od_reading", "interval"), "0.5").at
    wait_for(lambda: len(watcher.find(ods, since=changed)) >= 6, 10, "6 slower readings")
    slow = spacings(watcher.find(ods, since=changed)[1:6])
    mean_slow = sum(slow) / len(slow)
    print(f"od_reading spacing: 0.2 s -> mean {mean_fast:.3f} s (min {min(fast):.3f}, "
          f"max {max(fast):.3f}); 0.5 s -> mean {mean_slow:.3f} s")
    assert abs(mean_fast - 0.2) < 0.02 and abs(mean_slow - 0.5) < 0.05
    refused = daemon.pioctl("set", "od_reading", "interval", "0", check=False)
    assert refused.returncode == 1
    assert daemon.status()["od_reading"]["settings"]["interval"] == "0.5"


def test_od_reading_pauses_cleanly(daemon, watcher):
    ods, state = topic(daemon, "od_reading", "ods"), topic(daemon, "od_reading", "$state")
    leds = f"pioreactor/{daemon.unit}/exp1/leds/intensity"
    daemon.pioctl("start", "od_reading", "--interval", "0.1")
    watcher.wait(ods)
    pausing = time.monotonic()
    daemon.pioctl("pause", "od_reading")
    asleep = watcher.wait(state, "sleeping").at
    watcher.wait(leds, since=pausing, predicate=lambda m: payload(m)["A"] == 0.0)
    time.sleep(1.0)  # an observation window (10 intervals) in which nothing may arrive
    resuming = time.monotonic()
    assert watcher.find(ods, since=asleep + 0.05) == []
    daemon.pioctl("resume", "od_reading")
    watcher.wait(ods, since=resuming)
    watcher.wait(leds, since=resuming, predicate=lambda m: payload(m)["A"] == 100.0)


# --- growth_rate_calculating -------------------------------------------------------------------
@pytest.fixture
def growing(make_daemon):
    return make_daemon(extra_ini=FAST_CULTURE + JOBS_INI).start()


def test_growth_rate_follows_the_simulated_culture(growing, watcher):
    d = growing
    daemon_rate = topic(d, "growth_rate_calculating", "growth_rate")
    d.pioctl("start", "growth_rate_calculating")
    started = time.monotonic()
    d.pioctl("start", "od_reading", "--interval", "0.2")
    first = payload(watcher.wait(topic(d, "growth_rate_calculating", "od_filtered"), timeout=10))
    assert set(first) == {"od_filtered", "timestamp"}
    assert 0.9 < first["od_filtered"] < 1.1  # normalised to the first 5 readings
    wait_for(lambda: len(watcher.find(daemon_rate, since=started)) >= 30, 15, "30 growth rates")
    assert d.status()["growth_rate_calculating"]["state"] == "ready", d.log_text()[-3000:]
    rate = payload(watcher.last(daemon_rate))
    assert set(rate) == {"growth_rate", "timestamp"}
    print(f"growth_rate after 30 readings: {rate['growth_rate']:.1f}/h (culture: {EXPECTED_RATE:.1f}/h)")
    assert abs(rate["growth_rate"] - EXPECTED_RATE) < 0.2 * EXPECTED_RATE
    od = payload(watcher.last(topic(d, "growth_rate_calculating", "od_filtered")))["od_filtered"]
    assert od > 1.1  # the culture grew by ~e^(0.049 x 7 s)


def test_growth_rate_calculating_ignores_readings_while_asleep(growing, watcher):
    d = growing
    rate, state = topic(d, "growth_rate_calculating", "growth_rate"), topic(d, "growth_rate_calculating", "$state")
    d.pioctl("start", "growth_rate_calculating")
    d.pioctl("start", "od_reading", "--interval", "0.1")
    watcher.wait(rate, timeout=10)
    d.pioctl("pause", "growth_rate_calculating")
    asleep = watcher.wait(state, "sleeping").at
    ods_since = len(watcher.find(topic(d, "od_reading", "ods"), since=asleep))
    wait_for(lambda: len(watcher.find(topic(d, "od_reading", "ods"), since=asleep)) >= ods_since + 5,
             5, "5 readings while growth_rate_calculating sleeps")
    assert watcher.find(rate, since=asleep + 0.05) == []
    resuming = time.monotonic()
    d.pioctl("resume", "growth_rate_calculating")
    watcher.wait(rate, since=resuming)


# --- led_intensity -----------------------------------------------------------------------------
def test_led_intensity_is_a_short_action(daemon, watcher):
    leds = f"pioreactor/{daemon.unit}/exp1/leds/intensity"
    result = daemon.pioctl("start", "led_intensity", "--A", "10", "--B", "0")
    assert "led_intensity finished" in result.stdout
    assert payload(watcher.wait(leds, predicate=lambda m: payload(m)["A"] == 10.0)) == \
        {"A": 10.0, "B": 0.0, "C": 0.0, "D": 0.0}
    assert "led_intensity" not in daemon.status()
    # An action, not a job: it never registers, so it leaves no pio_job_metadata row.
    assert daemon.query("SELECT * FROM pio_job_metadata WHERE job_name='led_intensity'") == []
    again = daemon.pioctl("start", "led_intensity", "--A", "20")  # not held by the first one
    assert "finished" in again.stdout
    watcher.wait(leds, predicate=lambda m: payload(m)["A"] == 20.0)


def test_led_intensity_actions_may_overlap(daemon, watcher):
    """Not subject to uniqueness: four scripts setting one channel each, all at once, all succeed."""
    leds = f"pioreactor/{daemon.unit}/exp1/leds/intensity"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: daemon.pioctl("start", "led_intensity", f"--{c}",
                                                        str(ord(c) - 64), check=False), "ABCD"))
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stdout + r.stderr for r in results]
    watcher.wait(leds, predicate=lambda m: payload(m) == {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0})


def test_led_intensity_refuses_bad_values(daemon):
    out_of_range = daemon.pioctl("start", "led_intensity", "--A", "150", check=False)
    assert out_of_range.returncode != 0 and "150" in out_of_range.stdout + out_of_range.stderr
    nothing = daemon.pioctl("start", "led_intensity", check=False)
    assert nothing.returncode != 0 and "--A" in nothing.stdout + nothing.stderr
