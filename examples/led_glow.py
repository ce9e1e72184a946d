"""A first job: keep one LED channel at a settable intensity, and switch it off when the job ends.

As a plugin: copy this file into plugins_dir, then `pioctl start led_glow --intensity 15`.
By hand:     `python3 led_glow.py --intensity 15` (pioreactord must be running).
Change it while it runs: `pioctl set led_glow intensity 40`, or publish 40 to
`pioreactor/<unit>/<experiment>/led_glow/intensity/set`. Watch it: `pioctl mqtt -t 'pioreactor/+/+/led_glow/#'`.
"""

import click

from pioreactor.actions.led_intensity import led_intensity
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.whoami import get_latest_experiment_name, get_unit_name


class LedGlow(BackgroundJob):
    job_name = "led_glow"
    published_settings = {"intensity": {"datatype": "float", "unit": "%", "settable": True}}

    def __init__(self, intensity, channel="B", unit=None, experiment=None):
        super().__init__(unit=unit, experiment=experiment)
        self.channel = channel
        self.set_intensity(intensity)

    def set_intensity(self, intensity):
        """Called for every `/set` and `pioctl set`; the assignment publishes the new value."""
        led_intensity({self.channel: intensity})
        self.intensity = intensity

    def on_disconnected(self):
        led_intensity({self.channel: 0})


@click.command(name="led_glow")
@click.option("--intensity", type=click.FloatRange(0, 100), default=10, show_default=True)
@click.option("--channel", type=click.Choice(["A", "B", "C", "D"]), default="B", show_default=True)
def click_led_glow(intensity, channel):
    """Keep one LED channel lit at a settable intensity."""
    job = LedGlow(intensity, channel, unit=get_unit_name(), experiment=get_latest_experiment_name())
    job.block_until_disconnected()


if __name__ == "__main__":
    click_led_glow()
