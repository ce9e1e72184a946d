"""Which jobs can be started, and from where: built-in jobs, `*.py` in plugins_dir, and entry
points in the group `pioreactor.plugins`. A module attribute `click_<name>` that is a click
command is a startable job named by the command, and so is a command the module registers on
Pioreactor's `pioreactor.cli.run.run` group (`@run.command(name=...)`) while it is imported.

`python -m pioreactor.catalog --json` prints the list (pioctl jobs runs it through the daemon). A
plugin that fails to import is listed with its error and never stops the others.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import click

BUILTIN_MODULES: tuple[str, ...] = (
    "pioreactor.actions.led_intensity",
    "pioreactor.background_jobs.growth_rate_calculating",
    "pioreactor.background_jobs.od_reading",
    "pioreactor.background_jobs.stirring",
)
ENTRY_POINT_GROUP = "pioreactor.plugins"


@dataclass
class Entry:
    name: str
    source: str  # "app" for built-in jobs, the plugin's name for plugins
    origin: str  # module path, file, or entry point
    command: click.Command | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        help_text = (self.command.help or "").strip().splitlines() if self.command else []
        return {"name": self.name, "source": self.source, "origin": self.origin,
                "help": help_text[0] if help_text else "", "error": self.error}


def plugins_dir() -> Path:
    from pioreactor.config import config

    return Path(config.get("pioreactord", "plugins_dir",
                           fallback="/home/pioreactor/.pioreactor/plugins"))


def _activate_installed_plugins() -> None:
    """`pioctl plugins install`'s distributions onto sys.path (pioreactord.plugins_site)."""
    from pioreactor.config import config
    from pioreactord.plugins_site import DEFAULT_STATE_DIR, activate

    activate(config.get("pioreactord", "state_dir", fallback=DEFAULT_STATE_DIR))


def commands_of(module: ModuleType) -> Iterator[click.Command]:
    for attribute in sorted(vars(module)):
        value = getattr(module, attribute)
        if attribute.startswith("click_") and isinstance(value, click.Command):
            yield value


_registered_on_run: dict[str, list[click.Command]] = {}  # origin -> what its import added to `run`


def _commands_loaded(origin: str, loaded: Any, registered_before: set[str]) -> list[click.Command]:
    """The jobs a source gave: its `click_*` commands and what it added to the `run` group (the
    first time it was imported in this process: a second load finds the module cached)."""
    from pioreactor.cli.run import run

    added = [c for n, c in run.commands.items() if n not in registered_before]
    added = _registered_on_run.setdefault(origin, added) or added
    commands = [loaded] if isinstance(loaded, click.Command) else \
        list(loaded) if isinstance(loaded, list) else list(commands_of(loaded))
    return commands + [c for c in added if all(c is not known for known in commands)]


def _load_file(path: Path) -> ModuleType:
    name = f"pioreactor_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@functools.cache
def builtin_commands(module_name: str) -> list[click.Command]:
    """A built-in module's commands, found once (the fork server does it before forking: a job
    that looked through the module again would copy the pages of every object it touched)."""
    return list(commands_of(importlib.import_module(module_name)))


_builtin_entries: list[Entry] = []  # once every built-in module imported: see builtin_entries


def builtin_entries() -> list[Entry]:
    """The built-in jobs, looked through once per process while all of them import (the fork
    server does it before forking, so a start only reads the list)."""
    if _builtin_entries:
        return _builtin_entries
    entries = [entry for module_name in BUILTIN_MODULES for entry in _entries_from(
        "app", module_name, functools.partial(builtin_commands, module_name))]
    if not any(entry.error for entry in entries):  # else the next lookup tries the import again
        _builtin_entries.extend(entries)
    return entries


def _plugin_sources(prefer: str | None) -> Iterator[tuple[str, str, Any]]:
    """(source, origin, loader) for every place plugins come from; `prefer`'s file first, before
    the folder is even listed (a start that finds its job there lists nothing)."""
    directory = plugins_dir()
    preferred = directory / f"{prefer}.py" if prefer else None
    if preferred is not None and preferred.is_file():
        yield preferred.stem, str(preferred), lambda: _load_file(preferred)
    files = sorted(directory.glob("*.py")) if directory.is_dir() else []
    for path in files:
        if path != preferred:
            yield path.stem, str(path), lambda p=path: _load_file(p)
    _activate_installed_plugins()
    for point in entry_points(group=ENTRY_POINT_GROUP):
        yield point.name, f"entry point {point.value}", point.load


