"""`pioreactor.config.config`: the daemon's config file, as the jobs of the Pioreactor docs read it.

Lazy: nothing is read until a value is asked for (plugins call `config.getfloat(...)` at import,
in click decorators). The file is the one the daemon uses: $PIOREACTORD_CONFIG (the daemon sets it
for its jobs), else /etc/pioreactord.ini. A missing key raises an error naming the section, the
key, the file, and the line to add. `PWM_reverse` (name -> channel) is derived from `[PWM]`.
"""

from __future__ import annotations

import configparser
import os
import socket
from pathlib import Path
from typing import Any

from pioreactord.plugins_site import DEFAULT_STATE_DIR, default_files, read_with_plugin_defaults

CONFIG_ENV = "PIOREACTORD_CONFIG"
DEFAULT_PATH = "/etc/pioreactord.ini"


class MissingConfigKey(configparser.NoOptionError):
    def __init__(self, section: str, option: str, path: str) -> None:
        super().__init__(option, section)
        self.message = (f"config key [{section}] {option} is missing from {path}; add it, e.g.\n"
                        f"[{section}]\n{option} = <value>")
        self.args = (self.message,)

    def __str__(self) -> str:
        return self.message


class JobConfig(configparser.ConfigParser):
    def __init__(self, path: str) -> None:
        super().__init__(inline_comment_prefixes=(";", "#"))
        self.path = path
        try:  # installed plugins' additional_config.ini first; the file overrides them
            read_with_plugin_defaults(self, path)
        except OSError as exc:
            raise FileNotFoundError(f"cannot read the pioreactord config {path}: {exc.strerror}; "
                                    f"set ${CONFIG_ENV} to the daemon's config file") from None
        if self.has_section("PWM"):
            self["PWM_reverse"] = {name: channel for channel, name in self["PWM"].items() if name}

    def get(self, section: str, option: str, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().get(section, option, **kwargs)
        except (configparser.NoSectionError, configparser.NoOptionError):
            raise MissingConfigKey(section, option, self.path) from None


def config_path() -> str:
    return os.environ.get(CONFIG_ENV) or DEFAULT_PATH


def _file_identity(path: str) -> tuple[int, ...] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _defaults_identity(loaded: JobConfig) -> tuple[tuple[str, tuple[int, ...] | None], ...]:
    """The installed plugins' defaults files a config was built from (an install adds one)."""
    state_dir = loaded.get("pioreactord", "state_dir", fallback=DEFAULT_STATE_DIR).strip()
    return tuple((str(f), _file_identity(str(f))) for f in default_files(state_dir))


class _LazyConfig:
    """Reads the file on first use; `reload()` forgets it (tests, long-lived scripts)."""

    def __init__(self) -> None:
        self._loaded: JobConfig | None = None
        self._read: tuple[Any, ...] | None = None  # path, its identity, the defaults' identities

    def reload(self) -> None:
        self._loaded = None

    def refresh(self) -> None:
        """Forget the file unless the same path names the same file, unchanged since it was read.
        A job forked from the fork server keeps the config the server parsed: a parse costs
        about a millisecond and writes pages every job would otherwise copy."""
        path = config_path()
        loaded, read = self._loaded, self._read
        if loaded is None or read is None or read[:2] != (path, _file_identity(path)) \
                or read[1] is None or read[2] != _defaults_identity(loaded):
            self._loaded = None

    def __getattr__(self, name: str) -> Any:
        if self._loaded is None:
            path = config_path()
            identity = _file_identity(path)  # before reading: a change while reading shows later
            loaded = JobConfig(path)
            self._loaded, self._read = loaded, (path, identity, _defaults_identity(loaded))
        return getattr(self._loaded, name)

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__("__getitem__")(key)

    def __contains__(self, key: str) -> bool:
        return self.__getattr__("__contains__")(key)


config: Any = _LazyConfig()


def job_socket_path() -> str:
    """Where the daemon's job socket is, from its config (a job started by hand needs it)."""
    runtime_dir = config.get("pioreactord", "runtime_dir", fallback="/run/pioreactord")
    return str(Path(runtime_dir) / "jobs.sock")


def configured_unit() -> str:
    return config.get("pioreactord", "unit", fallback="").strip() or socket.gethostname()
