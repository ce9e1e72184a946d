"""Installed plugins' defaults under the main config, and their place on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pioreactord import config as daemon_config
from pioreactord import plugins_site
from pioreactord.plugins import UsageError, normalize, parse_request


def _install_fake(state: Path, name: str, defaults: str | None) -> Path:
    """What `pioctl plugins install` leaves: a symlink to a version dir with site/ and defaults."""
    root = state / "plugins"
    version = root / f".v-{name}-abc123"
    (version / "site").mkdir(parents=True)
    if defaults is not None:
        (version / "defaults.ini").write_text(defaults)
    (root / name).symlink_to(version.name)
    return version


@pytest.fixture
def main_config(tmp_path) -> Path:
    path = tmp_path / "pioreactord.ini"
    path.write_text(f"[pioreactord]\nstate_dir = {tmp_path / 'state'}\n"
                    "[PWM]\n1 = stirring\n4 = relay\n[relay.config]\nstart_on = 0\n")
    return path


def test_defaults_under_main_config_key_by_key(tmp_path, main_config, monkeypatch):
    _install_fake(tmp_path / "state", "pioreactor-air-bubbler",
                  "[PWM]\n3 = air_bubbler\n[air_bubbler.config]\nduty_cycle = 10\n")
    _install_fake(tmp_path / "state", "pioreactor-relay-plugin",
                  "[PWM]\n3 = relay\n[relay.config]\nstart_on = 1\npre_delay_duration = 1\n")
    from pioreactor.config import JobConfig

    config = JobConfig(str(main_config))
    # both plugins name channel 3: the one whose name sorts last wins (the main file decides)
    assert dict(config["PWM"]) == {"1": "stirring", "3": "relay", "4": "relay"}
    assert config.get("relay.config", "start_on") == "0"  # the main file's value
    assert config.get("relay.config", "pre_delay_duration") == "1"  # the plugin's default
    assert config.getfloat("air_bubbler.config", "duty_cycle") == 10
    assert config["PWM_reverse"]["stirring"] == "1"

    daemon = daemon_config.Config.load(str(main_config))
    assert daemon.pwm_channels == {"1": "stirring", "3": "relay", "4": "relay"}


def test_a_broken_defaults_file_is_skipped(tmp_path, main_config):
    _install_fake(tmp_path / "state", "broken", "[PWM\n3 = x\n")
    from pioreactor.config import JobConfig

    assert dict(JobConfig(str(main_config))["PWM"]) == {"1": "stirring", "4": "relay"}


def test_activate_appends_each_site_once_after_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    version = _install_fake(tmp_path, "pioreactor-relay-plugin", None)
    (tmp_path / "plugins" / ".v-stale-000000" / "site").mkdir(parents=True)  # hidden: not a plugin
    first = plugins_site.activate(tmp_path)
    assert first == [str(tmp_path / "plugins" / "pioreactor-relay-plugin" / "site")]
    assert sys.path[-1] == first[0] and Path(sys.path[-1]).resolve() == (version / "site")
    assert plugins_site.activate(tmp_path) == []


def test_nothing_installed_is_no_plugins(tmp_path):
    assert plugins_site.installed_dirs(tmp_path / "missing") == []
    assert plugins_site.default_files(tmp_path / "missing") == []


def test_state_dir_default_matches_the_daemon_setting():
    setting = next(s for s in daemon_config.SETTINGS if s.key == "state_dir")
    assert setting.default == plugins_site.DEFAULT_STATE_DIR


@pytest.mark.parametrize("text, name, argument", [
    ("pioreactor-air-bubbler", "pioreactor-air-bubbler", "pioreactor-air-bubbler"),
    ("pioreactor_relay_plugin==0.8.1", "pioreactor-relay-plugin", "pioreactor_relay_plugin==0.8.1"),
    ("Pioreactor.Air_Bubbler==0.11.0", "pioreactor-air-bubbler", "Pioreactor.Air_Bubbler==0.11.0"),
])
def test_requests(text, name, argument):
    request = parse_request(text)
    assert (request.name, request.pip_argument, request.source) == (name, argument, "PyPI")


@pytest.mark.parametrize("text", ["foo>=1", "foo bar", "-e foo", "foo==", "../x.tar.gz", "x-1.whl"])
def test_bad_requests(text):
    with pytest.raises(UsageError):
        parse_request(text)


def test_wheel_request(tmp_path):
    wheel = tmp_path / "pioreactor_relay_plugin-0.8.1-py3-none-any.whl"
    wheel.write_bytes(b"")
    request = parse_request(str(wheel))
    assert (request.name, request.wheel, request.source) == (
        "pioreactor-relay-plugin", wheel, f"wheel {wheel}")
    assert normalize("A__b.C") == "a-b-c"


def test_pip_from_debians_wheel_when_python_has_no_pip(tmp_path, monkeypatch):
    import importlib.util

    from pioreactord import plugins

    (tmp_path / "pip-23.0.1-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "pip-25.1.1-py3-none-any.whl").write_bytes(b"")
    monkeypatch.setattr(plugins, "PIP_WHEELS", str(tmp_path))
    assert plugins._pip_command()[1:] == ["-m", "pip"]  # this venv has pip
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert plugins._pip_command()[1:] == [f"{tmp_path}/pip-25.1.1-py3-none-any.whl/pip"]
