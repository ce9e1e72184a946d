"""A plugin as the Pioreactor docs teach it, never run as a job: the fork server's spare loads it
and runs its command's option parsing before it becomes a job (jobs/forkserver.py `rehearse_start`),
so the pages that every start's plugin import and click call copy on write are copied while the
spare waits, not during the start."""

from __future__ import annotations

import click

from pioreactor.background_jobs.base import BackgroundJob


class Rehearsal(BackgroundJob):
    job_name = "rehearsal"
    published_settings = {"value": {"datatype": "float", "settable": True, "unit": "%"}}

    def __init__(self, unit, experiment, value):
        super().__init__(unit=unit, experiment=experiment)
        self.value = value


@click.command(name="rehearsal")
@click.option("--value", type=float, default=1.0, show_default=True)
@click.option("--dry-run", is_flag=True, help="parse the options and stop (what the spare does)")
def click_rehearsal(value, dry_run):
    """Stands in for a plugin's job."""
    if not dry_run:
        raise click.UsageError("the rehearsal plugin is not a job")
    return value
