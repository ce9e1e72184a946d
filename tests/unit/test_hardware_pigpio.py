"""The pigpio backend: the real `pigpio` client library against a fake pigpiod on a free port."""

from __future__ import annotations

import importlib.util
import socket
import struct
import sys
import threading
from pathlib import Path

import pigpio  # noqa: F401 - a dependency (setup.cfg): its absence must fail, not skip
import pytest

from pioreactord.hardware import HardwareError, choose, open_backend
from pioreactord.hardware.pigpio_backend import PigpioBackend
from tests.support.i2c_devices import Ads1115, Dac43608, Rp2040Firmware
from tests.support.waiting import wait_for

SUPPORT = Path(__file__).resolve().parents[1] / "support"
ROLES = {17: "stirring", 13: "media", 12: "waste", 18: "heater"}


def _load_fake_pigpiod():
    spec = importlib.util.spec_from_file_location("fake_pigpiod", SUPPORT / "fake_pigpiod.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fake_pigpiod = _load_fake_pigpiod()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



@pytest.fixture
def pigpiod(monkeypatch: pytest.MonkeyPatch):
    """A fake pigpiod with a HAT 1.0 on I2C bus 1: ADS1115 at 0x48, DAC43608 at 0x49."""
    with fake_pigpiod.FakePigpiod() as fake:
        fake.i2c_devices.update({0x48: Ads1115(volts=(0.3, 1.5, 0.0, 0.0)), 0x49: Dac43608()})
        monkeypatch.setenv("PIGPIO_ADDR", "127.0.0.1")
        monkeypatch.setenv("PIGPIO_PORT", str(fake.port))
        yield fake


@pytest.fixture
def backend(pigpiod):
    b = PigpioBackend(pin_roles=ROLES)
    yield b
    b.close()


@pytest.fixture
def nothing_listening(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> int:
    port = free_port()
    monkeypatch.setenv("PIGPIO_ADDR", "127.0.0.1")
    monkeypatch.setenv("PIGPIO_PORT", str(port))
    monkeypatch.setattr(choose, "MODEL_FILES", (tmp_path / "no-model",))
    monkeypatch.setattr(choose, "CPUINFO", tmp_path / "no-cpuinfo")
    return port


def test_open_drives_every_configured_pin_low(pigpiod, backend) -> None:
    assert sorted(c[1] for c in pigpiod.commands("WRITE")) == sorted(ROLES)
    assert all(c[2] == 0 for c in pigpiod.commands("WRITE"))


def test_dma_pwm_reaches_pigpiod_with_frequency_range_and_duty(pigpiod, backend) -> None:
    backend.pwm_set(17, 200, 25)
    g = pigpiod.gpios[17]
    assert (g.frequency, g.range, g.dutycycle) == (200, 1000, 250)
    backend.pwm_set(17, 200, 60.04)
    assert g.dutycycle == 600
    assert len(pigpiod.commands("PFS", 17)) == 1  # an unchanged frequency is not re-sent
    backend.pwm_set(17, 210, 60)  # pigpiod rounds to the nearest frequency it supports
    assert backend.snapshot()["pwm"]["17"] == {
        "hz": 210.0,
        "duty_cycle": 60.0,
        "role": "stirring",
        "mode": "dma",
        "actual_hz": 200.0,
    }


def test_hardware_pwm_on_a_pwm_channel_pin_but_not_twice_on_one_channel(pigpiod, backend) -> None:
    backend.pwm_set(13, 1000, 33.3)
    assert pigpiod.commands("HP", 13)[-1] == ("HP", 13, 1000, struct.pack("<I", 333000))
    assert (pigpiod.gpios[13].hw_frequency, pigpiod.gpios[13].hw_dutycycle) == (1000, 333000)
    backend.pwm_set(12, 500, 50)
    backend.pwm_set(18, 50, 10)  # 18 shares channel 0 with 12: DMA PWM instead
    assert pigpiod.gpios[12].hw_dutycycle == 500000
    assert pigpiod.commands("HP", 18) == []
    assert (pigpiod.gpios[18].frequency, pigpiod.gpios[18].dutycycle) == (50, 100)
    modes = {pin: s["mode"] for pin, s in backend.snapshot()["pwm"].items()}
    assert modes == {"12": "hardware", "13": "hardware", "18": "dma"}


def test_sub_hertz_frequencies_become_1_hz_never_0_which_means_off(pigpiod, backend) -> None:
    backend.pwm_set(13, 0.4, 50)
    assert pigpiod.commands("HP", 13)[-1][1:3] == (13, 1)
    backend.pwm_set(17, 0.4, 50)
    assert pigpiod.commands("PFS", 17)[-1][1:3] == (17, 1)


def test_pwm_off_drives_low_and_is_idempotent(pigpiod, backend) -> None:
    backend.pwm_set(17, 200, 50)
    backend.pwm_set(13, 1000, 50)
    backend.pwm_off(17)
    backend.pwm_off(13)
    for pin in (17, 13):
        g = pigpiod.gpios[pin]
        assert (g.dutycycle, g.hw_frequency, g.level, g.mode) == (0, 0, 0, fake_pigpiod.OUTPUT)
    assert pigpiod.commands("HP", 13)[-1][1:3] == (13, 0)
    before = len(pigpiod.log)
    backend.pwm_off(17)  # a configured pin: driven low again, no error
    backend.pwm_off(6)  # never set up, not configured: nothing sent
    assert [c[:2] for c in pigpiod.log[before:]] == [("WRITE", 17)]
    assert backend.snapshot()["pwm"] == {}


def test_bad_duty_cycle_raises_before_anything_is_sent(pigpiod, backend) -> None:
    before = len(pigpiod.log)
    with pytest.raises(ValueError, match="-3"):
        backend.pwm_set(17, 200, -3)
    assert len(pigpiod.log) == before


def test_edges_come_back_through_pigpio_notifications(pigpiod, backend) -> None:
    assert backend.count_edges(25) == 0
    g = pigpiod.gpios[25]
    assert (g.mode, g.pud) == (fake_pigpiod.INPUT, 2)  # PUD_UP
    assert pigpiod.commands("NB")[-1][2] == 1 << 25
    pigpiod.pulse(25, 40)
    wait_for(lambda: backend.count_edges(25) == 40, 2, "40 edges counted", poll=0.001)
    assert backend.snapshot()["edge_counters"] == {"25": 40}


def test_read_adc_and_led_set_go_through_pigpiods_i2c(pigpiod, backend) -> None:
    ads, dac = pigpiod.i2c_devices[0x48], pigpiod.i2c_devices[0x49]
    assert backend.read_adc(0) == pytest.approx(1.5, abs=1e-4)  # photodiode 1: AIN1 on HAT 1.0
    assert backend.read_adc(1) == pytest.approx(0.3, abs=1e-4)
    assert [c[:2] for c in pigpiod.commands("I2CO")] == [("I2CO", 1), ("I2CO", 1)]
    assert sorted(pigpiod.i2c_handles.values()) == [0x48, 0x49]  # one handle per chip, kept
    assert [(ain, pga) for ain, pga, _ in ads.conversions] == [(1, 1), (1, 2), (0, 1), (0, 4)]
    backend.led_set("D", 12.5)
    assert dac.level("D") == pytest.approx(32 / 255)
    assert pigpiod.commands("I2CWD")[-1][3] == bytes([0x01, 0x00, 0xF7])  # only D powered up
    snap = backend.snapshot()
    assert snap["leds"] == {"A": 0.0, "B": 0.0, "C": 0.0, "D": 12.5}
    assert snap["hat"].startswith(f"HAT 1.0 on pigpiod 127.0.0.1:{pigpiod.port} bus 1")


def test_an_rp2040_hat_is_found_and_used_through_pigpiod(pigpiod) -> None:
    chip = Rp2040Firmware(version=(0, 5))
    chip.set_volts(2, 0.42)  # photodiode 1 is the RP2040's ADC2
    pigpiod.i2c_devices.clear()
    pigpiod.i2c_devices[0x2C] = chip
    notes: list[str] = []
    backend = PigpioBackend(pin_roles=ROLES, info=notes.append, warn=pytest.fail)
    assert notes == [f"pigpio: HAT 1.1+ on pigpiod 127.0.0.1:{pigpiod.port} bus 1: RP2040 "
                     "firmware 0.5 at 0x2C (ADC and LEDs)"]
    assert backend.read_adc(0) == pytest.approx(0.42, abs=1e-4)
    backend.led_set("B", 100)
    assert chip.duty == [0, 255, 0, 0]
    backend.close()
    assert chip.duty == [0, 0, 0, 0]  # close switches the LEDs off
    assert pigpiod.i2c_handles == {}  # and gives pigpiod its handles back


def test_no_hat_on_the_bus_warns_and_adc_says_so(pigpiod) -> None:
    pigpiod.i2c_devices.clear()
    warnings: list[str] = []
    backend = PigpioBackend(pin_roles=ROLES, warn=warnings.append)
    assert len(warnings) == 1 and "no Pioreactor HAT answers on pigpiod" in warnings[0]
    with pytest.raises(HardwareError, match="pigpio: ADC read of channel 1: no Pioreactor HAT "
                                            "answers.*0x2C and 0x30"):
        backend.read_adc(1)
    with pytest.raises(HardwareError, match="LED D: no Pioreactor HAT"):
        backend.led_set("D", 0)
    backend.pwm_set(17, 200, 20)  # PWM works without the HAT
    backend.close()


def test_i2c_disabled_on_the_pi_is_a_clear_error(pigpiod) -> None:
    pigpiod.i2c_enabled = False
    warnings: list[str] = []
    backend = PigpioBackend(pin_roles=ROLES, warn=warnings.append)
    with pytest.raises(HardwareError) as caught:
        backend.read_adc(0)
    message = str(caught.value)
    assert message.startswith("pigpio: ADC read of channel 0: pigpiod at 127.0.0.1:")
    assert "i2c_open(1, 72) failed" in message and "raspi-config" in message
    assert "is I2C enabled on the Pi that runs pigpiod?" in message
    assert warnings[0].endswith(message.split(": ", 2)[2])
    backend.close()


def test_close_stops_pwm_and_the_notification_stream(pigpiod) -> None:
    backend = PigpioBackend(pin_roles=ROLES)
    backend.pwm_set(17, 200, 50)
    backend.count_edges(25)
    backend.close()
    backend.close()
    assert pigpiod.gpios[17].dutycycle == 0
    wait_for(lambda: pigpiod.notify == {}, 2, "notify handle closed", poll=0.001)
    backend.pwm_off(17)  # closed: never raises


def test_a_vanished_pigpiod_is_a_hardware_error_and_does_not_spin_a_cpu(pigpiod, backend) -> None:
    notification_thread = backend._pi._notify
    pigpiod.stop()
    # pigpio's own thread would loop on recv() == b"" forever; the backend ends it
    wait_for(lambda: not notification_thread.is_alive(), 2, "notification thread ended", poll=0.001)
    with pytest.raises(
        HardwareError, match="lost the connection to pigpiod at 127.0.0.1:.*restart"
    ):
        backend.pwm_set(16, 200, 10)
    backend.close()


def test_a_refused_command_is_a_hardware_error_naming_it(pigpiod, backend) -> None:
    backend.pwm_set(17, 200, 10)
    pigpiod.gpios[17].range = 10  # now pigpiod refuses duty 250 with PI_BAD_DUTYCYCLE
    with pytest.raises(HardwareError, match=r"set_PWM_dutycycle\(17, 250\) failed"):
        backend.pwm_set(17, 200, 25)
    backend.pwm_set(17, 100, 0.5)  # the connection is still fine


def test_auto_picks_pigpio_when_pigpiod_answers(pigpiod) -> None:
    notes: list[str] = []
    backend = open_backend("auto", pin_roles=ROLES, seed=None, warn=pytest.fail, info=notes.append)
    assert backend.name == "pigpio"
    assert len(notes) == 1 and "ADS1115 ADC at 0x48, DAC43608 LED driver at 0x49" in notes[0]
    assert backend.snapshot()["pigpiod"] == f"127.0.0.1:{pigpiod.port}"
    backend.close()


def test_auto_falls_back_to_the_simulated_culture_with_a_warning(nothing_listening) -> None:
    warnings: list[str] = []
    backend = open_backend("auto", pin_roles=ROLES, seed=1, warn=warnings.append)
    assert backend.name == "simulated"
    assert len(warnings) == 1
    assert "using the simulated culture because" in warnings[0]
    assert f"no pigpiod at 127.0.0.1:{nothing_listening}" in warnings[0]
    assert "this is not a Raspberry Pi" in warnings[0]


def test_explicit_pigpio_with_nothing_listening_is_a_clear_error(nothing_listening) -> None:
    with pytest.raises(HardwareError) as caught:
        open_backend("pigpio", pin_roles=ROLES, seed=None, warn=pytest.fail)
    message = str(caught.value)
    assert message.startswith(f"pigpiod is not reachable at 127.0.0.1:{nothing_listening}")
    assert "start it with `sudo systemctl start pigpiod`" in message


def test_something_else_on_the_port_is_not_mistaken_for_pigpiod(monkeypatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setenv("PIGPIO_ADDR", "127.0.0.1")
        monkeypatch.setenv("PIGPIO_PORT", str(server.getsockname()[1]))
        server.settimeout(2)

        def answer_like_a_web_server() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(16)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_like_a_web_server)
        thread.start()
        with pytest.raises(HardwareError, match="does not speak pigpio's protocol"):
            PigpioBackend(pin_roles={})
        thread.join()
