"""Plugins used by the integration tests, written the way the Pioreactor docs teach."""

SETTINGS_JOB = '''
import click
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.whoami import get_unit_name, get_latest_experiment_name


class Tester(BackgroundJob):
    job_name = "tester"
    published_settings = {
        "rate": {"datatype": "float", "settable": True, "unit": "mL"},
        "count": {"datatype": "integer", "settable": True},
        "label": {"datatype": "string", "settable": True},
        "enabled": {"datatype": "boolean", "settable": True},
        "config": {"datatype": "json", "settable": True},
        "measured": {"datatype": "float", "settable": False},
        "kept": {"datatype": "string", "settable": False, "persist": True},
        "hooked": {"datatype": "float", "settable": True},
    }
    rate = 1.5

    def __init__(self, unit, experiment, fail=False):
        super().__init__(unit=unit, experiment=experiment)
        if fail:
            raise RuntimeError("tester refuses to start: fail requested")
        self.count = 3
        self.measured = 0.5
        self.kept = "kept-value"
        self.hooked = 0.0
        self.hook_calls = []

    def set_hooked(self, value):
        self.hooked = value * 2

    def on_ready_to_sleeping(self):
        self.logger.notice("going to sleep")

    def on_sleeping_to_ready(self):
        self.logger.info("waking up")

    def on_disconnected(self):
        self.logger.info("cleaning up tester")


@click.command(name="tester")
@click.option("--fail", is_flag=True)
def click_tester(fail):
    """A job with a setting of every datatype."""
    job = Tester(unit=get_unit_name(), experiment=get_latest_experiment_name(), fail=fail)
    job.block_until_disconnected()
'''

STUBBORN_JOB = '''
import signal, time
import click
from pioreactor.background_jobs.base import BackgroundJob


class Stubborn(BackgroundJob):
    job_name = "stubborn"

    def on_disconnected(self):
        time.sleep(3600)  # never finishes cleaning up: the daemon must escalate


@click.command(name="stubborn")
def click_stubborn():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    job = Stubborn()
    job.block_until_disconnected()
'''

BROKEN_PLUGIN = '''
import this_module_does_not_exist
'''
