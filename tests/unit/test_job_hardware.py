"""Job-side hardware helpers without a daemon: PWM_TO_PIN, clamp, PWM's checks, LED call shapes."""

from __future__ import annotations

import pytest

from pioreactor.actions.led_intensity import _desired_state
from pioreactor.background_jobs.link import DaemonLink
from pioreactor.channel import Pending, RequestFailed
from pioreactor.config import config
from pioreactor.hardware_mappings import PWM_TO_PIN
from pioreactor.utils import clamp
from pioreactor.utils.pwm import PWM, HardwareRequestError, PWMLockError


class FakeChannel:
    def __init__(self, refuse: dict | None = None) -> None:
        self.sent: list[dict] = []
        self.refuse = refuse or {}
        self.socket_path = "fake.sock"

    def begin(self, header: dict) -> Pending:
        """Answered at once, as the daemon would: refused for the ops in `refuse`."""
        self.sent.append(header)
        pending = Pending("id", "hw")
        refusal = self.refuse.get(header["op"])
        pending.box.append({"ok": False, "error": refusal[0], "code": refusal[1]} if refusal
                           else {"ok": True, "result": {}})
        pending.done.set()
        return pending

    def wait(self, pending: Pending, timeout: float = 10) -> dict:
        if not pending.done.wait(timeout):
            raise RequestFailed("no answer", "timeout")
        reply = pending.box[0]
        if not reply["ok"]:
            raise RequestFailed(reply["error"], reply["code"])
        return reply["result"]


class FakeJob:
    """A job's hardware requests as BackgroundJob makes them: through its DaemonLink."""

    def __init__(self, channel: FakeChannel) -> None:
        self.link = DaemonLink("fake", describe=lambda adopt: {}, on_event=lambda *_: None,
                               report=lambda text: None)
        self.link.channel = channel  # type: ignore[assignment]

    def hardware_request(self, op: str, args: dict) -> dict:
        return self.link.hardware(op, args)


@pytest.fixture
def pwm_config(tmp_path, monkeypatch):
    ini = tmp_path / "p.ini"
    ini.write_text("[PWM]\n2 = motor_driver\n[PWM_pins]\n5 = 21\n")
    monkeypatch.setenv("PIOREACTORD_CONFIG", str(ini))
    config.reload()
    PWM_TO_PIN.reload()
    yield
    config.reload()
    PWM_TO_PIN.reload()


def test_pwm_to_pin_defaults_str_keys_and_override(pwm_config):
    assert PWM_TO_PIN[1] == 17 and PWM_TO_PIN["2"] == 13 and PWM_TO_PIN[4] == 12
    assert PWM_TO_PIN[5] == 21  # [PWM_pins] 5 = 21
    assert PWM_TO_PIN[config.getint("PWM_reverse", "motor_driver")] == 13
    with pytest.raises(KeyError, match="no PWM channel 9"):
        PWM_TO_PIN[9]


def test_clamp():
    assert clamp(0, 150.0, 100) == 100 and clamp(0, -1, 100) == 0 and clamp(0, 35.5, 100) == 35.5


def test_pwm_requests_and_duty_cycle_checks():
    channel = FakeChannel()
    job = FakeJob(channel)
    with PWM(13, 100, job=job) as pwm:
        pwm.lock()
        pwm.start(10)
        assert job.link.driven_pins == {13: {"pin": 13, "hz": 100.0, "dc": 10.0}}  # for a new daemon
        pwm.change_duty_cycle(0)
        assert job.link.driven_pins == {}
        with pytest.raises(ValueError, match="duty cycle 150 is outside 0..100"):
            pwm.change_duty_cycle(150)
        with pytest.raises(ValueError, match="'fast' is not a number"):
            pwm.change_duty_cycle("fast")
        assert job.link.locked_pins == {13}
    assert [(h["op"], h["args"]) for h in channel.sent] == [
        ("lock", {"pin": 13}), ("pwm", {"pin": 13, "hz": 100.0, "dc": 10.0}),
        ("pwm", {"pin": 13, "hz": 100.0, "dc": 0.0}), ("pwm_off", {"pin": 13}),
        ("unlock", {"pin": 13})]
    assert job.link.locked_pins == set()


def test_pwm_lock_refused_names_the_holder_and_cleanup_touches_nothing():
    text = "GPIO pin 13 is locked by holder (pid 42)"
    channel = FakeChannel(refuse={"lock": (text, "pin_busy")})
    pwm = PWM(13, 100, job=FakeJob(channel))
    with pytest.raises(PWMLockError, match=r"locked by holder \(pid 42\)"):
        pwm.lock()
    pwm.cleanup()  # never locked nor driven: nothing to ask (the holder's pin stays on)
    assert [h["op"] for h in channel.sent] == ["lock"]


