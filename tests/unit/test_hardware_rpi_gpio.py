"""The RPi.GPIO backend against the stand-in RPi.GPIO in tests/support/fake_rpi."""

from __future__ import annotations

import importlib
import socket
import sys
from pathlib import Path

import pytest

from pioreactord.hardware import HardwareError, choose, i2c, open_backend
from pioreactord.hardware.i2c import LinuxI2CBus
from pioreactord.hardware.rpi_gpio import RpiGpioBackend
from tests.support.i2c_devices import Ads1115, Dac43608, MemoryBus

FAKE_RPI = Path(__file__).resolve().parents[1] / "support" / "fake_rpi"
ROLES = {17: "stirring", 13: "media"}


def _forget_rpi() -> None:
    for name in [n for n in sys.modules if n == "RPi" or n.startswith("RPi.")]:
        del sys.modules[name]


@pytest.fixture
def gpio(monkeypatch: pytest.MonkeyPatch):
    _forget_rpi()
    monkeypatch.syspath_prepend(str(FAKE_RPI))
    module = importlib.import_module("RPi.GPIO")
    assert module.VERSION.endswith("-fake")
    module._reset()
    yield module
    _forget_rpi()


@pytest.fixture
def hat():
    """HAT 1.0: ADS1115 at 0x48 (photodiode 1 on AIN1), DAC43608 at 0x49."""
    ads, dac = Ads1115(volts=(0.25, 0.8, 0.0, 0.0)), Dac43608()
    return ads, dac, MemoryBus({0x48: ads, 0x49: dac})


@pytest.fixture
def backend(gpio, hat):
    b = RpiGpioBackend(pin_roles=ROLES, i2c=lambda: hat[2])
    yield b
    b.close()


@pytest.fixture
def no_i2c_device(monkeypatch, tmp_path: Path) -> Path:
    """The default bus device does not exist (I2C not enabled), wherever the tests run."""
    missing = tmp_path / "i2c-1"
    monkeypatch.setattr(i2c, "DEFAULT_DEVICE", missing)
    return missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_open_uses_bcm_numbering_and_drives_every_pwm_pin_low(gpio, backend) -> None:
    assert gpio.mode == gpio.BCM
    for pin in ROLES:
        assert gpio.pins[pin] == {"direction": gpio.OUT, "level": gpio.LOW, "pull": gpio.PUD_OFF}


def test_pwm_set_starts_then_changes_software_pwm(gpio, backend) -> None:
    backend.pwm_set(17, 200, 25)
    assert gpio.running_pwm() == {17: (200.0, 25.0)}
    gpio.calls.clear()
    backend.pwm_set(17, 200, 60.5)
    assert gpio.calls == [("PWM.ChangeDutyCycle", 17, 60.5)]
    backend.pwm_set(17, 1000, 60.5)
    assert gpio.running_pwm() == {17: (1000.0, 60.5)}
    assert backend.snapshot()["pwm"] == {
        "17": {"hz": 1000.0, "duty_cycle": 60.5, "role": "stirring"}
    }


def test_pwm_off_stops_drives_low_and_frees_the_pin(gpio, backend) -> None:
    backend.pwm_set(17, 200, 80)
    backend.pwm_off(17)
    assert gpio.running_pwm() == {}
    assert gpio.pins[17]["level"] == gpio.LOW and gpio.pins[17]["direction"] == gpio.OUT
    backend.pwm_off(17)  # idempotent
    backend.pwm_set(17, 200, 10)  # a new PWM object: the old one is really gone
    assert gpio.running_pwm() == {17: (200.0, 10.0)}
    assert backend.snapshot()["pwm"]["17"]["duty_cycle"] == 10.0


def test_pwm_off_of_an_unknown_pin_does_nothing_and_of_a_configured_pin_drives_it_low(
    gpio, backend
) -> None:
    gpio.calls.clear()
    backend.pwm_off(5)
    assert gpio.calls == []
    gpio.pins[13]["level"] = gpio.HIGH
    backend.pwm_off(13)
    assert gpio.pins[13]["level"] == gpio.LOW


def test_bad_duty_cycle_raises_before_touching_gpio(gpio, backend) -> None:
    gpio.calls.clear()
    with pytest.raises(ValueError, match="150"):
        backend.pwm_set(17, 200, 150)
    assert gpio.calls == []


def test_count_edges_sets_up_a_pulled_up_input_and_counts_rising_edges(gpio, backend) -> None:
    assert backend.count_edges(25) == 0
    assert gpio.pins[25]["direction"] == gpio.IN and gpio.pins[25]["pull"] == gpio.PUD_UP
    assert ("add_event_detect", 25, gpio.RISING, None) in gpio.calls
    gpio.fire_edge(25, 7)
    assert backend.count_edges(25) == 7
    assert backend.snapshot()["edge_counters"] == {"25": 7}
    with pytest.raises(HardwareError, match="tachometer input"):
        backend.pwm_set(25, 200, 10)


