"""A stand-in for RPi.GPIO at its Python boundary, for tests on machines without GPIO.

It keeps RPi.GPIO's constants and the refusals a backend could trip over (no numbering mode,
PWM on a pin that is not an output, a second PWM object for a pin, a second edge detection,
duty cycle outside 0..100), records every call in `calls`, and lets a test fire edges with
`fire_edge(pin, count)` (run in the caller's thread, standing in for RPi.GPIO's event thread).
`_reset()` restores the pristine module between tests.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

VERSION = "0.7.1-fake"
RPI_INFO = {"P1_REVISION": 3, "TYPE": "fake", "PROCESSOR": "fake"}
BOARD, BCM = 10, 11
OUT, IN = 0, 1
LOW, HIGH = 0, 1
PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22
RISING, FALLING, BOTH = 31, 32, 33

calls: list[tuple[Any, ...]] = []
mode: int | None = None
warnings = True
pins: dict[int, dict[str, Any]] = {}  # pin -> {"direction", "level", "pull"}
edge_callbacks: dict[int, tuple[int, list[Callable[[int], None]]]] = {}
_pwm_objects: weakref.WeakValueDictionary[int, PWM] = weakref.WeakValueDictionary()


def _reset() -> None:
    global mode, warnings
    calls.clear()
    pins.clear()
    edge_callbacks.clear()
    _pwm_objects.clear()
    mode, warnings = None, True


def _need_mode() -> None:
    if mode is None:
        raise RuntimeError(
            "Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)"
        )


def setwarnings(flag: bool) -> None:
    global warnings
    calls.append(("setwarnings", flag))
    warnings = bool(flag)


def setmode(new_mode: int) -> None:
    global mode
    calls.append(("setmode", new_mode))
    if new_mode not in (BOARD, BCM):
        raise ValueError("An invalid mode was passed to setmode()")
    if mode is not None and mode != new_mode:
        raise ValueError("A different mode has already been set!")
    mode = new_mode


def getmode() -> int | None:
    return mode


def setup(
    channel: int | list[int], direction: int, pull_up_down: int = PUD_OFF, initial: int = -1
) -> None:
    _need_mode()
    for pin in channel if isinstance(channel, list) else [channel]:
        calls.append(("setup", pin, direction, pull_up_down, initial))
        if direction == OUT and pull_up_down != PUD_OFF:
            raise ValueError("pull_up_down parameter is not valid for outputs")
        level = initial if direction == OUT and initial in (LOW, HIGH) else LOW
        pins[pin] = {"direction": direction, "level": level, "pull": pull_up_down}


def output(channel: int, value: int) -> None:
    _need_mode()
    calls.append(("output", channel, value))
    if pins.get(channel, {}).get("direction") != OUT:
        raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
    pins[channel]["level"] = int(bool(value))


def input(channel: int) -> int:  # noqa: A001 - RPi.GPIO's own name
    _need_mode()
    if channel not in pins:
        raise RuntimeError("You must setup() the GPIO channel first")
    return int(pins[channel]["level"])


def cleanup(channel: int | list[int] | None = None) -> None:
    calls.append(("cleanup", channel))
    targets = (
        list(pins) if channel is None else (channel if isinstance(channel, list) else [channel])
    )
    for pin in targets:
        pins.pop(pin, None)
        edge_callbacks.pop(pin, None)


def add_event_detect(
    channel: int,
    edge: int,
    callback: Callable[[int], None] | None = None,
    bouncetime: int | None = None,
) -> None:
    _need_mode()
    calls.append(("add_event_detect", channel, edge, bouncetime))
    if pins.get(channel, {}).get("direction") != IN:
        raise RuntimeError("You must setup() the GPIO channel as an input first")
    if channel in edge_callbacks:
        raise RuntimeError("Conflicting edge detection already enabled for this GPIO channel")
    edge_callbacks[channel] = (edge, [callback] if callback else [])


def add_event_callback(channel: int, callback: Callable[[int], None]) -> None:
    if channel not in edge_callbacks:
        raise RuntimeError(
            "Add event detection using add_event_detect first before adding a callback"
        )
    edge_callbacks[channel][1].append(callback)


def remove_event_detect(channel: int) -> None:
    calls.append(("remove_event_detect", channel))
    edge_callbacks.pop(channel, None)


def fire_edge(channel: int, count: int = 1) -> None:
    """Test hook: `count` pulses (rising then falling) arrive on an input."""
    edge, callbacks = edge_callbacks.get(channel, (None, []))
    for _ in range(count):
        for level in (HIGH, LOW):
            pins[channel]["level"] = level
            if edge == BOTH or (edge == RISING) == (level == HIGH):
                for callback in list(callbacks):
                    callback(channel)


class PWM:
    def __init__(self, channel: int, frequency: float) -> None:
        _need_mode()
        calls.append(("PWM", channel, frequency))
        if pins.get(channel, {}).get("direction") != OUT:
            raise RuntimeError("You must setup() the GPIO channel as an output first")
        if channel in _pwm_objects:
            raise RuntimeError("A PWM object already exists for this GPIO channel")
        if frequency <= 0.0:
            raise ValueError("frequency must be greater than 0.0")
        self.channel, self.frequency = channel, float(frequency)
        self.duty_cycle: float | None = None  # None: not running
        _pwm_objects[channel] = self

    def start(self, dutycycle: float) -> None:
        calls.append(("PWM.start", self.channel, dutycycle))
        _check_duty(dutycycle)
        self.duty_cycle = float(dutycycle)

    def ChangeDutyCycle(self, dutycycle: float) -> None:  # noqa: N802 - RPi.GPIO's own name
        calls.append(("PWM.ChangeDutyCycle", self.channel, dutycycle))
        _check_duty(dutycycle)
        self.duty_cycle = float(dutycycle)

    def ChangeFrequency(self, frequency: float) -> None:  # noqa: N802
        calls.append(("PWM.ChangeFrequency", self.channel, frequency))
        if frequency <= 0.0:
            raise ValueError("frequency must be greater than 0.0")
        self.frequency = float(frequency)

    def stop(self) -> None:
        calls.append(("PWM.stop", self.channel))
        self.duty_cycle = None


def _check_duty(dutycycle: float) -> None:
    if not 0.0 <= dutycycle <= 100.0:
        raise ValueError("dutycycle must have a value from 0.0 to 100.0")


def running_pwm() -> dict[int, tuple[float, float]]:
    """Test hook: {pin: (frequency, duty cycle)} of PWM objects alive and started."""
    return {
        p: (o.frequency, o.duty_cycle) for p, o in _pwm_objects.items() if o.duty_cycle is not None
    }
