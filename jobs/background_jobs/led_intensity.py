"""led_intensity: set LED channels and exit (`pioctl start led_intensity --A 10 --B 0`).

A short action: it registers as a job named `led_intensity` (so `pioctl status` and the logs show
it), makes one `led` request, logs each change, and goes from init straight to disconnected
(never ready), so `pioctl start` reports it as finished.
The daemon publishes the retained `leds/intensity` state.

`set_led_intensities(job, {"A": 10})` is the implementation; the SDK function
`pioreactor.actions.led_intensity.led_intensity` (written on another branch) is meant to call it.

Known limit: because it registers under one name, two led_intensity actions cannot overlap in
time: the second is refused with "already running" while the first is inside its request (a few
ms). The issue asks for no uniqueness here; that needs the daemon to accept `hw` requests from
an unregistered short action (being done on the other branch), after which this command can stop
registering.
"""

from __future__ import annotations

import click

from ..whoami import get_latest_experiment_name, get_unit_name
from ._hw import Hardware
from .base import BackgroundJob

LED_CHANNELS = ("A", "B", "C", "D")


def set_led_intensities(job: BackgroundJob, intensities: dict[str, float]) -> dict[str, float]:
    """Set each channel (A..D, 0..100) through `job`'s channel; returns all four afterwards and
    logs every change. RequestFailed (with the daemon's reason) if a value is refused."""
    wanted = {str(channel).upper(): float(value) for channel, value in intensities.items()}
    after = Hardware(job).led(wanted)
    for channel, value in wanted.items():
        job.logger.info(f"LED {channel} set to {value:g}%")
    return after


class LEDIntensity(BackgroundJob):
    job_name = "led_intensity"

    def __init__(self, intensities: dict[str, float], unit: str, experiment: str) -> None:
        super().__init__(unit=unit, experiment=experiment)
        self.intensities = set_led_intensities(self, intensities)

    def _init_finished(self) -> None:
        """A short action goes init -> disconnected and is never `ready`: pioctl says finished."""
        self.set_state(self.DISCONNECTED)


@click.command(name="led_intensity")
@click.option("--A", "a", type=click.FloatRange(0, 100), help="intensity of LED channel A (%)")
@click.option("--B", "b", type=click.FloatRange(0, 100), help="intensity of LED channel B (%)")
@click.option("--C", "c", type=click.FloatRange(0, 100), help="intensity of LED channel C (%)")
@click.option("--D", "d", type=click.FloatRange(0, 100), help="intensity of LED channel D (%)")
def click_led_intensity(a: float | None, b: float | None, c: float | None, d: float | None) -> None:
    """Set LED intensities (a short action: sets them and exits)."""
    given = {name: value for name, value in zip(LED_CHANNELS, (a, b, c, d)) if value is not None}
    if not given:
        raise click.UsageError("give at least one channel, e.g. --A 10")
    LEDIntensity(given, unit=get_unit_name(), experiment=get_latest_experiment_name())
