"""The one interface every hardware backend implements, and the argument checks they share.

The backend lives inside the daemon: one process owns every pin, so the daemon can switch off
the pins of a job that died. Jobs never import a backend; they send requests to the daemon,
which calls these methods from its main loop. Backends are not thread-safe: call them from
one thread (library callback threads only bump edge counters).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .pins import ADC_CHANNELS, BCM_PINS, LED_CHANNELS


class HardwareError(RuntimeError):
    """The hardware cannot do what was asked; the message says why and what to do."""


@runtime_checkable
class HardwareBackend(Protocol):
    name: str  # "simulated" | "rpi_gpio" | "pigpio"

    def pwm_set(self, pin: int, hz: float, duty_cycle: float) -> None:
        """Start PWM on `pin`, or change its frequency/duty cycle. Duty cycle 0..100."""
        ...

    def pwm_off(self, pin: int) -> None:
        """Drive `pin` to 0 and release it. Idempotent; never raises for an unknown pin."""
        ...

    def count_edges(self, pin: int) -> int:
        """Rising edges on a digital input since the first call for `pin` (which sets it up)."""
        ...

    def read_adc(self, channel: int) -> float:
        """Volts on an ADC channel (0..3) as `pins` numbers them: 0 photodiode "1", 1 photodiode
        "2", 2 the HAT's version divider, 3 aux. A HAT driver maps them to its chip's inputs."""
        ...

    def led_set(self, channel: str, intensity: float) -> None:
        """LED channel "A".."D" to `intensity` percent (0..100)."""
        ...

    def snapshot(self) -> dict:
        """JSON-ready state for status and debugging (see `empty_snapshot`)."""
        ...

    def close(self) -> None:
        """Everything off, every resource released. Safe to call twice."""
        ...


def check_pin(pin: int) -> int:
    if isinstance(pin, bool) or not isinstance(pin, int) or pin not in BCM_PINS:
        raise ValueError(f"pin {pin!r} is not a BCM GPIO number (0..27)")
    return pin


def check_pwm(pin: int, hz: float, duty_cycle: float) -> tuple[int, float, float]:
    check_pin(pin)
    if not 0 < float(hz) <= 1_000_000:
        raise ValueError(f"PWM frequency {hz!r} Hz on pin {pin} is outside 0 < hz <= 1000000")
    if not 0.0 <= float(duty_cycle) <= 100.0:
        raise ValueError(f"duty cycle {duty_cycle!r} on pin {pin} is outside 0..100")
    return pin, float(hz), float(duty_cycle)


def check_adc_channel(channel: int) -> int:
    if isinstance(channel, bool) or channel not in ADC_CHANNELS:
        raise ValueError(f"ADC channel {channel!r} is not one of {list(ADC_CHANNELS)}")
    return channel


def check_led(channel: str, intensity: float) -> tuple[str, float]:
    if channel not in LED_CHANNELS:
        raise ValueError(f"LED channel {channel!r} is not one of {', '.join(LED_CHANNELS)}")
    if not 0.0 <= float(intensity) <= 100.0:
        raise ValueError(f"LED intensity {intensity!r} on channel {channel} is outside 0..100")
    return channel, float(intensity)


def empty_snapshot(name: str) -> dict:
    """The keys every backend's snapshot has.

    pwm:   {"<pin>": {"hz": float, "duty_cycle": float, "role": str}} for every started pin,
           including one started at duty 0 (the pwms/dc topic leaves those out).
    leds:  {"A": float, ...}, or {} where the backend cannot drive LEDs (no HAT found yet).
    edge_counters: {"<pin>": int} for every input set up by count_edges.
    Keys are strings so the dict goes to JSON unchanged.
    """
    return {"backend": name, "pwm": {}, "leds": {}, "edge_counters": {}}