def discover(stop_at: str | None = None) -> list[Entry]:
    """Every job (or, with `stop_at`, until that job is found: a start imports no more than it must)."""
    entries: list[Entry] = []
    for entry in builtin_entries():
        entries.append(entry)
        if entry.command is not None and entry.name == stop_at:
            return entries
    for source, origin, load in _plugin_sources(prefer=stop_at):
        for entry in _entries_from(source, origin, load):
            entries.append(entry)
            if entry.command is not None and entry.name == stop_at:
                return entries
    return entries


def _entries_from(source: str, origin: str, load: Callable[[], Any]) -> Iterator[Entry]:
    """The jobs one source gives, or one entry with the error that keeps it from giving any."""
    from pioreactor.cli.run import run

    registered_before = set(run.commands)
    try:
        loaded = load()
    except BaseException as exc:  # noqa: BLE001 - SystemExit in a plugin is an error too
        line = traceback.format_exception_only(type(exc), exc)[-1].strip()
        yield Entry(name=source, source=source, origin=origin, error=line)
        return
    commands = _commands_loaded(origin, loaded, registered_before)
    broken = _bad_name(source, loaded, commands)
    if broken is not None:  # its names would break MQTT topics: listed, never started
        yield Entry(name=source, source=source, origin=origin, error=broken)
        return
    for command in commands:
        yield Entry(command.name or source, source, origin, command)


def _bad_name(source: str, loaded: Any, commands: list[click.Command]) -> str | None:
    """Why a plugin's names cannot be used (its source, a command's name, a `job_name` of a
    class it defines), checked once here with the rule of `pioreactord.names`; None if fine."""
    from pioreactord.names import BadName, check_job_name, check_source

    classes = [v for v in vars(loaded).values() if isinstance(v, type)
               and v.__module__ == loaded.__name__] \
        if source != "app" and isinstance(loaded, ModuleType) else []
    try:
        if source != "app":
            check_source(source)
        for command in commands:
            check_job_name(command.name or source)
        for cls in classes:
            if isinstance(vars(cls).get("job_name"), str):
                check_job_name(vars(cls)["job_name"])
    except BadName as exc:
        return str(exc)
    return None


def find(name: str) -> Entry | None:
    return next((e for e in discover(stop_at=name) if e.name == name and e.command), None)


def not_found_reason(name: str, entries: list[Entry]) -> str:
    """Why `name` is not a startable job: a plugin that failed to import and would have given it
    (it says so in its UI job files, or its name contains the job's), else the known jobs."""
    broken = [e for e in entries if e.error]
    for entry in broken:
        if name in _jobs_declared_by(entry) or _name_in(name, entry.source):
            return f"{name}: plugin {entry.source} failed to import: {entry.error}"
    known = sorted({e.name for e in entries if e.command})
    message = f"unknown job {name!r} (known: {', '.join(known) or 'none'})"
    if broken:
        failed = "; ".join(f"{e.source}: {e.error}" for e in broken)
        message += f"; plugins that failed to import: {failed}"
    return message


def _name_in(name: str, source: str) -> bool:
    words = source.lower().replace("-", "_").split("_")
    wanted = name.lower().split("_")
    return any(words[i:i + len(wanted)] == wanted for i in range(len(words)))


def _jobs_declared_by(entry: Entry) -> set[str]:
    """`job_name:` of the plugin's UI job descriptions (ui/contrib/jobs/*.yaml in its package),
    read without importing it."""
    module = entry.origin.removeprefix("entry point ").split(":")[0]
    if not entry.origin.startswith("entry point "):
        return set()
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return set()
    folders = list(spec.submodule_search_locations or []) if spec else []
    names = set()
    for folder in folders:
        for path in Path(folder).glob("ui/contrib/jobs/*.y*ml"):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            names.update(re.findall(r"^job_name:\s*['\"]?([A-Za-z0-9_]+)", text, re.MULTILINE))
    return names


def main() -> None:
    print(json.dumps([entry.as_json() for entry in discover()]))


if __name__ == "__main__":
    main()
