"""Drive a PWM load (an air pump, a shaker) harder as the culture grows.

The pump hangs on the PWM channel named `air_pump` in the config's [PWM] section, e.g.

    [PWM]
    4 = air_pump

    [air_pump]
    base_duty_cycle = 15
    hz = 200

Duty cycle = base duty cycle x normalised OD (from growth_rate_calculating/od_filtered), kept
within 0..100. pioreactord holds the pin's lock for this job and switches the pin off when the job
ends, however it ends (stop, crash, kill -9).

As a plugin: copy into plugins_dir, then `pioctl start air_pump --base-dc 20`.
By hand:     `python3 air_pump.py --base-dc 20`.
"""

import json

import click

from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.config import config
from pioreactor.hardware_mappings import PWM_TO_PIN
from pioreactor.utils import clamp
from pioreactor.utils.pwm import PWM
from pioreactor.whoami import get_latest_experiment_name, get_unit_name


class AirPump(BackgroundJob):
    job_name = "air_pump"
    published_settings = {"duty_cycle": {"datatype": "float", "settable": False, "unit": "%"}}

    def __init__(self, base_duty_cycle, hz, unit=None, experiment=None):
        super().__init__(unit=unit, experiment=experiment)
        self.base_duty_cycle = base_duty_cycle
        self.duty_cycle = base_duty_cycle
        self.paused_at = None
        channel = config.getint("PWM_reverse", "air_pump")
        self.pwm = PWM(PWM_TO_PIN[channel], hz)
        self.pwm.lock()  # refused, naming the holder, if another job has this pin
        self.subscribe_and_callback(
            self.follow_od, f"pioreactor/{self.unit}/{self.experiment}/growth_rate_calculating/od_filtered")

    def on_init_to_ready(self):
        self.pwm.start(self.duty_cycle)

    def follow_od(self, message):
        if self.state == self.READY:
            self.drive(json.loads(message.payload)["od_filtered"] * self.base_duty_cycle)

    def drive(self, duty_cycle):
        self.duty_cycle = clamp(0, float(duty_cycle), 100)
        self.pwm.change_duty_cycle(self.duty_cycle)

    def on_ready_to_sleeping(self):
        self.paused_at = self.duty_cycle
        self.drive(0)

    def on_sleeping_to_ready(self):
        self.drive(self.paused_at)

    def on_disconnected(self):
        self.pwm.cleanup()


@click.command(name="air_pump")
@click.option("--base-dc", type=click.FloatRange(0, 100, clamp=True),
              default=lambda: config.getfloat("air_pump", "base_duty_cycle"), show_default="[air_pump] base_duty_cycle")
@click.option("--hz", type=click.FloatRange(1, 10_000, clamp=True),
              default=lambda: config.getfloat("air_pump", "hz"), show_default="[air_pump] hz")
def click_air_pump(base_dc, hz):
    """Drive a PWM air pump in proportion to the culture's normalised OD."""
    job = AirPump(base_dc, hz, unit=get_unit_name(), experiment=get_latest_experiment_name())
    job.block_until_disconnected()


if __name__ == "__main__":
    click_air_pump()
