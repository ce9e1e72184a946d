"""Finding one job for a start: its own file first, without importing the other plugins; a job
whose file has another name is still found."""

from __future__ import annotations

import pytest

from pioreactor import catalog
from pioreactor.config import CONFIG_ENV, config

JOB = '''
import click

@click.command(name="{name}")
def click_{name}():
    pass
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    ini = tmp_path / "pioreactord.ini"
    ini.write_text(f"[pioreactord]\nplugins_dir = {folder}\n")
    monkeypatch.setenv(CONFIG_ENV, str(ini))
    config.reload()
    yield folder
    config.reload()


def test_a_start_imports_only_its_own_file(plugins):
    (plugins / "aaa.py").write_text("raise SystemExit('aaa.py must not be imported')\n")
    (plugins / "mine.py").write_text(JOB.format(name="mine"))
    entry = catalog.find("mine")
    assert entry is not None and entry.origin == str(plugins / "mine.py")


def test_a_job_in_a_file_of_another_name_is_found(plugins):
    (plugins / "tools.py").write_text(JOB.format(name="helper"))
    entry = catalog.find("helper")
    assert entry is not None and entry.source == "tools"


def test_a_built_in_job_is_found_before_any_plugin(plugins):
    (plugins / "stirring.py").write_text(JOB.format(name="stirring"))
    entry = catalog.find("stirring")
    assert entry is not None and entry.source == "app"


def test_the_built_in_jobs_are_looked_through_once_per_process(plugins, monkeypatch):
    catalog.builtin_entries()  # the fork server does this before forking
    calls = []
    monkeypatch.setattr(catalog, "builtin_commands", lambda name: calls.append(name) or [])
    (plugins / "mine.py").write_text(JOB.format(name="mine"))
    assert catalog.find("mine") is not None and catalog.find("od_reading") is not None
    assert calls == []


def test_a_built_in_module_that_failed_to_import_is_tried_again(plugins, monkeypatch):
    monkeypatch.setattr(catalog, "_builtin_entries", [])
    real = catalog.builtin_commands

    def failing(name):
        raise ImportError(f"{name}: no hardware library")

    monkeypatch.setattr(catalog, "builtin_commands", failing)
    assert any(e.error and "no hardware library" in e.error for e in catalog.discover())
    monkeypatch.setattr(catalog, "builtin_commands", real)
    entry = catalog.find("od_reading")  # the import tried again, not the failure kept
    assert entry is not None and entry.command is not None
    assert catalog._builtin_entries  # and kept from now on
