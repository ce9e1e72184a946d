"""The example jobs of the seed documents (../shared/seeds/), copied verbatim.

000 is the recap of `motor_driver.py` plus the click command "at the bottom of the file"; 001 is
the later version of both examples (its text lost the indentation, restored here, nothing else).
"""

# seed 000: cleanup in on_disconnect, PWM started in __init__.
MOTOR_DRIVER_000 = '''# -*- coding: utf-8 -*-
import json

from pioreactor.config import config
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.hardware_mappings import PWM_TO_PIN
from pioreactor.utils.pwm import PWM
from pioreactor.utils import clamp


class MotorDriver(BackgroundJob):

    published_settings = {
        "duty_cycle": {"datatype": "float", "settable": False, "unit": "%"},
    }
    _previous_duty_cycle: None

    def __init__(self, hz, initial_duty_cycle, unit, experiment, **kwargs):
        super().__init__(job_name="motor_driver", unit=unit, experiment=experiment)
        self.hz = hz
        self._initial_duty_cycle = initial_duty_cycle
        self.duty_cycle = initial_duty_cycle

        self.pwm_pin = PWM_TO_PIN[config.getint("PWM_reverse", "motor_driver")]

        self.pwm = PWM(self.pwm_pin, self.hz)
        self.pwm.lock()
        self.pwm.start(self.duty_cycle)

        self.start_passive_listeners()

    def update_duty_cycle_by_normalized_od(self, message):
        payload = json.loads(message.payload)

        if self.state == self.READY:
            self.set_duty_cycle(payload["od_filtered"] * self._initial_duty_cycle)

    def set_duty_cycle(self, new_duty_cycle):
        self.duty_cycle = clamp(0, float(new_duty_cycle), 100)
        self.pwm.change_duty_cycle(self.duty_cycle)
        self.logger.debug(f"new dc: {self.duty_cycle}")

    def start_passive_listeners(self):
        self.logger.debug("Listening for od_filtered topics")
        self.subscribe_and_callback(
            self.update_duty_cycle_by_normalized_od,
            f"pioreactor/{self.unit}/{self.experiment}/growth_rate_calculating/od_filtered",
        )

    def on_ready_to_sleeping(self):
        self._previous_duty_cycle = self.duty_cycle
        self.set_duty_cycle(0)

    def on_sleeping_to_ready(self):
        self.set_duty_cycle(self._previous_duty_cycle)

    def on_disconnect(self):
        self.logger.debug("disconnecting... will clean up PWM")
        self.pwm.cleanup()
'''

CLICK_000 = '''
import click

@click.command(name="motor_driver")
@click.option(
    "--initial-dc",
    default=config.getfloat("motor_driver", "initial_duty_cycle"),
    show_default=True,
    type=click.FloatRange(0, 100, clamp=True),
)
@click.option(
    "--hz",
    default=config.getfloat("motor_driver", "hz"),
    show_default=True,
    type=click.FloatRange(1, 10_000, clamp=True),
)
def click_motor_driver(initial_dc, hz):
    """
    Start the external motor
    """
    from pioreactor.whoami import get_unit_name, get_latest_experiment_name

    job = MotorDriver(
        hz=hz,
        initial_duty_cycle=initial_dc,
        unit=get_unit_name(),
        experiment=get_latest_experiment_name(),
    )
    job.block_until_disconnected()
'''

MOTOR_DRIVER_000_PLUGIN = MOTOR_DRIVER_000 + CLICK_000

