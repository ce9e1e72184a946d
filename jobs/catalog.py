"""Which jobs can be started, and from where: built-in jobs, `*.py` in plugins_dir, and entry
points in the group `pioreactor.plugins`. A module attribute `click_<name>` that is a click
command is a startable job named by the command.

`python -m pioreactor.catalog --json` prints the list (pioctl jobs runs it through the daemon). A
plugin that fails to import is listed with its error and never stops the others.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import sys
import traceback
from collections.abc import Iterator
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


def _sources(prefer: str | None) -> Iterator[tuple[str, str, Any]]:
    """(source, origin, loader) for every place jobs come from; `prefer`'s file first, before
    the folder is even listed (a start that finds its job there lists nothing)."""
    for module_name in BUILTIN_MODULES:
        yield "app", module_name, lambda m=module_name: builtin_commands(m)
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
    for source, origin, load in _sources(prefer=stop_at):
        try:
            loaded = load()
        except BaseException as exc:  # noqa: BLE001 - SystemExit in a plugin is an error too
            line = traceback.format_exception_only(type(exc), exc)[-1].strip()
            entries.append(Entry(name=source, source=source, origin=origin, error=line))
            continue
        commands = [loaded] if isinstance(loaded, click.Command) else \
            loaded if isinstance(loaded, list) else list(commands_of(loaded))
        for command in commands:
            entries.append(Entry(command.name or source, source, origin, command))
            if command.name == stop_at:
                return entries
    return entries


def find(name: str) -> Entry | None:
    return next((e for e in discover(stop_at=name) if e.name == name and e.command), None)


def main() -> None:
    print(json.dumps([entry.as_json() for entry in discover()]))


if __name__ == "__main__":
    main()
