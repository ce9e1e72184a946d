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
