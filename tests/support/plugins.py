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

OPTIONS_JOB = '''
import click
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.whoami import get_unit_name, get_latest_experiment_name


class Optioned(BackgroundJob):
    job_name = "optioned"
    published_settings = {
        "initial_dc": {"datatype": "float", "settable": False},
        "dry_run": {"datatype": "boolean", "settable": False},
        "fast": {"datatype": "boolean", "settable": False},
        "extra": {"datatype": "string", "settable": False},
    }

    def __init__(self, unit, experiment, initial_dc, dry_run, fast, extra):
        super().__init__(unit=unit, experiment=experiment)
        self.initial_dc, self.dry_run, self.fast, self.extra = initial_dc, dry_run, fast, extra


@click.command(name="optioned")
@click.option("--initial-dc", type=float, default=0.0)
@click.option("--dry-run", is_flag=True)
@click.option("--fast/--no-fast", default=True)
@click.argument("extra", required=False, default="")
def click_optioned(initial_dc, dry_run, fast, extra):
    """A job whose options are published as settings."""
    job = Optioned(get_unit_name(), get_latest_experiment_name(), initial_dc, dry_run, fast, extra)
    job.block_until_disconnected()
'''

CHATTY_JOB = '''
import os
import threading

import click
from pioreactor.background_jobs.base import BackgroundJob


class Chatty(BackgroundJob):
    """Acts on words dropped into its inbox file, and can log a numbered tick every `tick` s:
    lets a test make a job speak while the daemon is away, without timing anything."""

    job_name = "chatty"
    published_settings = {
        "note": {"datatype": "string", "settable": True},
        "ticks": {"datatype": "integer", "settable": False},
        "kept": {"datatype": "string", "settable": False, "persist": True},
    }

    def __init__(self, inbox, tick):
        super().__init__()
        self.inbox, self.tick = inbox, tick
        self.note, self.kept, self.ticks = "first", "kept-value", 0
        self._done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._done.wait(self.tick or 0.05):
            if self.tick:
                self.ticks += 1
                self.logger.info(f"tick {self.ticks}")
            self._read_inbox()

    def _read_inbox(self):
        try:
            with open(self.inbox) as handle:
                word = handle.read().strip()
        except (FileNotFoundError, TypeError):
            return
        self.logger.info(f"heard {word}")
        print(f"printed {word}", flush=True)  # stdout: a pipe to the daemon that started us
        self.note = word
        os.replace(self.inbox, self.inbox + ".done")

    def on_disconnected(self):
        self._done.set()


@click.command(name="chatty")
@click.option("--inbox", default=None)
@click.option("--tick", type=float, default=0.0)
def click_chatty(inbox, tick):
    """A job a test can make speak through a file."""
    job = Chatty(inbox, tick)
    job.block_until_disconnected()
'''

FLOOD_JOB = '''
import os
import threading
import time

import click
from pioreactor.background_jobs.base import BackgroundJob


class Flood(BackgroundJob):
    """Logs numbered lines "line N": `burst` = N logs N at once and then publishes `sent` (the
    lines logged so far); `--rate R` logs R a second (0: as fast as it can) from the moment the
    file `--go` exists (at once without it) until `--total` lines (0: for ever), then creates the
    file `--done`. `spin` = N sets the setting `value` to 1, 2, ... N as fast as it can."""

    job_name = "flood"
    published_settings = {
        "burst": {"datatype": "integer", "settable": True},
        "spin": {"datatype": "integer", "settable": True},
        "value": {"datatype": "integer", "settable": False},
        "sent": {"datatype": "integer", "settable": False},
    }

    def __init__(self, rate, go, total, done):
        super().__init__()
        self.burst, self.spin, self.value, self.sent = 0, 0, 0, 0
        self._count, self._lock, self._done = 0, threading.Lock(), threading.Event()
        if rate is not None:
            threading.Thread(target=self._steady, args=(rate, go, total, done), daemon=True).start()

    def _line(self):
        with self._lock:
            self._count += 1
            self.logger.info(f"line {self._count}")

    def set_burst(self, n):
        self.burst = n
        threading.Thread(target=self._burst, args=(n,), daemon=True).start()

    def _burst(self, n):
        for _ in range(n):
            self._line()
        self.sent = self._count

    def set_spin(self, n):
        self.spin = n
        threading.Thread(target=self._spin, args=(n,), daemon=True).start()

    def _spin(self, n):
        for i in range(1, n + 1):
            self.value = i

    def _steady(self, rate, go, total, done):
        while go and not os.path.exists(go) and not self._done.wait(0.005):
            pass
        began, k = time.monotonic(), 0
        while not self._done.is_set() and (not total or k < total):
            k += 1
            self._line()
            delay = began + k / rate - time.monotonic() if rate else 0
            if delay > 0:
                self._done.wait(delay)
        if done:
            open(done, "w").close()

    def on_disconnected(self):
        self._done.set()


@click.command(name="flood")
@click.option("--rate", type=float, default=None)
@click.option("--go", default=None)
@click.option("--total", type=int, default=0)
@click.option("--done", default=None)
def click_flood(rate, go, total, done):
    job = Flood(rate, go, total, done)
    job.block_until_disconnected()
'''
