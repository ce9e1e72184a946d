"""`pioreactor.cli.run.run`: the click group plugins register startable jobs on, as in Pioreactor:

    from pioreactor.cli.run import run

    @run.command(name="air_bubbler")
    def start_air_bubbler():
        ...

A command added to `run` while a plugin is imported becomes a job of that plugin
(`pioreactor.catalog`), exactly like a module attribute `click_<name>`; `pioctl start NAME`
runs it. `python -m pioreactor.cli.run NAME ...` runs one by hand.
"""

from __future__ import annotations

import click


@click.group(name="run", short_help="run a job")
def run() -> None:
    """Run a job (built-in or a plugin's)."""


if __name__ == "__main__":
    from pioreactor.catalog import discover

    for entry in discover():
        if entry.command is not None and entry.name not in run.commands:
            run.add_command(entry.command, entry.name)
    run()
