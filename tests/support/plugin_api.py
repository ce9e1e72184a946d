"""Plugins written against Pioreactor's plugin API the way the published plugins use it
(pioreactor-air-bubbler 0.11, pioreactor-relay-plugin 0.8, pioreactor-logs2slack 0.5): our own
code in their shape, so the integration tests need no network."""

BUBBLER = '''
import click
from pioreactor.background_jobs.base import BackgroundJobWithDodgingContrib
from pioreactor.cli.run import run
from pioreactor.config import config
from pioreactor.hardware import get_pwm_to_pin_map
from pioreactor.utils import clamp
from pioreactor.utils.pwm import PWM
from pioreactor.whoami import get_assigned_experiment_name, get_unit_name


class Bubbler(BackgroundJobWithDodgingContrib):
    job_name = "bubbler"
    published_settings = {"duty_cycle": {"settable": True, "unit": "%", "datatype": "float"}}

    def __init__(self, unit, experiment, duty_cycle, hertz=60, enable_dodging_od=False):
        super().__init__(plugin_name="bubbler_plugin", unit=unit, experiment=experiment,
                         enable_dodging_od=enable_dodging_od)
        self.pin = get_pwm_to_pin_map()[config.get("PWM_reverse", "bubbler")]
        self.duty_cycle = duty_cycle
        self.pwm = PWM(self.pin, hertz, unit=self.unit, experiment=self.experiment,
                       pub_client=self.pub_client)
        self.pwm.lock()
        self.pwm.start(0)

    def on_disconnected(self):
        self.stop_pumping()
        self.pwm.clean_up()

    def stop_pumping(self):
        if hasattr(self, "pwm"):
            self.pwm.change_duty_cycle(0)

    def start_pumping(self):
        self.pwm.change_duty_cycle(self.duty_cycle)

    def on_sleeping(self):
        self.stop_pumping()

    def on_sleeping_to_ready(self):
        self.start_pumping()

    def set_duty_cycle(self, value):
        self.duty_cycle = clamp(0, round(float(value)), 100)
        self.pwm.change_duty_cycle(self.duty_cycle)

    def action_to_do_before_od_reading(self):
        self.stop_pumping()

    def action_to_do_after_od_reading(self):
        self.start_pumping()

    def initialize_continuous_operation(self):
        self.start_pumping()

    def initialize_dodging_operation(self):
        self.stop_pumping()


@run.command(name="bubbler")
def start_bubbler():
    """Bubble air, dodging OD readings."""
    unit = get_unit_name()
    job = Bubbler(unit=unit, experiment=get_assigned_experiment_name(unit),
                  duty_cycle=config.getfloat("bubbler.config", "duty_cycle"),
                  hertz=config.getfloat("bubbler.config", "hertz"),
                  enable_dodging_od=config.getboolean("bubbler.config", "enable_dodging_od",
                                                      fallback="false"))
    job.start_pumping()
    job.block_until_disconnected()
'''

BUBBLER_INI = """
[bubbler.config]
duty_cycle = 10
hertz = 200
pre_delay_duration = 0.5
post_delay_duration = 0.3
enable_dodging_od = 1
"""

RESUBSCRIBER = '''
import click
from pioreactor.background_jobs.base import BackgroundJobContrib
from pioreactor.whoami import get_unit_name, get_latest_experiment_name


class Resubscriber(BackgroundJobContrib):
    job_name = "resubscriber"
    published_settings = {"heard": {"datatype": "string", "settable": False}}

    def __init__(self, unit, experiment):
        super().__init__(unit=unit, experiment=experiment, plugin_name="resub_plugin")
        topic = f"pioreactor/{self.unit}/{self.experiment}/resubscriber/ping"
        self.subscribe_and_callback(lambda m: self._heard("first"), topic)
        self.subscribe_and_callback(lambda m: self._heard("second"), topic)  # replaces the first
        self.logger.notice("listening")

    def _heard(self, which):
        self.heard = f"{which}:{getattr(self, 'heard', '')}"


@click.command(name="resubscriber")
def click_resubscriber():
    Resubscriber(unit=get_unit_name(), experiment=get_latest_experiment_name()).block_until_disconnected()
'''

FORWARDER = '''
import json
import logging

import click
from pioreactor.background_jobs.base import LongRunningBackgroundJobContrib
from pioreactor.config import config
from pioreactor.mureq import post
from pioreactor.types import MQTTMessage
from pioreactor.whoami import UNIVERSAL_EXPERIMENT, get_unit_name


class Forwarder(LongRunningBackgroundJobContrib):
    job_name = "forwarder"

    def __init__(self, unit, experiment):
        super().__init__(unit=unit, experiment=experiment, plugin_name="forwarder_plugin")
        self.url = config.get("forwarder", "webhook_url")
        self.level = config.get("forwarder", "log_level", fallback="INFO")
        self.subscribe_and_callback(self.forward, "pioreactor/+/+/logs/#")

    def forward(self, msg: MQTTMessage):
        payload = json.loads(msg.payload)
        if getattr(logging, self.level) > getattr(logging, payload["level"]):
            return
        if payload["task"] == self.job_name:
            return
        unit = msg.topic.split("/")[1]
        text = f"[{payload['level']}] [{unit}] [{payload['task']}] {payload['message']}"
        post(self.url, json={"text": text}).raise_for_status()


@click.command(name="forwarder")
def click_forwarder():
    Forwarder(unit=get_unit_name(), experiment=UNIVERSAL_EXPERIMENT).block_until_disconnected()
'''

UNIVERSAL_BY_HAND = '''
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.whoami import UNIVERSAL_EXPERIMENT, get_unit_name


class Everywhere(BackgroundJob):
    job_name = "everywhere"
    published_settings = {"note": {"datatype": "string", "settable": True}}

    def __init__(self):
        super().__init__(unit=get_unit_name(), experiment=UNIVERSAL_EXPERIMENT)
        self.note = "hi"


if __name__ == "__main__":
    Everywhere().block_until_disconnected()
'''

BROKEN_BUBBLER = '''
from pioreactor.background_jobs.base import BackgroundJobWithDodgingContribThatIsNot
'''
