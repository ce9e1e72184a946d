"""The seeds' example jobs, verbatim, as plugins and by hand; PWM and LEDs through the daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.seeds import (
    INTRO_JOB,
    MOTOR_CONFIG,
    MOTOR_DRIVER_000_PLUGIN,
    MOTOR_DRIVER_001_PLUGIN,
    OLD_CLIENTS,
    PIN_HOLDER,
    RUN_MOTOR_DRIVER_BY_HAND,
)

MOTOR_PIN = "13"  # PWM channel 2 = motor_driver in the test config


def t(d, leaf: str, exp: str = "exp1") -> str:
    return f"pioreactor/{d.unit}/{exp}/{leaf}"


def wait_json(watcher, topic: str, expected, since: float = 0.0, timeout: float = 10.0):
    return watcher.wait(topic, predicate=lambda m: m.payload and json.loads(m.payload) == expected,
                        since=since, timeout=timeout)


@pytest.fixture
def motor_daemon(make_daemon):
    def make(source: str, *plugins: tuple[str, str]):
        d = make_daemon(extra_ini=MOTOR_CONFIG)
        d.add_plugin("motor_driver", source)
        for name, text in plugins:
            d.add_plugin(name, text)
        return d.start()

    return make


@pytest.mark.parametrize("source", [MOTOR_DRIVER_000_PLUGIN, MOTOR_DRIVER_001_PLUGIN],
                         ids=["seed000-on_disconnect", "seed001-on_init_to_ready"])
def test_motor_driver_seed_as_plugin(motor_daemon, watcher, source):
    d = motor_daemon(source)
    started = time.monotonic()
    d.pioctl("start", "motor_driver", "--initial-dc", "10")
    watcher.wait(t(d, "motor_driver/$state"), "ready")
    watcher.wait(t(d, "motor_driver/duty_cycle"), "10.0")
    wait_json(watcher, t(d, "pwms/dc"), {MOTOR_PIN: 10.0})
    assert d.pioctl_json("locks")[0]["job_name"] == "motor_driver"
    assert d.pioctl_json("locks")[0]["pin"] == int(MOTOR_PIN)

    since = time.monotonic()  # the od_filtered callback: dc = od * initial dc, clamped
    watcher.publish(t(d, "growth_rate_calculating/od_filtered"), json.dumps({"od_filtered": 3.5}))
    watcher.wait(t(d, "motor_driver/duty_cycle"), "35.0", since=since)
    wait_json(watcher, t(d, "pwms/dc"), {MOTOR_PIN: 35.0}, since=since)
    watcher.publish(t(d, "growth_rate_calculating/od_filtered"), json.dumps({"od_filtered": 50}))
    watcher.wait(t(d, "motor_driver/duty_cycle"), "100", since=since)

    since = time.monotonic()
    d.pioctl("pause", "motor_driver")
    wait_json(watcher, t(d, "pwms/dc"), {}, since=since)
    d.pioctl("resume", "motor_driver")
    wait_json(watcher, t(d, "pwms/dc"), {MOTOR_PIN: 100.0}, since=since)

    since = time.monotonic()
    d.pioctl("stop", "motor_driver")
    wait_json(watcher, t(d, "pwms/dc"), {}, since=since)
    assert d.pioctl_json("locks") == []
    assert d.query("SELECT count(*) FROM logs WHERE task='motor_driver' AND "
                   "message='disconnecting... will clean up PWM'")[0][0] == 1
    print(f"start -> stop round {time.monotonic() - started:.2f} s")


def test_click_default_comes_from_config(motor_daemon, watcher):
    d = motor_daemon(MOTOR_DRIVER_000_PLUGIN)
    d.pioctl("start", "motor_driver")
    watcher.wait(t(d, "motor_driver/duty_cycle"), "5.0")  # [motor_driver] initial_duty_cycle


def test_lock_conflict_refused_naming_the_holder(motor_daemon, watcher):
    d = motor_daemon(MOTOR_DRIVER_000_PLUGIN, ("holder", PIN_HOLDER))
    d.pioctl("start", "holder")
    wait_json(watcher, t(d, "pwms/dc"), {MOTOR_PIN: 42.0})
    holder_pid = d.status()["holder"]["pid"]
    refused = d.pioctl("start", "motor_driver", "--initial-dc", "10", check=False)
    assert refused.returncode == 1
    assert f"GPIO pin {MOTOR_PIN} is locked by holder (pid {holder_pid})" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert d.status()["holder"]["state"] == "ready"
    assert "motor_driver" not in d.status()
    assert [(r["pin"], r["job_name"]) for r in d.pioctl_json("locks")] == [(int(MOTOR_PIN), "holder")]
    assert json.loads(watcher.last(t(d, "pwms/dc")).payload) == {MOTOR_PIN: 42.0}


def test_sigkill_switches_pins_off_and_frees_locks(motor_daemon, watcher):
    d = motor_daemon(MOTOR_DRIVER_000_PLUGIN)
    d.pioctl("start", "motor_driver", "--initial-dc", "20")
    wait_json(watcher, t(d, "pwms/dc"), {MOTOR_PIN: 20.0})
    since = time.monotonic()
    os.kill(d.status()["motor_driver"]["pid"], signal.SIGKILL)
    watcher.wait(t(d, "motor_driver/$state"), "lost", since=since)
    wait_json(watcher, t(d, "pwms/dc"), {}, since=since)
    assert d.pioctl_json("locks") == []


def test_motor_driver_by_hand_and_sigkill(motor_daemon, watcher):
    d = motor_daemon(MOTOR_DRIVER_000_PLUGIN)
    (d.plugins / "run_motor_driver.py").write_text(RUN_MOTOR_DRIVER_BY_HAND)
    process = d.run_by_hand(d.plugins / "run_motor_driver.py", "--initial-dc", "7")
    try:
        wait_json(watcher, t(d, "pwms/dc"), {MOTOR_PIN: 7.0}, timeout=15)
        assert d.status()["motor_driver"]["pid"] == process.pid
        since = time.monotonic()
        process.kill()
        watcher.wait(t(d, "motor_driver/$state"), "lost", since=since)
        wait_json(watcher, t(d, "pwms/dc"), {}, since=since)
        assert d.pioctl_json("locks") == []
    finally:
        process.kill()
        process.wait(5)


def test_intro_job_by_hand(make_daemon, watcher):
    d = make_daemon().start()
    script = d.root / "intro_job.py"
    script.write_text(INTRO_JOB)
    started = time.monotonic()
    process = d.run_by_hand(script)
    try:
        watcher.wait(t(d, "intro_job/$state"), "ready", timeout=15)
        ready_after = time.monotonic() - started
        watcher.wait(t(d, "intro_job/intensity"), "10")
        wait_json(watcher, t(d, "leds/intensity"), {"A": 10.0, "B": 0.0, "C": 0.0, "D": 0.0})
        row = d.status()["intro_job"]
        assert row["pid"] == process.pid and row["state"] == "ready"

        second = d.run_by_hand(script)  # uniqueness against the running instance
        out, err = second.communicate(timeout=15)
        assert second.returncode != 0 and f"already running (pid {process.pid})" in err

        since = time.monotonic()  # /set from the broker calls set_intensity
        watcher.publish(t(d, "intro_job/intensity/set"), "25")
        wait_json(watcher, t(d, "leds/intensity"), {"A": 25.0, "B": 0.0, "C": 0.0, "D": 0.0},
                  since=since)

        since = time.monotonic()
        d.pioctl("stop", "intro_job")
        process.wait(10)  # stop ends the process
        wait_json(watcher, t(d, "leds/intensity"), {"A": 0.0, "B": 0.0, "C": 0.0, "D": 0.0},
                  since=since)
        assert "intro_job" not in d.status()
        print(f"hand-run start -> ready {ready_after:.2f} s")
    finally:
        process.kill()
        process.wait(5)


def test_intro_job_by_hand_without_daemon(make_daemon):
    d = make_daemon()  # never started
    script = d.root / "intro_job.py"
    script.write_text(INTRO_JOB)
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(script)], env=d.env, capture_output=True,
                            text=True, timeout=20)
    assert time.monotonic() - started < 5
    assert result.returncode != 0
    assert "pioreactord is not running" in result.stderr
    assert f"{d.root}/run/jobs.sock" in result.stderr
    assert "pioreactord --config" in result.stderr


def test_led_intensity_without_a_job(make_daemon, watcher):
    d = make_daemon().start()
    code = ("from pioreactor.actions.led_intensity import led_intensity\n"
            "print(led_intensity({'B': 5}), led_intensity(channels=['C', 'D'], intensities=[1, 2]))")
    result = subprocess.run([sys.executable, "-c", code], env=d.env, capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True True"
    wait_json(watcher, t(d, "leds/intensity"), {"A": 0.0, "B": 5.0, "C": 1.0, "D": 2.0})
    bad = subprocess.run([sys.executable, "-c", code.replace("'B': 5", "'B': 500")], env=d.env,
                         capture_output=True, text=True, timeout=20)
    assert bad.returncode != 0 and "500 for channel B is outside 0..100" in bad.stderr

    from pioreactord.client import call  # only `led` is open to callers that are not jobs

    reply = call(str(d.root / "run" / "jobs.sock"),
                 {"t": "hw", "op": "pwm", "args": {"pin": 13, "hz": 100, "dc": 50}}, timeout=5)
    assert reply["ok"] is False and reply["code"] == "not_registered"


def test_old_paho_clients_go_through_the_daemon(make_daemon, watcher):
    d = make_daemon()
    d.add_plugin("old_clients", OLD_CLIENTS)
    d.start()
    d.pioctl("start", "old_clients")
    error = watcher.wait(t(d, "old_clients/error"))
    assert "no paho client" in error.text and "publish() and subscribe()" in error.text
    watcher.publish(t(d, "old_clients/ping"), "hello")
    watcher.wait(t(d, "old_clients/pong"), "hello")
