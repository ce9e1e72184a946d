"""od_reading: optical density from the photodiodes, every `interval` seconds.

The IR LED (`[od_reading] ir_led_channel`, "A") is switched on at start and off when the job
sleeps or ends: the photodiodes see nothing without it. Each reading takes the ADC volts of every
photodiode channel in `[od_reading] channels` (Pioreactor's "1" is the 90-degree sensor) and
publishes them as `od<channel>` and together as `ods`:

    {"ods": {"1": {"od": float, "angle": "90", "channel": "1", "timestamp": iso}}, "timestamp": iso}

`od` is the raw photodiode voltage, as Pioreactor's raw readings are (no blank subtraction, no
reference normalisation). Readings follow a fixed monotonic schedule (start + k x interval), so
they do not drift by the time a reading takes; a changed `interval` starts a new schedule at once.
"""

from __future__ import annotations

import threading
import time

import click

from ..config import config
from ..whoami import get_latest_experiment_name, get_unit_name
from ._hw import Hardware, utc_iso
from .base import BackgroundJob


def _interval_default() -> float:
    return float(config.getfloat("od_reading", "interval", fallback=5.0))


class ODReader(BackgroundJob):
    job_name = "od_reading"
    published_settings = {
        "interval": {"datatype": "float", "settable": True, "unit": "s"},
        "ods": {"datatype": "json", "settable": False},
        "od1": {"datatype": "json", "settable": False},
        "od2": {"datatype": "json", "settable": False},
    }

    def __init__(self, interval: float, unit: str, experiment: str) -> None:
        super().__init__(unit=unit, experiment=experiment)
        from pioreactord.hardware.pins import PD_CHANNEL_TO_ADC

        self._check_interval(interval)
        self.interval = float(interval)
        names = config.get("od_reading", "channels", fallback="1").replace(",", " ").split()
        unknown = [c for c in names if c not in PD_CHANNEL_TO_ADC]
        if unknown or not names:
            raise ValueError(f"[od_reading] channels = {' '.join(names)!r}: known channels are "
                             f"{', '.join(PD_CHANNEL_TO_ADC)}")
        self.channels = {name: PD_CHANNEL_TO_ADC[name] for name in names}
        self.angle = config.get("od_reading", "angle", fallback="90").strip()
        self.ir_led = config.get("od_reading", "ir_led_channel", fallback="A").strip().upper()
        self.ir_intensity = float(config.getfloat("od_reading", "ir_led_intensity", fallback=100))
        self.hw = Hardware(self)
        self._reading = threading.Lock()  # the loop vs. the state hooks
        self._active = False
        self._stop, self._reschedule = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="od-reading-loop", daemon=True)
        self._activate()
        self._thread.start()

    @staticmethod
    def _check_interval(value: float) -> None:
        if not value > 0:
            raise ValueError(f"interval must be > 0 seconds, not {value:g}")

    def set_interval(self, value: float) -> None:
        self._check_interval(value)
        self.interval = float(value)
        self._reschedule.set()

    # --- the reading loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._reschedule.clear()
            interval, start, k = self.interval, time.monotonic(), 0
            while not (self._stop.is_set() or self._reschedule.is_set()):
                self._read_once()
                k += 1
                self._wait_until(start + k * interval)

    def _wait_until(self, deadline: float) -> None:
        while not (self._stop.is_set() or self._reschedule.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._reschedule.wait(min(left, 0.5))

    def _read_once(self) -> None:
        with self._reading:  # published under the lock too: nothing follows `sleeping` out
            if not self._active:
                return
            try:
                ods = {name: self._reading_of(name, adc) for name, adc in self.channels.items()}
            except Exception as exc:  # noqa: BLE001 - report, keep reading
                self.logger.error(f"OD reading failed: {exc}")
                return
            for name, reading in ods.items():
                setattr(self, f"od{name}", reading)
            self.ods = {"ods": ods, "timestamp": next(iter(ods.values()))["timestamp"]}

    def _reading_of(self, name: str, adc: int) -> dict:
        volts = self.hw.adc(adc)
        return {"od": volts, "angle": self.angle, "channel": name, "timestamp": utc_iso()}

    # --- states --------------------------------------------------------------------------------
    def _activate(self) -> None:
        with self._reading:
            if self.ir_led:
                self.hw.led({self.ir_led: self.ir_intensity})
            self._active = True

    def _deactivate(self) -> None:
        with self._reading:
            self._active = False
            if self.ir_led:
                self.hw.led({self.ir_led: 0})

    def on_ready_to_sleeping(self) -> None:
        self._deactivate()

    def on_sleeping_to_ready(self) -> None:
        self._activate()
        self._reschedule.set()  # first reading now, not at the old schedule's next slot

    def on_disconnected(self) -> None:
        if not hasattr(self, "_thread"):  # failed before the loop existed
            return
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._deactivate()


@click.command(name="od_reading")
@click.option("--interval", type=float, default=None,
              help="seconds between readings (default: [od_reading] interval)")
def click_od_reading(interval: float | None) -> None:
    """Read optical density from the photodiodes every INTERVAL seconds."""
    if interval is None:
        interval = _interval_default()
    job = ODReader(interval, unit=get_unit_name(), experiment=get_latest_experiment_name())
    job.block_until_disconnected()
