"""The simulated culture, on a clock the tests step by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from pioreactord.hardware import SimulatedBackend, SimulationParams, open_backend, seed_from_section
from pioreactord.hardware.pins import TACHOMETER_PIN

STIRRING_PIN = 17


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float) -> None:
        self.now += seconds


def make(seed: int | None = 1, **params: object) -> tuple[SimulatedBackend, SteppedClock]:
    clock = SteppedClock()
    backend = SimulatedBackend(
        pin_roles={STIRRING_PIN: "stirring", 13: "media"},
        seed=seed,
        params=SimulationParams(**params),  # type: ignore[arg-type]
        clock=clock,
    )
    return backend, clock


def test_od_follows_the_logistic_curve_in_culture_time() -> None:
    sim, clock = make(growth_rate=0.5, od0=0.05, max_od=2.5, time_scale=60)
    assert sim.od() == pytest.approx(0.05)
    clock.step(60)  # one clock minute = one culture hour at time_scale 60
    expected = 2.5 / (1 + (2.5 / 0.05 - 1) * math.exp(-0.5))
    assert sim.od() == pytest.approx(expected)
    assert sim.od() == pytest.approx(0.05 * math.exp(0.5), rel=0.02)  # exponential while small
    clock.step(60 * 100)
    assert sim.od() == pytest.approx(2.5, rel=1e-6)


def test_od_reading_scales_with_od_and_the_ir_led_and_is_near_zero_in_the_dark() -> None:
    sim, clock = make(noise=0.0, time_scale=3600)
    assert sim.read_adc(0) == pytest.approx(0.0, abs=0.002)  # IR LED (A) off
    sim.led_set("A", 50)
    first = sim.read_adc(0)
    assert first == pytest.approx(0.05 * 1.0 * 0.5, abs=0.001)
    assert sim.read_adc(1) == pytest.approx(0.25 * 0.5, abs=0.001)  # reference photodiode
    clock.step(3600)  # 3600 culture hours: saturated
    assert sim.read_adc(0) == pytest.approx(2.5 * 0.5, abs=0.001)
    assert sim.read_adc(1) == pytest.approx(0.25 * 0.5, abs=0.001)


def test_an_empty_ir_led_channel_makes_readings_independent_of_the_leds() -> None:
    sim, _ = make(noise=0.0, ir_led_channel="")
    assert sim.read_adc(0) == pytest.approx(0.05, abs=0.001)


def test_same_seed_same_readings_and_another_seed_differs() -> None:
    def readings(seed: int) -> list[float]:
        sim, clock = make(seed=seed, time_scale=600)
        sim.led_set("A", 80)
        out = []
        for _ in range(20):
            clock.step(1.5)
            out.append(sim.read_adc(0))
        return out

    assert readings(7) == readings(7)
    assert readings(7) != readings(8)


def test_noise_is_gaussian_around_the_signal() -> None:
    sim, _ = make(seed=3, noise=0.01)
    sim.led_set("A", 100)
    values = [sim.read_adc(0) for _ in range(2000)]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    assert mean == pytest.approx(0.05, rel=0.01)
    assert sd == pytest.approx(0.01 * 0.05 + 0.0002, rel=0.1)


def test_rpm_follows_the_duty_cycle_with_a_first_order_lag() -> None:
    sim, clock = make(rpm_time_constant=1.0)
    sim.pwm_set(STIRRING_PIN, 200, 60)
    assert sim.rpm() == 0.0
    clock.step(1.0)
    assert sim.rpm() == pytest.approx(1200 * (1 - math.exp(-1)), rel=1e-6)
    clock.step(9.0)
    assert sim.rpm() == pytest.approx(1200, rel=1e-3)
    sim.pwm_set(STIRRING_PIN, 200, 8)  # below the stall duty
    clock.step(10.0)
    assert sim.rpm() == pytest.approx(0.0, abs=0.1)


def test_only_the_stirring_pin_turns_the_motor() -> None:
    sim, clock = make()
    sim.pwm_set(13, 200, 90)
    clock.step(10)
    assert sim.rpm() == 0.0


def test_edges_integrate_rpm_two_per_revolution_however_often_they_are_read() -> None:
    coarse, coarse_clock = make()
    fine, fine_clock = make()
    for sim, clock in ((coarse, coarse_clock), (fine, fine_clock)):
        assert sim.count_edges(TACHOMETER_PIN) == 0  # counts from set-up
        sim.pwm_set(STIRRING_PIN, 200, 60)
        clock.step(20)
        assert sim.rpm() == pytest.approx(1200, rel=1e-6)
    start = coarse.count_edges(TACHOMETER_PIN)
    coarse_clock.step(10)
    assert coarse.count_edges(TACHOMETER_PIN) - start == pytest.approx(1200 / 60 * 2 * 10, abs=1)
    for _ in range(1000):
        fine_clock.step(0.01)
        fine.count_edges(TACHOMETER_PIN)
    # equal up to float rounding at an edge boundary
    assert fine.count_edges(TACHOMETER_PIN) == pytest.approx(
        coarse.count_edges(TACHOMETER_PIN), abs=1
    )
    assert fine.count_edges(5) == 0  # nothing else is wired to an input


def test_pwm_off_drives_to_zero_and_is_idempotent() -> None:
    sim, clock = make()
    sim.pwm_set(STIRRING_PIN, 200, 50)
    sim.pwm_set(13, 100, 30)
    clock.step(10)
    sim.pwm_off(STIRRING_PIN)
    sim.pwm_off(STIRRING_PIN)
    sim.pwm_off(22)  # never started: no error
    assert list(sim.snapshot()["pwm"]) == ["13"]
    clock.step(10)
    assert sim.rpm() == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.pwm_set(17, 200, 100.5), "100.5"),
        (lambda s: s.pwm_set(17, 200, -1), "-1"),
        (lambda s: s.pwm_set(17, 0, 10), "0"),
        (lambda s: s.pwm_set(40, 200, 10), "40"),
        (lambda s: s.led_set("E", 10), "'E'"),
        (lambda s: s.led_set("A", 101), "101"),
        (lambda s: s.read_adc(4), "4"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_value(call, message: str) -> None:
    sim, _ = make()
    with pytest.raises(ValueError, match=message):
        call(sim)
    assert sim.snapshot()["pwm"] == {}


def test_snapshot_and_close() -> None:
    sim, clock = make()
    sim.pwm_set(STIRRING_PIN, 200, 40)
    sim.led_set("B", 12.5)
    sim.count_edges(TACHOMETER_PIN)
    clock.step(5)
    snap = sim.snapshot()
    assert snap["backend"] == "simulated"
    assert snap["pwm"] == {"17": {"hz": 200.0, "duty_cycle": 40.0, "role": "stirring"}}
    assert snap["leds"] == {"A": 0.0, "B": 12.5, "C": 0.0, "D": 0.0}
    assert snap["edge_counters"]["25"] > 0
    assert set(snap["culture"]) == {"od", "rpm", "culture_hours"}
    sim.close()
    sim.close()
    assert sim.snapshot()["pwm"] == {}
    assert sim.snapshot()["leds"]["B"] == 0.0


def test_simulation_section_parsing() -> None:
    params = SimulationParams.from_section({"seed": "4", "time_scale": "60", "ir_led_channel": ""})
    assert params.time_scale == 60.0 and params.ir_led_channel == ""
    assert seed_from_section({"seed": "4"}) == 4
    assert seed_from_section({"seed": " "}) is None
    with pytest.raises(ValueError, match="no key 'speed'"):
        SimulationParams.from_section({"speed": "2"})
    with pytest.raises(ValueError, match="'fast' is not a number"):
        SimulationParams.from_section({"time_scale": "fast"})
    with pytest.raises(ValueError, match="time_scale"):
        SimulationParams.from_section({"time_scale": "0"})
    with pytest.raises(ValueError, match="seed"):
        seed_from_section({"seed": "x"})


def test_open_backend_simulated_needs_no_warning() -> None:
    warnings: list[str] = []
    backend = open_backend("simulated", pin_roles={17: "stirring"}, seed=1, warn=warnings.append)
    assert backend.name == "simulated" and warnings == []


def test_importing_the_package_loads_no_gpio_library_and_pins_loads_nothing_else() -> None:
    code = (
        "import sys, pioreactord.hardware.pins as pins\n"
        "assert pins.DEFAULT_PWM_TO_PIN[1] == 17\n"
        "assert 'pioreactord.hardware.simulated' not in sys.modules\n"
        "import pioreactord.hardware as hw\n"
        "assert hw.open_backend and hw.HardwareError\n"
        "assert 'pigpio' not in sys.modules and 'RPi' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=10)


def test_pin_roles_come_from_the_pwm_section_through_the_hat_map() -> None:
    from pioreactord.hardware import pin_roles_from_pwm_section

    section = {"1": "stirring", "2": "media", "3": "", "5": "heater", "9": "nowhere", "x": "y"}
    assert pin_roles_from_pwm_section(section) == {17: "stirring", 13: "media", 18: "heater"}
