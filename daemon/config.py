"""The daemon's settings: one declared record per key, and the one place that loads them.

The table `SETTINGS` feeds validation, the docs and `etc/pioreactord.ini` (`render_ini`;
tests/unit/test_config.py checks that the installed file documents exactly these keys).
Precedence lives in `resolve_config_path`: `--config`, then `$PIOREACTORD_CONFIG`, then
`/etc/pioreactord.ini`.

Any other INI section (`[stirring]`, `[PWM]`, ...) is job configuration: the daemon keeps the raw
parser for it but never interprets it, except `[PWM]`, whose channel -> name map it needs to know
which pins are outputs, and the optional `[PWM_pins]` (channel -> BCM pin, for a rewired HAT).
"""

from __future__ import annotations

import configparser
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .names import BadName, check_experiment, check_unit
from .plugins_site import read_with_plugin_defaults

DEFAULT_CONFIG_PATH = "/etc/pioreactord.ini"
CONFIG_ENV = "PIOREACTORD_CONFIG"
HARDWARE_CHOICES = ("auto", "simulated", "rpi_gpio", "pigpio")
SPAWNER_CHOICES = ("forkserver", "exec")
RESTART_CHOICES = ("no", "on-failure")
LOG_LEVELS = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or holds a bad value (the message says which)."""


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    default: str
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be greater than 0")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError(f"{text!r} is not a TCP port")
    return value


SETTINGS: tuple[Setting, ...] = (
    Setting("pioreactord", "unit", "", "unit name; empty = the host name"),
    Setting("pioreactord", "experiment", "exp1",
            "the unit's experiment at first start (later: pioctl experiment)"),
    Setting("pioreactord", "runtime_dir", "/run/pioreactord",
            "ZeroMQ sockets (control + jobs) live here"),
    Setting("pioreactord", "state_dir", "/var/lib/pioreactord",
            "anything the daemon keeps across restarts"),
    Setting("pioreactord", "plugins_dir", "/home/pioreactor/.pioreactor/plugins",
            "every *.py here is a plugin"),
    Setting("pioreactord", "hardware", "auto", "auto | simulated | rpi_gpio | pigpio",
            choices=HARDWARE_CHOICES),
    Setting("pioreactord", "stop_timeout", "10",
            "seconds a job gets to stop cleanly before SIGTERM (SIGKILL 2 s later)",
            parse=_positive_float),
    Setting("pioreactord", "spawner", "forkserver",
            "forkserver: jobs fork from a pre-imported process (fast) | exec: a fresh python each",
            parse=str.lower, choices=SPAWNER_CHOICES),
    Setting("pioreactord", "silent_job_warning", "30",
            "seconds a running job may send nothing (jobs ping every 2 s) before a WARNING says "
            "so; the job is not stopped", parse=_positive_float),
    Setting("pioreactord", "resume_jobs", "1",
            "when the daemon starts after a reboot, a power cut or systemctl stop+start, start again "
            "the jobs that were running then and that no user stopped (resume = 0 in a job's "
            "section opts it out)", parse=_bool),
    Setting("pioreactord", "hung_job_warning", "60",
            "seconds a job's callback (a setter, a state change) may run before a WARNING with the "
            "stack of every thread of the job says where it is; the job is not stopped",
            parse=_positive_float),
    Setting("mqtt", "broker_address", "localhost", "host name or address of the Mosquitto broker"),
    Setting("mqtt", "broker_port", "1883", "TCP port of the broker", parse=_port),
    Setting("mqtt", "username", "", "broker user name; empty = anonymous"),
    Setting("mqtt", "password", "", "broker password"),
    Setting("mqtt", "use_tls", "0", "1 = connect with TLS (system CA bundle)", parse=_bool),
    Setting("storage", "database", "/var/lib/pioreactord/pioreactord.sqlite",
            "the SQLite database: logs, job metadata, published settings"),
    Setting("storage", "integrity_check_interval", "3600",
            "seconds between PRAGMA quick_check runs on the database (a damaged one is renamed "
            "aside and a new one started)", parse=_positive_float),
    Setting("logging", "log_file", "/var/log/pioreactord/pioreactord.log",
            "every log line, appended; reopened when logrotate moves it"),
    Setting("logging", "console_log_level", "INFO",
            "lowest level printed on the daemon's console", choices=LOG_LEVELS),
)


@dataclass(frozen=True)
class Config:
    """The daemon's typed, frozen settings. Built once in main() and passed down."""

    path: str
    unit: str
    experiment: str
    runtime_dir: Path
    state_dir: Path
    plugins_dir: Path
    hardware: str
    stop_timeout: float
    spawner: str
    silent_job_warning: float
    resume_jobs: bool
    hung_job_warning: float
    broker_address: str
    broker_port: int
    mqtt_username: str
    mqtt_password: str
    mqtt_use_tls: bool
    database: Path
    log_file: Path
    console_log_level: str
    integrity_check_interval: float = 3600.0  # [storage]; a default so that tests may omit it
    pwm_channels: dict[str, str] = field(default_factory=dict)
    pwm_pins: dict[str, str] = field(default_factory=dict)  # [PWM_pins]: channel -> BCM pin overrides
    simulation: dict[str, str] = field(default_factory=dict)  # [simulation], for the simulator
    restart_on_failure: frozenset[str] = frozenset()  # jobs whose section says restart = on-failure
    not_resumed: frozenset[str] = frozenset()  # jobs whose section says resume = 0

    @property
    def control_socket(self) -> Path:
        return self.runtime_dir / "control.sock"

    @property
    def job_socket(self) -> Path:
        return self.runtime_dir / "jobs.sock"

    @classmethod
    def load(cls, cli_path: str | None = None) -> Config:
        path = resolve_config_path(cli_path)
        parser = read_parser(path)
        values = {f"{s.section}.{s.key}": _parse_setting(parser, s, path) for s in SETTINGS}
        return cls(
            path=path,
            unit=_named(path, "unit", check_unit, values["pioreactord.unit"] or socket.gethostname()),
            experiment=_named(path, "experiment", check_experiment,
                              values["pioreactord.experiment"]),
            runtime_dir=Path(values["pioreactord.runtime_dir"]),
            state_dir=Path(values["pioreactord.state_dir"]),
            plugins_dir=Path(values["pioreactord.plugins_dir"]),
            hardware=values["pioreactord.hardware"],
            stop_timeout=values["pioreactord.stop_timeout"],
            spawner=values["pioreactord.spawner"],
            silent_job_warning=values["pioreactord.silent_job_warning"],
            resume_jobs=values["pioreactord.resume_jobs"],
            hung_job_warning=values["pioreactord.hung_job_warning"],
            broker_address=values["mqtt.broker_address"],
            broker_port=values["mqtt.broker_port"],
            mqtt_username=values["mqtt.username"],
            mqtt_password=values["mqtt.password"],
            mqtt_use_tls=values["mqtt.use_tls"],
            database=Path(values["storage.database"]),
            integrity_check_interval=values["storage.integrity_check_interval"],
            log_file=Path(values["logging.log_file"]),
            console_log_level=values["logging.console_log_level"].upper(),
            pwm_channels=dict(parser["PWM"]) if parser.has_section("PWM") else {},
            pwm_pins=dict(parser["PWM_pins"]) if parser.has_section("PWM_pins") else {},
            simulation=dict(parser["simulation"]) if parser.has_section("simulation") else {},
            restart_on_failure=_jobs_restarted_on_failure(parser, path),
            not_resumed=_jobs_not_resumed(parser, path),
        )


