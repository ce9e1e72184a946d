"""growth_rate_calculating's Kalman filter on log OD recovers known growth rates from noisy,
synthetic exponential cultures (fixed seeds). Tolerances are at least twice the worst error seen
over seeds 0-19 with the same settings."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from pioreactor.background_jobs.growth_rate_calculating import LogODKalmanFilter

READING_SECONDS = 5.0  # od_reading's default interval


def grow(rate_at, hours: float, seed: int, noise: float = 0.01, rate_variance: float = 0.05,
         skip: tuple[float, float] | None = None) -> list[tuple[float, float]]:
    """Feed OD = 0.05 exp(integral of rate) x lognormal noise to a filter set up like the job's
    defaults (obs_std 0.01, initial_rate_std 1); -> [(hour, estimated rate)]. Readings whose
    hour falls inside `skip` are missing (a paused od_reading)."""
    rng = random.Random(seed)
    log_od, hour, reference = math.log(0.05), 0.0, None
    kalman, last_hour, estimates = None, 0.0, []
    dt = READING_SECONDS / 3600
    while hour < hours:
        log_od += rate_at(hour) * dt
        hour += dt
        if skip and skip[0] <= hour < skip[1]:
            continue
        od = math.exp(log_od + rng.gauss(0.0, noise))
        if kalman is None:
            reference, kalman = od, LogODKalmanFilter(0.0, 0.01, rate_variance, 1.0)
        else:
            kalman.update(math.log(od / reference), hour - last_hour)
            estimates.append((hour, kalman.rate))
        last_hour = hour
    return estimates


def mean_rate(estimates, start: float, end: float) -> float:
    return statistics.mean(rate for hour, rate in estimates if start <= hour < end)


def test_recovers_a_constant_growth_rate_from_1_percent_noise() -> None:
    estimates = grow(lambda h: 0.4, hours=3.0, seed=7)
    assert mean_rate(estimates, 2.0, 3.0) == pytest.approx(0.4, abs=0.02)  # worst seen 0.004
    assert estimates[-1][1] == pytest.approx(0.4, abs=0.12)  # one estimate; worst seen 0.046


def test_a_smaller_rate_variance_gives_a_steadier_estimate() -> None:
    estimates = grow(lambda h: 0.4, hours=3.0, seed=7, rate_variance=1e-3)
    assert estimates[-1][1] == pytest.approx(0.4, abs=0.04)  # worst seen 0.014
    wobble = statistics.pstdev(rate for hour, rate in estimates if hour >= 2.0)
    default_wobble = statistics.pstdev(
        rate for hour, rate in grow(lambda h: 0.4, hours=3.0, seed=7) if hour >= 2.0)
    assert wobble < default_wobble / 2


def test_a_culture_that_does_not_grow_reads_a_rate_near_zero() -> None:
    estimates = grow(lambda h: 0.0, hours=2.0, seed=3)
    assert mean_rate(estimates, 1.0, 2.0) == pytest.approx(0.0, abs=0.02)


def test_follows_a_change_of_growth_rate() -> None:
    estimates = grow(lambda h: 0.2 if h < 2.0 else 0.6, hours=4.0, seed=11)
    assert mean_rate(estimates, 1.5, 2.0) == pytest.approx(0.2, abs=0.03)
    assert mean_rate(estimates, 3.0, 4.0) == pytest.approx(0.6, abs=0.03)


def test_a_pause_in_the_readings_is_bridged_by_the_timestamps() -> None:
    estimates = grow(lambda h: 0.5, hours=3.0, seed=5, skip=(1.0, 1.5))
    after = [rate for hour, rate in estimates if 1.5 <= hour < 1.6]
    assert after[0] == pytest.approx(0.5, abs=0.12)  # the first reading after half an hour
    assert mean_rate(estimates, 2.0, 3.0) == pytest.approx(0.5, abs=0.02)
