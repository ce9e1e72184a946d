"""`pioctl plugins install|uninstall|list`: plugin distributions for the daemon and every job.

These run in pioctl itself, as the invoking user, and need no running daemon: the next job start
and the next `pioctl jobs` see the change. The work is in pioreactord.plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any

import click

from pioreactord.cli.pioctl import EXIT_USAGE, Context, fail, json_option, table


@click.group()
def plugins() -> None:
    """Install, uninstall and list plugins (PyPI distributions, wheels, plugins_dir files)."""


@plugins.command()
@click.argument("target", metavar="NAME[==VERSION] | FILE.whl")
@json_option
@click.pass_obj
def install(ctx: Context, target: str) -> None:
    """Install a plugin and the dependencies it declares (replacing an installed version)."""
    from pioreactord.plugins import install as install_plugin
    from pioreactord.plugins import overridden_defaults

    started = time.monotonic()
    installed = _run(lambda: install_plugin(ctx.config.state_dir, target, _progress))
    took = time.monotonic() - started
    jobs = _jobs_of(ctx, installed.name)
    overridden = overridden_defaults(ctx.config.state_dir, installed.name, ctx.config.path)
    result = {**asdict(installed), "seconds": round(took, 2), "jobs": jobs,
              "overridden_defaults": overridden}
    names = ", ".join(j["name"] + (f" (ERROR: {j['error']})" if j["error"] else "") for j in jobs)
    lines = [f"installed {installed.name} {installed.version} in {took:.1f} s"
             + (f"; jobs: {names}" if names else "")]
    lines += [f"note: {ctx.config.path} overrides the plugin's default {line}" for line in overridden]
    ctx.output(result, "\n".join(lines))


@plugins.command()
@click.argument("name")
@json_option
@click.pass_obj
def uninstall(ctx: Context, name: str) -> None:
    """Remove an installed plugin (or NAME.py from plugins_dir). Running jobs keep running."""
    from pioreactord.plugins import uninstall as uninstall_plugin

    removed = _run(lambda: uninstall_plugin(ctx.config.state_dir, ctx.config.plugins_dir, name))
    ctx.output(asdict(removed), f"uninstalled {removed.name} {removed.version}".rstrip())


@plugins.command(name="list")
@json_option
@click.pass_obj
def list_(ctx: Context) -> None:
    """Installed plugins: name, version, where from, when."""
    from pioreactord.plugins import list_installed

    found = _run(lambda: list_installed(ctx.config.state_dir, ctx.config.plugins_dir))
    if ctx.as_json:
        return ctx.output([asdict(f) for f in found], "")
    body = [[f.name, f.version or "-", f.source if f.source != "plugins_dir" else f.path,
             f.installed_at or "-"] for f in found]
    click.echo(table(body, ["PLUGIN", "VERSION", "FROM", "INSTALLED"]) if body else "no plugins")


def _run(work: Any) -> Any:
    from pioreactord.plugins import PluginError, UsageError

    try:
        return work()
    except UsageError as exc:
        click.echo(f"pioctl: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except PluginError as exc:
        fail(str(exc))


def _progress(line: str) -> None:
    """pip's own lines, indented, on stderr: stdout stays the answer (and --json). The stub of
    what pioreactord provides (pioreactord.plugins.PROVIDED) is not news to the user."""
    from pioreactord.plugins import PROVIDED

    if not line.strip() or "/.stub-" in line:
        return
    for name, version in PROVIDED.items():
        line = line.replace(f" {name}-{version}", "").replace(f" {name},", "")
    click.echo(f"  {line}", err=True)


def _jobs_of(ctx: Context, name: str) -> list[dict[str, Any]]:
    """The startable jobs the new plugin brings, by the same catalog the daemon uses (a plugin
    that fails to import is listed with its error). Empty if the catalog cannot run."""
    from pioreactord.plugins import entry_point_names

    env = {**os.environ, "PIOREACTORD_CONFIG": ctx.config.path}
    try:
        out = subprocess.run([sys.executable, "-m", "pioreactor.catalog", "--json"],
                             env=env, capture_output=True, text=True, timeout=60)
        entries = json.loads(out.stdout)
    except (subprocess.SubprocessError, OSError, ValueError):
        return []
    points = entry_point_names(ctx.config.state_dir, name)
    return [{"name": e["name"], "error": e.get("error")} for e in entries if e["source"] in points]

