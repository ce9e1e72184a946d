"""growth_rate_calculating: the culture's growth rate from od_reading's `ods`.

The first `samples_for_od_statistics` readings of `[growth_rate_calculating] channel` give the
reference OD; every later reading is divided by it (so OD starts at ~1, as the seeds'
MotorDriver expects of `od_filtered`) and fed to a Kalman filter.

The filter: a 2-state linear Kalman filter on y = ln(OD / reference), state x = [y, r] where r is
the specific growth rate per hour, with the constant-rate ("constant velocity") model

    y' = y + r dt,  r' = r + w;   Q = q [[dt^3/3, dt^2/2], [dt^2/2, dt]],  R = obs_std^2

Why this filter: exponential growth is a straight line in log OD, so the model is linear and the
slope *is* the growth rate: no extended/unscented machinery is needed, unlike a filter on raw OD.
Photodiode noise is roughly proportional to the signal, so in log space it is additive with a
constant variance (obs_std ~ the relative noise), which is what a Kalman filter assumes. dt comes
from the readings' own timestamps, so irregular intervals and pauses are handled. Pioreactor's
own calculator is also a Kalman filter on OD and rate, for the same reasons.

Publishes `od_filtered` {"od_filtered": exp(y), "timestamp"} and `growth_rate`
{"growth_rate": r (per hour), "timestamp"} for every reading after the reference is known.
"""

from __future__ import annotations

import json
import math
import threading
from datetime import datetime

import click

from ..config import config
from ..whoami import get_latest_experiment_name, get_unit_name
from .base import BackgroundJob, Message

SECONDS_PER_HOUR = 3600.0


def _option(key: str, default: float) -> float:
    return float(config.getfloat("growth_rate_calculating", key, fallback=default))


class LogODKalmanFilter:
    """x = [ln OD, rate per hour]; P its covariance. Plain floats: 2x2 needs no numpy."""

    def __init__(self, y0: float, obs_std: float, rate_variance: float, initial_rate_std: float) -> None:
        self.y, self.rate = y0, 0.0
        self.p = [[obs_std**2, 0.0], [0.0, initial_rate_std**2]]
        self.r, self.q = obs_std**2, rate_variance

    def update(self, z: float, dt_hours: float) -> tuple[float, float]:
        dt, (p00, p01), (p10, p11) = dt_hours, self.p[0], self.p[1]
        # predict: F = [[1, dt], [0, 1]]
        y, rate = self.y + self.rate * dt, self.rate
        q00, q01, q11 = self.q * dt**3 / 3, self.q * dt**2 / 2, self.q * dt
        a00 = p00 + dt * (p10 + p01) + dt * dt * p11 + q00
        a01 = p01 + dt * p11 + q01
        a10 = p10 + dt * p11 + q01
        a11 = p11 + q11
        # correct: H = [1, 0]
        s = a00 + self.r
        k0, k1 = a00 / s, a10 / s
        innovation = z - y
        self.y, self.rate = y + k0 * innovation, rate + k1 * innovation
        self.p = [[(1 - k0) * a00, (1 - k0) * a01], [a10 - k1 * a00, a11 - k1 * a01]]
        return self.y, self.rate


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class GrowthRateCalculator(BackgroundJob):
    job_name = "growth_rate_calculating"
    published_settings = {
        "od_filtered": {"datatype": "json", "settable": False},
        "growth_rate": {"datatype": "json", "settable": False, "unit": "h⁻¹"},
    }

    def __init__(self, unit: str, experiment: str) -> None:
        super().__init__(unit=unit, experiment=experiment)
        self.channel = config.get("growth_rate_calculating", "channel", fallback="1").strip()
        self.samples = int(_option("samples_for_od_statistics", 5))
        if self.samples < 1:
            raise ValueError("[growth_rate_calculating] samples_for_od_statistics must be >= 1")
        self.obs_std = _option("obs_std", 0.01)
        self.rate_variance = _option("rate_variance", 0.05)
        self.initial_rate_std = _option("initial_rate_std", 1.0)
        self._first: list[float] = []
        self.reference: float | None = None
        self.filter: LogODKalmanFilter | None = None
        self._last_time: float | None = None
        self._updating = threading.Lock()
        self.subscribe_and_callback(self._on_ods, f"pioreactor/{unit}/{experiment}/od_reading/ods",
                                    allow_retained=False)

    def _on_ods(self, message: Message) -> None:
        if not message.payload or self.state != self.READY:
            return  # a cleared setting, or asleep: sleeping ignores readings
        reading = json.loads(message.payload)["ods"].get(self.channel)
        if reading is None:
            return
        with self._updating:
            self._use(float(reading["od"]), str(reading["timestamp"]))

    def _use(self, od: float, timestamp: str) -> None:
        if od <= 0:
            self.logger.debug(f"skipping non-positive OD {od}")
            return
        when = _parse_time(timestamp)
        if self.reference is None:
            self._first.append(od)
            if len(self._first) < self.samples:
                return
            self.reference = sum(self._first) / len(self._first)
            self.logger.info(f"reference OD {self.reference:.5g} from the first {self.samples} readings")
            y0 = math.log(od / self.reference)
            self.filter = LogODKalmanFilter(y0, self.obs_std, self.rate_variance, self.initial_rate_std)
        else:
            assert self.filter is not None and self._last_time is not None
            dt_hours = max(0.0, when - self._last_time) / SECONDS_PER_HOUR
            self.filter.update(math.log(od / self.reference), dt_hours)
        self._last_time = when
        assert self.filter is not None
        self.od_filtered = {"od_filtered": math.exp(self.filter.y), "timestamp": timestamp}
        self.growth_rate = {"growth_rate": self.filter.rate, "timestamp": timestamp}


@click.command(name="growth_rate_calculating")
def click_growth_rate_calculating() -> None:
    """Estimate growth rate and filtered, normalised OD from od_reading."""
    job = GrowthRateCalculator(unit=get_unit_name(), experiment=get_latest_experiment_name())
    job.block_until_disconnected()