def test_read_adc_and_led_set_go_through_the_i2c_bus(hat, backend) -> None:
    ads, dac, bus = hat
    assert backend.read_adc(0) == pytest.approx(0.8, abs=1e-4)  # photodiode 1: AIN1 on HAT 1.0
    assert ads.conversions[-1][0] == 1
    backend.led_set("C", 40)
    assert dac.level("C") == pytest.approx(102 / 255)
    assert ("write", 0x49, bytes([0x0A, 0x06, 0x60])) in bus.log  # DACC_DATA = 102 << 4
    snap = backend.snapshot()
    assert snap["leds"] == {"A": 0.0, "B": 0.0, "C": 40.0, "D": 0.0}
    assert "ADS1115 ADC at 0x48, DAC43608 LED driver at 0x49" in snap["hat"]
    with pytest.raises(ValueError):
        backend.read_adc(9)
    with pytest.raises(ValueError):
        backend.led_set("C", 101)


def test_close_switches_the_leds_off_and_closes_the_bus(gpio, hat) -> None:
    _, dac, bus = hat
    backend = RpiGpioBackend(pin_roles=ROLES, i2c=lambda: bus)
    backend.led_set("A", 100)
    backend.close()
    assert dac.level("A") == 0.0 and bus.closed
    with pytest.raises(HardwareError, match="closed"):
        backend.read_adc(0)


def test_without_i2c_the_backend_opens_warns_and_adc_says_how_to_enable_it(
    gpio, no_i2c_device
) -> None:
    warnings: list[str] = []
    backend = RpiGpioBackend(pin_roles=ROLES, i2c=LinuxI2CBus, warn=warnings.append)
    assert warnings == [f"rpi_gpio: ADC and LEDs are unavailable until the HAT answers: "
                        f"{no_i2c_device} does not exist, so the HAT cannot be reached: enable "
                        "I2C with `sudo raspi-config nonint do_i2c 0` (or raspi-config -> "
                        "Interface Options -> I2C) and reboot"]
    with pytest.raises(HardwareError, match=f"rpi_gpio: ADC read of channel 0: {no_i2c_device} "
                                            "does not exist.*raspi-config"):
        backend.read_adc(0)
    with pytest.raises(HardwareError, match="rpi_gpio: LED A: .*does not exist"):
        backend.led_set("A", 10)
    backend.pwm_set(17, 200, 10)  # PWM does not need the HAT's I2C chips
    assert backend.snapshot()["leds"] == {}
    backend.close()


def test_close_stops_everything_and_is_idempotent(gpio, hat) -> None:
    backend = RpiGpioBackend(pin_roles=ROLES, i2c=lambda: hat[2])
    backend.pwm_set(17, 200, 50)
    backend.pwm_set(13, 100, 20)
    backend.count_edges(25)
    backend.close()
    backend.close()
    assert gpio.running_pwm() == {}
    assert gpio.edge_callbacks == {}
    assert gpio.pins[17]["level"] == gpio.LOW
    backend.pwm_off(17)  # after close: still never raises
    with pytest.raises(HardwareError, match="closed"):
        backend.pwm_set(17, 200, 1)


def test_open_backend_rpi_gpio_explicit(gpio, no_i2c_device) -> None:
    warnings: list[str] = []
    backend = open_backend("rpi_gpio", pin_roles=ROLES, seed=None, warn=warnings.append)
    assert backend.name == "rpi_gpio"
    assert len(warnings) == 1 and f"{no_i2c_device} does not exist" in warnings[0]
    backend.close()


def test_open_backend_rpi_gpio_without_the_library_is_a_clear_error(monkeypatch) -> None:
    _forget_rpi()
    monkeypatch.setitem(sys.modules, "RPi", None)  # makes `import RPi.GPIO` fail
    with pytest.raises(
        HardwareError, match="RPi.GPIO cannot be used.*apt install python3-rpi.gpio"
    ):
        open_backend("rpi_gpio", pin_roles=ROLES, seed=None, warn=pytest.fail)


def test_auto_on_a_raspberry_pi_without_pigpiod_uses_rpi_gpio(
    gpio, no_i2c_device, monkeypatch, tmp_path
) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    monkeypatch.setattr(choose, "MODEL_FILES", (model,))
    monkeypatch.setenv("PIGPIO_ADDR", "127.0.0.1")
    monkeypatch.setenv("PIGPIO_PORT", str(free_port()))
    warnings: list[str] = []
    backend = open_backend("auto", pin_roles=ROLES, seed=None, warn=warnings.append)
    assert backend.name == "rpi_gpio"
    assert ["HAT answers" in w for w in warnings] == [True]  # only the I2C warning
    backend.close()


def test_auto_on_a_raspberry_pi_without_any_library_warns_and_simulates(
    monkeypatch, tmp_path
) -> None:
    _forget_rpi()
    monkeypatch.setitem(sys.modules, "RPi", None)
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    monkeypatch.setattr(choose, "MODEL_FILES", (model,))
    monkeypatch.setenv("PIGPIO_ADDR", "127.0.0.1")
    monkeypatch.setenv("PIGPIO_PORT", str(free_port()))
    warnings: list[str] = []
    backend = open_backend("auto", pin_roles=ROLES, seed=None, warn=warnings.append)
    assert backend.name == "simulated"
    assert len(warnings) == 1
    assert "using the simulated culture because" in warnings[0]
    assert "this is a Raspberry Pi 5 Model B Rev 1.0 but RPi.GPIO cannot be used" in warnings[0]
