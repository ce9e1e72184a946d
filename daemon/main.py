"""`pioreactord`: parse arguments, load the config, build the daemon, run it.

Exit statuses: 0 clean stop; 1 could not start (the message says why); 2 usage (click);
78 configuration error (the unit's RestartPreventExitStatus: retrying cannot help).
"""

from __future__ import annotations

import sys

import click

from . import console, deferred
from .config import Config, ConfigError
from .protocol import EXIT_UNKNOWN_JOB as EXIT_CONFIG  # 78, EX_CONFIG: systemd must not retry


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH",
              help="config file (default: $PIOREACTORD_CONFIG, then /etc/pioreactord.ini)")
def main(config_path: str | None) -> None:
    """Supervise Pioreactor jobs: MQTT, the SQLite log sink and GPIO locks in one process."""
    console.guard_std_streams()  # a closed stdout/stderr (tee gone, terminal closed) is harmless
    try:
        config = Config.load(config_path)
    except ConfigError as exc:
        print(f"pioreactord: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    deferred.defer_unused_modules(tls=config.mqtt_use_tls)  # before structlog and paho
    from .arbiter import Daemon, DaemonAlreadyRunning  # heavy imports after argument checks
    from .dbfile import StorageError
    from .hardware import (
        HardwareError,
        SimulationParams,
        open_backend,
        pin_roles_from_pwm_section,
        seed_from_section,
    )
    from .hardware.pins import pwm_to_pin_from_section

    warnings: list[str] = []  # logged by the daemon once its log sink is up
    notes: list[str] = []  # the same, at INFO
    try:
        simulation = config.simulation
        backend = open_backend(config.hardware, warn=warnings.append, info=notes.append,
                               pin_roles=pin_roles_from_pwm_section(
                                   config.pwm_channels, pwm_to_pin_from_section(config.pwm_pins)),
                               seed=seed_from_section(simulation),
                               simulation=SimulationParams.from_section(simulation))
        daemon = Daemon(config, backend=backend, startup_warnings=warnings, startup_notes=notes)
    except ValueError as exc:  # a bad [simulation] value
        print(f"pioreactord: {config.path}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except StorageError as exc:  # a read-only or forbidden state_dir/database: exit 78
        print(f"pioreactord: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG if exc.is_config else 1)
    except (DaemonAlreadyRunning, HardwareError, OSError) as exc:
        raise SystemExit(f"pioreactord: cannot start: {exc}") from None
    import structlog

    console_log = structlog.get_logger("pioreactord.console")
    console.report_to(lambda message: daemon.loop.post(lambda: console_log.warning(message)))
    sys.exit(daemon.run())


if __name__ == "__main__":
    main()
