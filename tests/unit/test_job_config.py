"""A job's config: parsed once and kept while the file is unchanged (what a forked job inherits)."""

from __future__ import annotations

import os

import pytest

from pioreactor.config import CONFIG_ENV, _LazyConfig


@pytest.fixture
def ini(tmp_path, monkeypatch):
    path = tmp_path / "pioreactord.ini"
    path.write_text("[od_reading]\ninterval = 5\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return path


def test_refresh_keeps_an_unchanged_file(ini):
    config = _LazyConfig()
    config.sections()
    parsed = config._loaded
    config.refresh()
    assert config._loaded is parsed
    assert config.get("od_reading", "interval") == "5"


def test_refresh_rereads_an_edited_file(ini):
    config = _LazyConfig()
    assert config.get("od_reading", "interval") == "5"
    stat = ini.stat()
    ini.write_text("[od_reading]\ninterval = 7\n")  # same size: the mtime tells
    os.utime(ini, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    config.refresh()
    assert config.get("od_reading", "interval") == "7"


def test_refresh_rereads_when_the_job_is_pointed_at_another_file(ini, tmp_path, monkeypatch):
    config = _LazyConfig()
    assert config.get("od_reading", "interval") == "5"
    other = tmp_path / "other.ini"
    other.write_text("[od_reading]\ninterval = 9\n")
    monkeypatch.setenv(CONFIG_ENV, str(other))
    config.refresh()
    assert config.get("od_reading", "interval") == "9"


def test_refresh_rereads_a_file_that_was_missing(tmp_path, monkeypatch):
    path = tmp_path / "late.ini"
    monkeypatch.setenv(CONFIG_ENV, str(path))
    config = _LazyConfig()
    with pytest.raises(FileNotFoundError):
        config.sections()
    path.write_text("[od_reading]\ninterval = 3\n")
    config.refresh()
    assert config.get("od_reading", "interval") == "3"


def test_refresh_rereads_once_a_plugin_with_defaults_is_installed(tmp_path, monkeypatch):
    from pioreactord.plugins_site import DEFAULTS, SITE, plugins_root

    state = tmp_path / "state"
    path = tmp_path / "pioreactord.ini"
    path.write_text(f"[pioreactord]\nstate_dir = {state}\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    config = _LazyConfig()
    assert config.get("relay.config", "start_on", fallback="unset") == "unset"
    config.refresh()
    assert config.get("relay.config", "start_on", fallback="unset") == "unset"
    plugin = plugins_root(state) / "relay"
    (plugin / SITE).mkdir(parents=True)
    (plugin / DEFAULTS).write_text("[relay.config]\nstart_on = 1\n")
    config.refresh()
    assert config.get("relay.config", "start_on") == "1"
