"""Where installed plugin distributions live, and how the daemon and every job see them.

`pioctl plugins install` (daemon/plugins.py) puts each distribution, with the dependencies it
declares, in a directory of its own under `{state_dir}/plugins/`:

    {state_dir}/plugins/
      pioreactor-air-bubbler -> .v-pioreactor-air-bubbler-1a2b3c   (symlink, swapped atomically)
      .v-pioreactor-air-bubbler-1a2b3c/
        site/                      a `pip install --target` directory: packages, *.dist-info
        defaults.ini               the distribution's additional_config.ini, if it has one
        install.json               name, version, where from, when

Job processes append every `site/` to sys.path (after everything else: a plugin's copy of a
library never shadows ours) before they look for entry points, so an installed plugin is seen by
the next job start and the next `pioctl jobs`, without a daemon restart. The `defaults.ini` files
are read before the main config file, which overrides them key by key.

Standard library only: the job side imports this on every start.
"""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

# Keep equal to the [pioreactord] state_dir default in config.py (a test checks).
DEFAULT_STATE_DIR = "/var/lib/pioreactord"
SITE = "site"
DEFAULTS = "defaults.ini"
RECORD = "install.json"


def plugins_root(state_dir: str | Path) -> Path:
    return Path(state_dir) / "plugins"


def installed_dirs(state_dir: str | Path) -> list[Path]:
    """The installed plugins' directories (through their symlinks), by name."""
    root = plugins_root(state_dir)
    try:
        names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    except OSError:  # nothing installed yet, or not readable: no plugins
        return []
    return [root / name for name in names if (root / name / SITE).is_dir()]


def activate(state_dir: str | Path) -> list[str]:
    """Append each installed plugin's site directory to sys.path (once); returns those added."""
    added = []
    for directory in installed_dirs(state_dir):
        entry = str(directory / SITE)
        if entry not in sys.path:
            sys.path.append(entry)
            added.append(entry)
    return added


def default_files(state_dir: str | Path) -> list[Path]:
    """The installed plugins' additional_config.ini copies, in the order they are read."""
    return [d / DEFAULTS for d in installed_dirs(state_dir) if (d / DEFAULTS).is_file()]


def state_dir_in(config_text: str) -> str:
    """[pioreactord] state_dir of a config file's text (its default when unset)."""
    probe = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    probe.read_string(config_text)
    return probe.get("pioreactord", "state_dir", fallback=DEFAULT_STATE_DIR).strip()


def read_with_plugin_defaults(parser: configparser.ConfigParser, path: str) -> None:
    """Fill `parser` with the plugins' defaults, then the config file at `path` over them, key by
    key. A defaults file that cannot be read is skipped (install checked it parses)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    for defaults in default_files(state_dir_in(text)):
        try:
            parser.read(defaults, encoding="utf-8")
        except configparser.Error:
            continue
    parser.read_string(text, source=path)
