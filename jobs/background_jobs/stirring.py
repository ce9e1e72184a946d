"""stirring: drive the stirring motor at `target_rpm`, measured by the tachometer.

The motor is the PWM channel named `stirring` in `[PWM]` (BCM pin from the HAT's channel map); the
job locks that pin for its lifetime. Every `[stirring] rpm_interval` seconds it counts the
tachometer's edges (two per revolution) over the interval, publishes `measured_rpm`, and a PI
controller moves `duty_cycle` towards the target:

    integral += ki * error * dt;  duty_cycle = clamp(integral + kp * error, 0, 100)

starting from `initial_duty_cycle` as the integral (feed-forward). With the default gains the
simulated culture (rpm ~ 24 x (dc - 10), 1 s lag) reaches +-10 % of 300..1500 rpm in ~6 s.

States: sleeping switches the motor off and stops the loop; ready switches it back on at the last
duty cycle; disconnected switches it off and releases the pin (the daemon does both for a job that
dies).
"""

from __future__ import annotations

import threading
from typing import Any

import click

from ..config import config
from ..whoami import get_latest_experiment_name, get_unit_name
from ._hw import Hardware, utc_iso
from .base import BackgroundJob

TACHOMETER_PULSES_PER_REV = 2


def _option(key: str, default: float) -> float:
    return float(config.getfloat("stirring", key, fallback=default))


class PIController:
    """Discrete PI with the integral clamped to the output range (no wind-up)."""

    def __init__(self, kp: float, ki: float, initial_output: float,
                 low: float = 0.0, high: float = 100.0) -> None:
        self.kp, self.ki, self.low, self.high = kp, ki, low, high
        self.integral = self._clamp(initial_output)

    def _clamp(self, value: float) -> float:
        return min(self.high, max(self.low, value))

    def update(self, error: float, dt: float) -> float:
        self.integral = self._clamp(self.integral + self.ki * error * dt)
        return self._clamp(self.integral + self.kp * error)


class Stirrer(BackgroundJob):
    job_name = "stirring"
    published_settings = {
        "target_rpm": {"datatype": "float", "settable": True, "unit": "RPM"},
        "measured_rpm": {"datatype": "json", "settable": False, "unit": "RPM"},
        "duty_cycle": {"datatype": "float", "settable": False, "unit": "%"},
    }

    def __init__(self, target_rpm: float, unit: str, experiment: str) -> None:
        super().__init__(unit=unit, experiment=experiment)
        from pioreactord.hardware.pins import DEFAULT_PWM_TO_PIN, TACHOMETER_PIN

        if not config.has_option("PWM_reverse", "stirring"):
            raise click.UsageError(f"no [PWM] channel is named stirring in {config.path}; add e.g. "
                                   "`1 = stirring` to [PWM]")
        channel = int(config.get("PWM_reverse", "stirring"))
        self.pin, self.tachometer = DEFAULT_PWM_TO_PIN[channel], TACHOMETER_PIN
        self.hz = _option("pwm_hz", 200.0)
        self.rpm_interval = _option("rpm_interval", 1.0)
        self.target_rpm = float(target_rpm)
        self.controller = PIController(_option("kp", 0.01), _option("ki", 0.02),
                                       _option("initial_duty_cycle", 30.0))
        self.duty_cycle = self.controller.integral
        self.hw = Hardware(self)
        self._control = threading.Lock()  # the loop vs. the state hooks
        self._motor_on = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stirring-loop", daemon=True)
        self._locked = False
        self.hw.lock(self.pin)
        self._locked = True
        self._start_motor()
        self._thread.start()

    def _start_motor(self) -> None:
        with self._control:
            self.hw.pwm(self.pin, self.hz, self.duty_cycle)
            self._last_edges = self.hw.edges(self.tachometer)
            self._motor_on = True

    def _loop(self) -> None:
        while not self._stop.wait(self.rpm_interval):
            try:
                self._control_step(self.rpm_interval)
            except Exception as exc:  # noqa: BLE001 - report, keep stirring
                self.logger.error(f"stirring control step failed: {exc}")

    def _control_step(self, dt: float) -> None:
        with self._control:
            if not self._motor_on:
                return
            edges = self.hw.edges(self.tachometer)
            counted, self._last_edges = edges - self._last_edges, edges
            if counted < 0:  # a new daemon (restart) counts from 0 again: measure next time
                return
            rpm = counted / TACHOMETER_PULSES_PER_REV / dt * 60.0
            self.measured_rpm = {"measured_rpm": round(rpm, 1), "timestamp": utc_iso()}
            duty = round(self.controller.update(self.target_rpm - rpm, dt), 2)
            if duty != self.duty_cycle:
                self.hw.pwm(self.pin, self.hz, duty)
                self.duty_cycle = duty

    def set_target_rpm(self, value: float) -> None:
        if not 0 <= value <= 5000:
            raise ValueError(f"target_rpm {value:g} is outside 0..5000")
        self.target_rpm = float(value)

    # --- states --------------------------------------------------------------------------------
    def on_ready_to_sleeping(self) -> None:
        with self._control:
            self._motor_on = False
            self.hw.pwm_off(self.pin)

    def on_sleeping_to_ready(self) -> None:
        self._start_motor()

    def on_disconnected(self) -> None:
        stop: Any = getattr(self, "_stop", None)
        if stop is None:  # failed before the loop existed
            return
        stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.rpm_interval + 6)
        if not self._locked:  # the pin is someone else's: leave it alone
            return
        with self._control:
            self._motor_on = False
            self.hw.pwm_off(self.pin)
            self.hw.unlock(self.pin)


@click.command(name="stirring")
@click.option("--target-rpm", type=float, default=None,
              help="RPM to hold (default: [stirring] target_rpm)")
def click_stirring(target_rpm: float | None) -> None:
    """Stir at a target RPM, closed-loop on the tachometer."""
    if target_rpm is None:
        target_rpm = _option("target_rpm", 500.0)
    job = Stirrer(target_rpm, unit=get_unit_name(), experiment=get_latest_experiment_name())
    job.block_until_disconnected()
