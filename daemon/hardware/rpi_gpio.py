"""RPi.GPIO backend: software PWM threads and edge-detect callbacks (rpi-lgpio on a Pi 5).

ADC and LEDs: the HAT's chips on the kernel's I2C bus, /dev/i2c-1 (`i2c.LinuxI2CBus`, drivers in
`hat`), probed when the backend opens. Without I2C enabled, or without a HAT, the backend still
opens (PWM works) with a warning, and `read_adc` / `led_set` raise a HardwareError that says what
is missing. The I2C path is tested against emulated chips only, not yet on a real HAT.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from .base import (
    HardwareError,
    check_adc_channel,
    check_led,
    check_pin,
    check_pwm,
    empty_snapshot,
)
from .hat import HatLink
from .i2c import I2CBus, LinuxI2CBus


def _ignore(message: str) -> None:
    pass


def import_rpi_gpio() -> ModuleType:
    """Import RPi.GPIO or raise a HardwareError that says how to get it."""
    try:
        return importlib.import_module("RPi.GPIO")
    except Exception as exc:  # RPi.GPIO raises RuntimeError off a Pi, ImportError if missing
        raise HardwareError(
            f"RPi.GPIO cannot be used ({type(exc).__name__}: {exc}); install it with "
            "`sudo apt install python3-rpi.gpio` (on a Pi 5: python3-rpi-lgpio)"
        ) from exc


class _EdgeCounter:
    """Tally for one input. Only RPi.GPIO's event thread writes it, so it needs no lock."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, channel: int) -> None:
        self.count += 1


class RpiGpioBackend:
    name = "rpi_gpio"

    def __init__(self, *, pin_roles: Mapping[int, str], gpio: ModuleType | None = None,
                 i2c: Callable[[], I2CBus] = LinuxI2CBus,
                 info: Callable[[str], None] = _ignore,
                 warn: Callable[[str], None] = _ignore) -> None:
        """`i2c` opens the HAT's bus (default /dev/i2c-1); `info`/`warn` hear what was found."""
        self._gpio: Any = gpio or import_rpi_gpio()
        self._roles = dict(pin_roles)
        self._pwm: dict[int, tuple[Any, float, float]] = {}  # pin -> (GPIO.PWM, hz, duty)
        self._edges: dict[int, _EdgeCounter] = {}
        self._closed = False
        self._gpio.setwarnings(False)  # pins set up by an earlier run would warn on every setup
        self._gpio.setmode(self._gpio.BCM)
        # A daemon that died may have left an output high (a heater, a pump): start from low.
        for pin in self._roles:
            self._drive_low(pin)
        self._hat = HatLink(self.name, i2c, info=info, warn=warn)

    def _drive_low(self, pin: int) -> None:
        # Kept an output driven low rather than released to an input: a floating MOSFET gate
        # could half-switch a heater.
        self._gpio.setup(pin, self._gpio.OUT, initial=self._gpio.LOW)
        self._gpio.output(pin, self._gpio.LOW)

    def pwm_set(self, pin: int, hz: float, duty_cycle: float) -> None:
        pin, hz, duty_cycle = check_pwm(pin, hz, duty_cycle)
        self._check_open()
        if pin in self._edges:
            raise HardwareError(f"pin {pin} is a tachometer input; it cannot also drive PWM")
        current = self._pwm.get(pin)
        if current is None:
            self._gpio.setup(pin, self._gpio.OUT, initial=self._gpio.LOW)
            pwm = self._gpio.PWM(pin, hz)
            pwm.start(duty_cycle)
        else:
            pwm = current[0]
            if hz != current[1]:
                pwm.ChangeFrequency(hz)
            pwm.ChangeDutyCycle(duty_cycle)
        self._pwm[pin] = (pwm, hz, duty_cycle)

    def pwm_off(self, pin: int) -> None:
        entry = self._pwm.pop(pin, None)
        if self._closed:
            return
        if entry is not None:
            entry[0].stop()
            del entry  # RPi.GPIO refuses a second PWM object for a pin while the first lives
            self._gpio.output(pin, self._gpio.LOW)
        elif pin in self._roles:
            self._drive_low(pin)

    def count_edges(self, pin: int) -> int:
        check_pin(pin)
        self._check_open()
        counter = self._edges.get(pin)
        if counter is None:
            if pin in self._pwm:
                raise HardwareError(f"pin {pin} drives PWM; it cannot also count edges")
            counter = _EdgeCounter()
            # Hall sensors are open-drain: pull up, and count the rising edge of each pulse.
            self._gpio.setup(pin, self._gpio.IN, pull_up_down=self._gpio.PUD_UP)
            self._gpio.add_event_detect(pin, self._gpio.RISING, callback=counter)
            self._edges[pin] = counter
        return counter.count

    def read_adc(self, channel: int) -> float:
        check_adc_channel(channel)
        self._check_open()
        return self._hat.read_volts(channel)

    def led_set(self, channel: str, intensity: float) -> None:
        channel, intensity = check_led(channel, intensity)
        self._check_open()
        self._hat.set_led(channel, intensity)

    def snapshot(self) -> dict:
        snap = empty_snapshot(self.name)
        for pin, (_pwm, hz, duty) in sorted(self._pwm.items()):
            snap["pwm"][str(pin)] = {"hz": hz, "duty_cycle": duty, "role": self._roles.get(pin, "")}
        for pin, counter in sorted(self._edges.items()):
            snap["edge_counters"][str(pin)] = counter.count
        snap["leds"] = dict(self._hat.leds)
        snap["hat"] = self._hat.describe()
        return snap

    def close(self) -> None:
        if self._closed:
            return
        for pin in list(self._pwm):
            self.pwm_off(pin)
        for pin in self._edges:
            self._gpio.remove_event_detect(pin)
        if self._edges:
            self._gpio.cleanup(list(self._edges))
        self._hat.close()
        # Outputs are deliberately not cleaned up (that would float them): they stay driven low.
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise HardwareError("the rpi_gpio backend is closed")