def test_after_its_job_ended_a_pwm_releases_nothing_and_drives_nothing():
    channel = FakeChannel()
    job = FakeJob(channel)
    pwm = PWM(13, 100, job=job)
    pwm.lock()
    pwm.start(20)
    job.link.ended.set()  # the daemon switched the pin off and freed it when the job ended
    pwm.cleanup()
    assert [h["op"] for h in channel.sent] == ["lock", "pwm"]
    with pytest.raises(HardwareRequestError, match="fake has ended"):
        pwm.start(10)


def test_pwm_needs_a_job():
    with pytest.raises(RuntimeError, match="needs a running BackgroundJob"):
        PWM(13, 100)


@pytest.mark.parametrize("channels, intensities, expected", [
    ("A", 10, {"A": 10.0}),
    ({"A": 10, "b": 0}, None, {"A": 10.0, "B": 0.0}),
    (["C", "D"], [1, 2], {"C": 1.0, "D": 2.0}),
    (["C", "D"], 3, {"C": 3.0, "D": 3.0}),
])
def test_led_call_shapes(channels, intensities, expected):
    assert _desired_state(channels, intensities) == expected


@pytest.mark.parametrize("channels, intensities, error", [
    ("E", 1, "'E' is not one of A, B, C, D"), ("A", 101, "101 for channel A is outside"),
    (["A", "B"], [1], "2 channels but 1 intensities"), ("A", "x", "'x' for channel A is not a number"),
])
def test_led_bad_calls(channels, intensities, error):
    with pytest.raises(ValueError, match=error.replace("(", r"\(")):
        _desired_state(channels, intensities)


def test_daemon_and_jobs_share_the_pwm_pins_rule():
    from pioreactord.hardware.pins import pin_roles_from_pwm_section, pwm_to_pin_from_section

    pins = pwm_to_pin_from_section({"5": "21"})
    assert pins == {1: 17, 2: 13, 3: 16, 4: 12, 5: 21}
    assert pin_roles_from_pwm_section({"5": "heater"}, pins) == {21: "heater"}
    with pytest.raises(ValueError, match=r"\[PWM_pins\] 5 = x"):
        pwm_to_pin_from_section({"5": "x"})


def test_a_pipe_nobody_reads_is_rerouted_to_the_log(monkeypatch):
    import os
    import sys

    from pioreactor.background_jobs.stdio_guard import (
        GuardedStream,
        LogStream,
        pipe_broken,
        reroute_orphaned_output,
    )

    read_end, write_end = os.pipe()
    assert not pipe_broken(write_end)
    os.close(read_end)  # the daemon that read it died
    assert pipe_broken(write_end)
    os.close(write_end)

    lines: list[tuple[str, str]] = []
    stream = LogStream(lambda level, text: lines.append((level, text)), "ERROR")
    stream.write("Traceback (most recent call last):\n  File")
    stream.write(" 'x.py'\n\nValueError: no")
    stream.flush()
    assert lines == [("ERROR", "Traceback (most recent call last):"), ("ERROR", "  File 'x.py'"),
                     ("ERROR", "ValueError: no")]
    read_end, write_end = os.pipe()
    guarded = GuardedStream(open(write_end, "w"), write_end, lambda *line: lines.append(line), "INFO")
    guarded.write("to the pipe\n")
    assert os.read(read_end, 100) == b"to the pipe\n"
    os.close(read_end)
    monkeypatch.setattr(sys, "stdout", guarded)
    assert reroute_orphaned_output() == []  # only fds 1 and 2 are checked: fd 1 here is pytest's
    guarded.write("to the log\n")  # meets the broken pipe: switches, and the line is not lost
    assert guarded.broken and lines[-1] == ("INFO", "to the log")


def test_a_hw_request_the_dying_daemon_took_is_sent_again_to_the_new_one():
    import threading

    class DyingDaemon(FakeChannel):
        def begin(self, header: dict) -> Pending:
            if not self.sent:  # the first goes to a daemon that dies without answering
                self.sent.append(header)
                return Pending("lost", "hw")
            return super().begin(header)

    channel = DyingDaemon()
    job = FakeJob(channel)
    job.link.daemon_id = "old"
    threading.Timer(0.3, lambda: setattr(job.link, "daemon_id", "new")).start()  # re-registered
    assert job.hardware_request("pwm", {"pin": 13, "hz": 100, "dc": 5}) == {}
    assert [h["daemon"] for h in channel.sent] == ["old", "new"]
    assert job.link.driven_pins == {13: {"pin": 13, "hz": 100.0, "dc": 5.0}}
