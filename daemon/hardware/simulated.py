"""A simulated bioreactor: one culture per daemon, shared by every job.

The model is deterministic given `seed` and the injected `clock`, and every quantity is a
closed-form function of time between events, so readings do not depend on how often anyone
polls:

- Optical density grows logistically from `od0` towards `max_od` at `growth_rate` per hour of
  culture time; culture time runs `time_scale` times faster than the clock (a demo uses 60 to
  see an hour of growth per minute). Everything mechanical runs on the real clock.
- ADC channel 0 (the 90-degree photodiode) reads OD x `volts_per_od` x (IR LED intensity / 100),
  channel 1 (the reference photodiode) reads `ref_volts` x (IR LED intensity / 100); both with
  Gaussian noise of `noise` x the signal plus a 0.2 mV floor. So a dark culture reads ~0 V: the
  OD job must switch the IR LED (`ir_led_channel`, "A") on, as Pioreactor's does. An empty
  `ir_led_channel` makes the signal independent of the LEDs.
- The stirring motor is the pin whose role (from [PWM]) is "stirring". Its steady-state speed
  is 0 below `stall_duty` percent and `rpm_per_duty` x (duty - stall_duty) above; the speed
  follows with a first-order lag of `rpm_time_constant` seconds. The tachometer pin sees two
  rising edges per revolution, integrated exactly.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from .base import check_adc_channel, check_led, check_pin, check_pwm, empty_snapshot
from .pins import LED_CHANNELS, PD_CHANNEL_TO_ADC, TACHOMETER_PIN, TACHOMETER_PULSES_PER_REV

OD_ADC = PD_CHANNEL_TO_ADC["1"]
REF_ADC = PD_CHANNEL_TO_ADC["2"]
NOISE_FLOOR_VOLTS = 0.0002
ADC_MAX_VOLTS = 4.096  # the ADS1115's full scale at the HAT's gain; readings clip there


@dataclass(frozen=True)
class SimulationParams:
    """The [simulation] section. Every key is optional; see `etc/pioreactord.ini`."""

    growth_rate: float = 0.5  # per hour of culture time
    time_scale: float = 1.0  # culture hours per clock hour
    od0: float = 0.05
    max_od: float = 2.5  # carrying capacity
    volts_per_od: float = 1.0  # at full IR intensity
    ref_volts: float = 0.25  # reference photodiode at full IR intensity
    noise: float = 0.005  # relative standard deviation of an ADC reading
    ir_led_channel: str = "A"
    stirring_role: str = "stirring"
    rpm_per_duty: float = 24.0  # ~1200 rpm at 60 %
    stall_duty: float = 10.0
    rpm_time_constant: float = 1.0  # seconds

    def __post_init__(self) -> None:
        positive = ("time_scale", "od0", "max_od", "rpm_time_constant")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"[simulation] {name} = {getattr(self, name)} must be > 0")
        if self.od0 >= self.max_od:
            raise ValueError(f"[simulation] od0 = {self.od0} must be below max_od = {self.max_od}")
        if self.noise < 0 or self.growth_rate < 0:
            raise ValueError("[simulation] noise and growth_rate must be >= 0")
        if self.ir_led_channel not in ("", *LED_CHANNELS):
            raise ValueError(
                f"[simulation] ir_led_channel = {self.ir_led_channel!r} is not A..D or empty"
            )

    @classmethod
    def from_section(cls, section: Mapping[str, str]) -> SimulationParams:
        """Parse an INI section; unknown keys (except `seed`) and bad values raise ValueError."""
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for key, text in section.items():
            if key == "seed":
                continue
            if key not in types:
                raise ValueError(
                    f"[simulation] has no key {key!r} (known: seed, {', '.join(types)})"
                )
            try:
                values[key] = text.strip() if types[key] == "str" else float(text)
            except ValueError:
                raise ValueError(f"[simulation] {key} = {text!r} is not a number") from None
        return cls(**values)  # type: ignore[arg-type]


def seed_from_section(section: Mapping[str, str]) -> int | None:
    """[simulation] seed: an integer, or empty/missing for a different culture each start."""
    text = section.get("seed", "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"[simulation] seed = {text!r} is not an integer") from None


class SimulatedBackend:
    name = "simulated"

    def __init__(
        self,
        *,
        pin_roles: Mapping[int, str],
        seed: int | None = None,
        params: SimulationParams | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params or SimulationParams()
        self._clock = clock
        self._rng = random.Random(seed)
        self._roles = dict(pin_roles)
        self._motor_pin = next(
            (p for p, r in self._roles.items() if r == self.params.stirring_role), None
        )
        self._pwm: dict[int, tuple[float, float]] = {}
        self._leds = dict.fromkeys(LED_CHANNELS, 0.0)
        self._edge_offsets: dict[int, int] = {}
        self._t0 = self._t_motor = clock()
        self._rpm = 0.0
        self._revolutions = 0.0

    # -- the culture --------------------------------------------------------------------

    def od(self) -> float:
        p = self.params
        hours = (self._clock() - self._t0) / 3600.0 * p.time_scale
        return p.max_od / (1.0 + (p.max_od / p.od0 - 1.0) * math.exp(-p.growth_rate * hours))

    def rpm(self) -> float:
        self._advance_motor()
        return self._rpm

    def _steady_rpm(self) -> float:
        duty = self._pwm.get(self._motor_pin, (0.0, 0.0))[1] if self._motor_pin is not None else 0.0
        return max(0.0, duty - self.params.stall_duty) * self.params.rpm_per_duty

    def _advance_motor(self) -> None:
        # Exact solution of tau * rpm' = steady - rpm over the interval, and its integral, so the
        # edge count is the same however often it is read.
        now = self._clock()
        dt, self._t_motor = max(0.0, now - self._t_motor), now
        tau, steady = self.params.rpm_time_constant, self._steady_rpm()
        decay = math.exp(-dt / tau)
        self._revolutions += (steady * dt + (self._rpm - steady) * tau * (1.0 - decay)) / 60.0
        self._rpm = steady + (self._rpm - steady) * decay

    def _light(self) -> float:
        channel = self.params.ir_led_channel
        return self._leds[channel] / 100.0 if channel else 1.0

    # -- HardwareBackend ----------------------------------------------------------------

    def pwm_set(self, pin: int, hz: float, duty_cycle: float) -> None:
        pin, hz, duty_cycle = check_pwm(pin, hz, duty_cycle)
        self._advance_motor()  # the old duty cycle applies up to now
        self._pwm[pin] = (hz, duty_cycle)

    def pwm_off(self, pin: int) -> None:
        self._advance_motor()
        self._pwm.pop(pin, None)

    def count_edges(self, pin: int) -> int:
        check_pin(pin)
        total = self._total_edges(pin)
        offset = self._edge_offsets.setdefault(pin, total)
        return total - offset

    def _total_edges(self, pin: int) -> int:
        if pin != TACHOMETER_PIN:
            return 0  # nothing else is wired to an input
        self._advance_motor()
        return math.floor(self._revolutions * TACHOMETER_PULSES_PER_REV)

    def read_adc(self, channel: int) -> float:
        check_adc_channel(channel)
        if channel == OD_ADC:
            signal = self.od() * self.params.volts_per_od * self._light()
        elif channel == REF_ADC:
            signal = self.params.ref_volts * self._light()
        else:
            signal = 0.0
        sigma = self.params.noise * signal + NOISE_FLOOR_VOLTS
        return min(ADC_MAX_VOLTS, max(0.0, self._rng.gauss(signal, sigma)))

    def led_set(self, channel: str, intensity: float) -> None:
        channel, intensity = check_led(channel, intensity)
        self._leds[channel] = intensity

    def snapshot(self) -> dict:
        snap = empty_snapshot(self.name)
        for pin, (hz, duty) in sorted(self._pwm.items()):
            snap["pwm"][str(pin)] = {"hz": hz, "duty_cycle": duty, "role": self._roles.get(pin, "")}
        snap["leds"] = dict(self._leds)
        for pin in sorted(self._edge_offsets):
            snap["edge_counters"][str(pin)] = self.count_edges(pin)
        hours = (self._clock() - self._t0) / 3600.0 * self.params.time_scale
        snap["culture"] = {
            "od": round(self.od(), 6),
            "rpm": round(self.rpm(), 1),
            "culture_hours": round(hours, 4),
        }
        return snap

    def close(self) -> None:
        for pin in list(self._pwm):
            self.pwm_off(pin)
        self._leds = dict.fromkeys(LED_CHANNELS, 0.0)
