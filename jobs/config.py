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

from pioreactord.plugins_site import read_with_plugin_defaults

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


class _LazyConfig:
    """Reads the file on first use; `reload()` forgets it (tests, long-lived scripts)."""

    def __init__(self) -> None:
        self._loaded: JobConfig | None = None

    def reload(self) -> None:
        self._loaded = None

    def __getattr__(self, name: str) -> Any:
        if self._loaded is None:
            self._loaded = JobConfig(config_path())
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