def _named(path: str, key: str, check: Callable[[str], str], value: str) -> str:
    """A name that becomes a topic level (names.py): refused here, before it breaks MQTT."""
    try:
        return check(value)
    except BadName as exc:
        raise ConfigError(f"{path}: [pioreactord] {key}: {exc}") from None


def resolve_config_path(cli_path: str | None) -> str:
    """The one place config precedence is decided: --config, $PIOREACTORD_CONFIG, the default."""
    return cli_path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def read_parser(path: str) -> configparser.ConfigParser:
    """Read the INI file (over the plugins' defaults); a missing or malformed file is a ConfigError naming the path."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    try:  # installed plugins' additional_config.ini first; the file overrides them key by key
        read_with_plugin_defaults(parser, path)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist (pass --config PATH or set ${CONFIG_ENV})"
        ) from None
    except (OSError, configparser.Error) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return parser


def _jobs_restarted_on_failure(parser: configparser.ConfigParser, path: str) -> frozenset[str]:
    """SPEC §2: `restart = no | on-failure` in a job's own section."""
    jobs = set()
    for section in parser.sections():
        value = parser.get(section, "restart", fallback="no").strip().lower()
        if value not in RESTART_CHOICES:
            raise ConfigError(f"{path}: [{section}] restart = {value!r} is not one of "
                              f"{', '.join(RESTART_CHOICES)}")
        if value == "on-failure":
            jobs.add(section)
    return frozenset(jobs)


def _jobs_not_resumed(parser: configparser.ConfigParser, path: str) -> frozenset[str]:
    """SPEC §2: `resume = 0` in a job's own section opts it out of resume_jobs."""
    jobs = set()
    for section in parser.sections():
        try:
            if not _bool(parser.get(section, "resume", fallback="1")):
                jobs.add(section)
        except ValueError as exc:
            raise ConfigError(f"{path}: [{section}] resume: {exc}") from None
    return frozenset(jobs)


def _parse_setting(parser: configparser.ConfigParser, setting: Setting, path: str) -> Any:
    text = parser.get(setting.section, setting.key, fallback=setting.default).strip()
    if setting.choices and text.upper() not in {c.upper() for c in setting.choices}:
        raise ConfigError(
            f"{path}: [{setting.section}] {setting.key} = {text!r} is not one of "
            f"{', '.join(setting.choices)}"
        )
    try:
        return setting.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: [{setting.section}] {setting.key}: {exc}") from None


def render_ini(overrides: dict[str, str] | None = None) -> str:
    """The daemon's sections of an INI file, every key with its comment (the installed default)."""
    overrides = overrides or {}
    lines: list[str] = []
    section = None
    for s in SETTINGS:
        if s.section != section:
            if section is not None:
                lines.append("")
            lines.append(f"[{s.section}]")
            section = s.section
        value = overrides.get(f"{s.section}.{s.key}", s.default)
        lines.append(f"; {s.help}")
        lines.append(f"{s.key} = {value}".rstrip())
    return "\n".join(lines) + "\n"