# seed 001: PWM started in on_init_to_ready, cleanup in on_disconnected.
MOTOR_DRIVER_001 = '''# -*- coding: utf-8 -*-
import json

from pioreactor.config import config
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.hardware_mappings import PWM_TO_PIN
from pioreactor.utils.pwm import PWM
from pioreactor.utils import clamp


class MotorDriver(BackgroundJob):

    published_settings = {
        "duty_cycle": {"datatype": "float", "settable": False, "unit": "%"},
    }
    _previous_duty_cycle: None

    def __init__(self, hz, initial_duty_cycle, unit, experiment, **kwargs):
        super().__init__(job_name="motor_driver", unit=unit, experiment=experiment)
        self.hz = hz
        self._initial_duty_cycle = initial_duty_cycle
        self.duty_cycle = initial_duty_cycle

        self.pwm_pin = PWM_TO_PIN[config.getint("PWM_reverse", "motor_driver")]

        self.pwm = PWM(self.pwm_pin, self.hz)
        self.pwm.lock()

        self.start_passive_listeners()

    def update_duty_cycle_by_normalized_od(self, message):
        payload = json.loads(message.payload)

        if self.state == self.READY:
            self.set_duty_cycle(payload["od_filtered"] * self._initial_duty_cycle)

    def set_duty_cycle(self, new_duty_cycle):
        self.duty_cycle = clamp(0, float(new_duty_cycle), 100)
        self.pwm.change_duty_cycle(self.duty_cycle)
        self.logger.debug(f"new dc: {self.duty_cycle}")

    def start_passive_listeners(self):
        self.logger.debug("Listening for od_filtered topics")
        self.subscribe_and_callback(
            self.update_duty_cycle_by_normalized_od,
            f"pioreactor/{self.unit}/{self.experiment}/growth_rate_calculating/od_filtered",
        )

    def on_init_to_ready(self):
        self.pwm.start(self.duty_cycle)

    def on_ready_to_sleeping(self):
        self._previous_duty_cycle = self.duty_cycle
        self.set_duty_cycle(0)

    def on_sleeping_to_ready(self):
        self.set_duty_cycle(self._previous_duty_cycle)

    def on_disconnected(self):
        self.logger.debug("disconnecting... will clean up PWM")
        self.pwm.cleanup()
'''

MOTOR_DRIVER_001_PLUGIN = MOTOR_DRIVER_001 + CLICK_000

# seed 001, introductory example, final version (with `job.set_intensity(10)`).
INTRO_JOB = '''from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.actions.led_intensity import led_intensity

class IntroJob(BackgroundJob):

    published_settings = {
        'intensity': {'datatype': float, "unit": "%", "settable": True}
    }
    intensity = 0
    LED_channel = "A"

    def __init__(self, unit, experiment):
        super().__init__(job_name="intro_job", unit=unit, experiment=experiment)

    def set_intensity(self, intensity):
        self.intensity = intensity
        led_intensity(channels=self.LED_channel, intensities=self.intensity)

    def on_disconnected(self):
        self.set_intensity(0)

if __name__ == "__main__":
    from pioreactor.whoami import get_unit_name
    from pioreactor.whoami import get_latest_experiment_name

    job = IntroJob(unit=get_unit_name(), experiment=get_latest_experiment_name())
    job.set_intensity(10)

    job.block_until_disconnected()
'''

# Not a seed: runs the seed's click command by hand (`python3 run_motor_driver.py --initial-dc 7`),
# importing motor_driver.py from the same folder unmodified.
RUN_MOTOR_DRIVER_BY_HAND = '''
import sys
sys.path.insert(0, __import__("os").path.dirname(__file__))
from motor_driver import click_motor_driver
click_motor_driver()
'''

MOTOR_CONFIG = """[motor_driver]
initial_duty_cycle = 5
hz = 100
"""

# Holds pin 13 (PWM channel 2, the test config's motor_driver): the lock-conflict tests.
PIN_HOLDER = '''
import click
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.hardware_mappings import PWM_TO_PIN
from pioreactor.utils.pwm import PWM


class Holder(BackgroundJob):
    job_name = "holder"

    def __init__(self):
        super().__init__()
        self.pwm = PWM(PWM_TO_PIN["2"], 50)
        self.pwm.lock()
        self.pwm.start(42)

    def on_disconnected(self):
        self.pwm.cleanup()


@click.command(name="holder")
def click_holder():
    """Locks PWM channel 2 and drives it at 42 %."""
    Holder().block_until_disconnected()
'''

# The old paho surface: job.pub_client / job.sub_client through the daemon, or a clear error.
OLD_CLIENTS = '''
import click
from pioreactor.background_jobs.base import BackgroundJob


class OldClients(BackgroundJob):
    job_name = "old_clients"

    def __init__(self):
        super().__init__()
        self.sub_client.on_message = self.echo
        self.sub_client.subscribe(f"pioreactor/{self.unit}/{self.experiment}/old_clients/ping")
        try:
            self.pub_client.loop_start()
        except AttributeError as exc:
            self.pub_client.publish(f"pioreactor/{self.unit}/{self.experiment}/old_clients/error", str(exc))

    def echo(self, client, userdata, message):
        self.pub_client.publish(f"pioreactor/{self.unit}/{self.experiment}/old_clients/pong",
                                message.payload, qos=1, retain=False)


@click.command(name="old_clients")
def click_old_clients():
    """Uses pub_client / sub_client the paho way."""
    OldClients().block_until_disconnected()
'''
