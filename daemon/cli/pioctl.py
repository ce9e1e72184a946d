"""`pioctl`'s click group: options, arguments and help. Each command is one call into `core`.

The everyday commands usually never get here: `fast.py` (the console script) parses their plain
forms itself and calls the same `core` functions; anything else (help, a usage error, `logs`,
`mqtt`, `plugins`) comes here.

Exit status (SPEC §3): 0 done; 1 refused or failed; 2 usage error; 3 the daemon cannot be reached.
"""

from __future__ import annotations

import json
import sys

import click

from . import core
from .core import DEFAULT_TIMEOUT, EXIT_FAILED, EXIT_USAGE, Context, fail, table  # noqa: F401 - plugins.py uses table
from .fast import START_TIMEOUT


def _late_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    obj = ctx.find_object(Context)
    if value and obj is not None:
        obj.as_json = True


json_option = click.option("--json", "late_json", is_flag=True, expose_value=False,
                           callback=_late_json, help="machine-readable output on stdout")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH",
              help="config file (default: $PIOREACTORD_CONFIG, then /etc/pioreactord.ini)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output on stdout")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Drive pioreactord: start, stop and inspect Pioreactor jobs."""
    ctx.obj = Context(config_path, as_json)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--timeout", type=float, default=START_TIMEOUT, show_default=True,
              help="seconds to wait for the job to be ready")
@click.argument("job")
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED)
@json_option
@click.pass_obj
def start(ctx: Context, timeout: float, job: str, job_args: tuple[str, ...]) -> None:
    """Start JOB; JOB_ARGS go to the job's own command. Returns once it is ready."""
    core.start(ctx, job, list(job_args), timeout)


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option("--all", "stop_all", is_flag=True, help="stop every running job except long-running ones")
@json_option
@click.pass_obj
def stop(ctx: Context, jobs: tuple[str, ...], stop_all: bool) -> None:
    """Stop JOBS cleanly (SIGTERM after stop_timeout, SIGKILL 2 s later)."""
    if not jobs and not stop_all:
        raise click.UsageError("name at least one job, or --all")
    core.stop(ctx, list(jobs), stop_all)


@cli.command()
@click.argument("job")
@json_option
@click.pass_obj
def pause(ctx: Context, job: str) -> None:
    """Put JOB to sleep (state sleeping)."""
    core.set_state(ctx, job, "sleeping")


@cli.command()
@click.argument("job")
@json_option
@click.pass_obj
def resume(ctx: Context, job: str) -> None:
    """Wake JOB up (state ready)."""
    core.set_state(ctx, job, "ready")


@cli.command(name="set")
@click.argument("job")
@click.argument("setting")
@click.argument("value")
@json_option
@click.pass_obj
def set_(ctx: Context, job: str, setting: str, value: str) -> None:
    """Set a settable published SETTING of JOB (as MQTT /set does)."""
    core.set_setting(ctx, job, setting, value)


@cli.command()
@click.argument("job", required=False)
@json_option
@click.pass_obj
def status(ctx: Context, job: str | None) -> None:
    """Broker connection and log sink, then running jobs: state, pid, experiment, uptime, CPU,
    memory, version, settings (--json: the jobs)."""
    core.status(ctx, job)


@cli.command()
@json_option
@click.pass_obj
def jobs(ctx: Context) -> None:
    """The jobs that can be started, and where each comes from."""
    core.jobs(ctx)


@cli.command()
@json_option
@click.pass_obj
def locks(ctx: Context) -> None:
    """The GPIO lock registry: held pins, their job, pid and since when."""
    core.locks(ctx)


@cli.command()
@click.argument("name", required=False)
@json_option
@click.pass_obj
def experiment(ctx: Context, name: str | None) -> None:
    """Show the unit's experiment, or change it to NAME (for jobs started from then on)."""
    core.experiment(ctx, name)


@cli.command()
@json_option
@click.pass_obj
def version(ctx: Context) -> None:
    """The client's and the running daemon's versions (and when the daemon started and exec'd)."""
    core.version(ctx)


@cli.command()
@click.option("-n", "lines", type=int, default=20, show_default=True, help="how many lines")
@click.option("-f", "follow", is_flag=True, help="keep printing new lines")
@click.option("--job", help="only this job's lines")
@click.option("--level", type=click.Choice(["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR",
                                            "CRITICAL"], case_sensitive=False),
              help="only this level and above")
@json_option
@click.pass_obj
def logs(ctx: Context, lines: int, follow: bool, job: str | None, level: str | None) -> None:
    """Log lines from the SQLite log sink (works while the daemon is down, too)."""
    from pioreactord.cli.logview import show_logs

    show_logs(ctx.config.database, lines=lines, follow=follow, job=job, level=level,
              as_json=ctx.as_json)


@cli.command()
@click.option("-t", "--topic", "topics", multiple=True, default=["#"], show_default=True,
              help="MQTT topic filter (+ and # wildcards); repeat for several")
@click.option("-n", "--count", type=int, help="exit after this many messages")
@json_option
@click.pass_obj
def mqtt(ctx: Context, topics: tuple[str, ...], count: int | None) -> None:
    """Print broker messages as `time | topic | payload` (through pioreactord; Ctrl-C ends)."""
    from pioreactord.client import Refused, TimedOut, Unreachable, stream
    from pioreactord.protocol import utc_timestamp

    header = {"t": "call", "cmd": "mqtt", "args": {"topics": list(topics)}}
    seen = 0
    try:
        for message, payload in stream(ctx.control_socket, header, renew_every=3.0,
                                       timeout=DEFAULT_TIMEOUT):
            text = (payload or b"").decode("utf-8", "replace")
            if ctx.as_json:
                click.echo(json.dumps({"time": utc_timestamp(), "topic": message["topic"],
                                       "payload": text, "retain": message.get("retain")}))
            else:
                click.echo(f"{utc_timestamp()} | {message['topic']} | {text}")
            seen += 1
            if count is not None and seen >= count:
                return
    except TimedOut as exc:
        fail(f"timed out: {exc}")
    except Unreachable as exc:
        ctx.unreachable(exc)
    except Refused as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        return


from pioreactord.cli.plugins import plugins  # noqa: E402 - the group needs the helpers above

cli.add_command(plugins)


def main() -> None:
    try:
        cli.main(prog_name="pioctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else EXIT_FAILED)
    except click.Abort:
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - never a traceback to the user
        click.echo(f"pioctl: unexpected error: {exc!r}", err=True)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
