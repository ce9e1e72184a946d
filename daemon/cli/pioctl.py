"""`pioctl`: drive pioreactord. One control call per command; nothing heavy imported up front.

Exit status (SPEC §3): 0 done; 1 refused or failed; 2 usage error; 3 the daemon cannot be reached.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
DEFAULT_TIMEOUT = 15.0


class Context:
    def __init__(self, config_path: str | None, as_json: bool) -> None:
        self.config_path, self.as_json = config_path, as_json
        self._config = None

    @property
    def config(self):
        if self._config is None:
            from pioreactord.config import Config, ConfigError

            try:
                self._config = Config.load(self.config_path)
            except ConfigError as exc:
                fail(str(exc))
        return self._config

    def call(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """One control request; exits 3 if the daemon is not there, 1 if it refused."""
        from pioreactord.client import Unreachable, call

        socket = str(self.config.control_socket)
        try:
            reply = call(socket, {"t": "call", "cmd": cmd, "args": args or {}}, timeout)
        except Unreachable as exc:
            if "within" in str(exc) and cmd not in ("ping", "status"):
                fail(f"pioreactord did not answer {cmd!r} within {timeout:g} s (still working on "
                     f"it; see `pioctl status` and `pioctl logs`)")
            click.echo(f"pioctl: pioreactord is not reachable ({exc}). Start it with "
                       f"`systemctl start pioreactord` or `pioreactord --config "
                       f"{self.config.path}`.", err=True)
            sys.exit(EXIT_UNREACHABLE)
        if not reply.get("ok"):
            if self.as_json:
                click.echo(json.dumps({"error": reply.get("error"), "code": reply.get("code")}))
            fail(str(reply.get("error")), echo=not self.as_json)
        return reply.get("result")

    def output(self, result: Any, text: str) -> None:
        click.echo(json.dumps(result, indent=None) if self.as_json else text)


def fail(message: str, echo: bool = True) -> NoReturn:
    if echo:
        click.echo(f"pioctl: {message}", err=True)
    sys.exit(EXIT_FAILED)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


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
@click.option("--timeout", type=float, default=60.0, show_default=True,
              help="seconds to wait for the job to be ready")
@click.argument("job")
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED)
@json_option
@click.pass_obj
def start(ctx: Context, timeout: float, job: str, job_args: tuple[str, ...]) -> None:
    """Start JOB; JOB_ARGS go to the job's own command. Returns once it is ready."""
    result = ctx.call("start", {"job": job, "args": list(job_args)}, timeout=timeout)
    verb = "finished" if result.get("finished") else "ready"
    ctx.output(result, f"{result['job_name']} {verb} (pid {result['pid']})")


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option("--all", "stop_all", is_flag=True, help="stop every running job")
@json_option
@click.pass_obj
def stop(ctx: Context, jobs: tuple[str, ...], stop_all: bool) -> None:
    """Stop JOBS cleanly (SIGTERM after stop_timeout, SIGKILL 2 s later)."""
    if not jobs and not stop_all:
        raise click.UsageError("name at least one job, or --all")
    result = ctx.call("stop", {"jobs": list(jobs), "all": stop_all},
                      timeout=ctx.config.stop_timeout + 5)
    lines = [f"{r['job_name']} {r['end_state']}" for r in result["stopped"]] or ["nothing to stop"]
    ctx.output(result["stopped"], "\n".join(lines))


@cli.command()
@click.argument("job")
@json_option
@click.pass_obj
def pause(ctx: Context, job: str) -> None:
    """Put JOB to sleep (state sleeping)."""
    result = ctx.call("pause", {"job": job})
    ctx.output(result, f"{job} sleeping")


@cli.command()
@click.argument("job")
@json_option
@click.pass_obj
def resume(ctx: Context, job: str) -> None:
    """Wake JOB up (state ready)."""
    result = ctx.call("resume", {"job": job})
    ctx.output(result, f"{job} ready")


@cli.command(name="set")
@click.argument("job")
@click.argument("setting")
@click.argument("value")
@json_option
@click.pass_obj
def set_(ctx: Context, job: str, setting: str, value: str) -> None:
    """Set a settable published SETTING of JOB (as MQTT /set does)."""
    result = ctx.call("set", {"job": job, "setting": setting, "value": value})
    ctx.output(result, f"{job} {setting} = {result.get('value')}")


@cli.command()
@click.argument("job", required=False)
@json_option
@click.pass_obj
def status(ctx: Context, job: str | None) -> None:
    """Running jobs: state, pid, experiment, uptime, CPU, memory, settings."""
    rows = ctx.call("status", {"job": job} if job else {})
    if ctx.as_json:
        return ctx.output(rows, "")
    if not rows:
        return click.echo("no jobs running")
    body = [[r["job_name"], r["state"], str(r["pid"]), r["experiment"], _duration(r["uptime"]),
             "-" if r.get("cpu_percent") is None else f"{r['cpu_percent']:.0f}%",
             "-" if r.get("rss_mib") is None else f"{r['rss_mib']:.1f} MiB",
             " ".join(f"{k}={v}" for k, v in sorted(r["settings"].items()))] for r in rows]
    click.echo(table(body, ["JOB", "STATE", "PID", "EXPERIMENT", "UPTIME", "CPU", "MEMORY", "SETTINGS"]))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@cli.command()
@json_option
@click.pass_obj
def jobs(ctx: Context) -> None:
    """The jobs that can be started, and where each comes from."""
    entries = ctx.call("jobs", timeout=90)
    if ctx.as_json:
        return ctx.output(entries, "")
    body = [[e["name"], e["source"], e["origin"], f"ERROR: {e['error']}" if e["error"] else e["help"]]
            for e in entries]
    click.echo(table(body, ["JOB", "SOURCE", "FROM", "ABOUT"]) if body else "no jobs found")


@cli.command()
@json_option
@click.pass_obj
def locks(ctx: Context) -> None:
    """The GPIO lock registry: held pins, their job, pid and since when."""
    rows = ctx.call("locks")
    if ctx.as_json:
        return ctx.output(rows, "")
    body = [[str(r["pin"]), r["job_name"], str(r["pid"]), r["since"]] for r in rows]
    click.echo(table(body, ["PIN", "JOB", "PID", "SINCE"]) if body else "no pins locked")


@cli.command()
@click.argument("name", required=False)
@json_option
@click.pass_obj
def experiment(ctx: Context, name: str | None) -> None:
    """Show the unit's experiment, or change it to NAME (for jobs started from then on)."""
    result = ctx.call("experiment", {"name": name} if name else {})
    ctx.output(result, result["experiment"])


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
    from pioreactord.client import Unreachable, stream
    from pioreactord.protocol import utc_timestamp

    header = {"t": "call", "cmd": "mqtt", "args": {"topics": list(topics)}}
    seen = 0
    try:
        for message, payload in stream(str(ctx.config.control_socket), header, renew_every=3.0,
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
    except Unreachable as exc:
        click.echo(f"pioctl: pioreactord is not reachable ({exc}). Start it with `systemctl start "
                   f"pioreactord` or `pioreactord --config {ctx.config.path}`.", err=True)
        sys.exit(EXIT_UNREACHABLE)
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
