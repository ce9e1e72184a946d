"""`pioctl plugins install|uninstall|list` with wheels built here, against a real daemon.

pip runs for real, offline: PIP_NO_INDEX with PIP_FIND_LINKS at the folder of built wheels, so
dependencies resolve there (the published plugins, from PyPI, are in test_published_plugins.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.wheels import greeter_wheel, library_wheel

pytestmark = pytest.mark.integration


@pytest.fixture
def wheels(tmp_path) -> Path:
    library_wheel(tmp_path, "tinylib")
    return tmp_path


@pytest.fixture
def offline_pip(wheels, monkeypatch):
    """pip in pioctl sees only the wheels folder (the daemon's env is pioctl's)."""
    def setup(daemon):
        daemon.env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
        return daemon
    return setup


def _plugins(daemon) -> dict[str, dict]:
    return {p["name"]: p for p in daemon.pioctl_json("plugins", "list")}


def _site(daemon) -> Path:
    return daemon.root / "state" / "plugins" / "pioreactor-greeter" / "site"


def test_install_lists_starts_with_defaults_and_dependencies(make_daemon, offline_pip, wheels,
                                                             watcher):
    d = offline_pip(make_daemon()).start()
    wheel = greeter_wheel(wheels, requires=["pioreactor>=23.1", "tinylib>=1.0"],
                          extra_import="import tinylib")
    out = d.pioctl("plugins", "install", str(wheel))
    assert out.stdout.startswith("installed pioreactor-greeter 1.0.0 in ")
    assert "jobs: greeter" in out.stdout
    assert "Successfully installed" in out.stderr  # pip's progress, on stderr

    listed = _plugins(d)["pioreactor-greeter"]
    assert (listed["version"], listed["source"]) == ("1.0.0", f"wheel {wheel}")
    assert listed["dependencies"] == ["tinylib==1.0"]
    assert not list(_site(d).glob("pioreactor-*")) and not (_site(d) / "pioreactor").exists()

    jobs = {j["name"]: j for j in d.pioctl_json("jobs")}
    assert jobs["greeter"]["source"] == "pioreactor_greeter" and jobs["greeter"]["error"] is None
    d.pioctl("start", "greeter")
    watcher.wait(f"pioreactor/{d.unit}/exp1/greeter/greeting", "hello")  # additional_config.ini
    d.pioctl("stop", "greeter")


def test_main_config_overrides_defaults_and_reinstall_replaces(make_daemon, offline_pip, wheels,
                                                               watcher):
    d = offline_pip(make_daemon(extra_ini="[greeter.config]\ngreeting = bonjour\n")).start()
    d.pioctl("plugins", "install", str(greeter_wheel(wheels)))
    out = d.pioctl("plugins", "install", str(greeter_wheel(wheels, version="2.0.0")))
    assert out.stdout.splitlines()[1] == (f"note: {d.config} overrides the plugin's default "
                                          "[greeter.config] greeting = hello (the config says bonjour)")
    assert _plugins(d)["pioreactor-greeter"]["version"] == "2.0.0"
    versions = [p for p in (d.root / "state" / "plugins").iterdir() if p.name.startswith(".v-")]
    assert len(versions) == 1  # the old version is gone
    d.pioctl("start", "greeter")
    watcher.wait(f"pioreactor/{d.unit}/exp1/greeter/version", "2.0.0")
    watcher.wait(f"pioreactor/{d.unit}/exp1/greeter/greeting", "bonjour")
    d.pioctl("stop", "greeter")


def test_a_failing_install_changes_nothing(make_daemon, offline_pip, wheels, watcher):
    d = offline_pip(make_daemon()).start()
    d.pioctl("plugins", "install", str(greeter_wheel(wheels)))
    root = d.root / "state" / "plugins"
    before = sorted(p.name for p in root.iterdir())

    missing = d.pioctl("plugins", "install",
                       str(greeter_wheel(wheels, "2.0.0", requires=["missinglib>=1"])), check=False)
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1].startswith("pioctl: pip failed: ")
    assert "missinglib>=1" in missing.stderr.splitlines()[-1]

    older_api = d.pioctl("plugins", "install",
                         str(greeter_wheel(wheels, "3.0.0", requires=["pioreactor<23"])), check=False)
    assert older_api.returncode == 1
    assert older_api.stderr.splitlines()[-1] == (
        "pioctl: pip failed: pioreactor-greeter 3.0.0 depends on pioreactor<23, but pioreactord "
        "provides the pioreactor 25.11.0 API")

    bad_config = d.pioctl("plugins", "install", str(greeter_wheel(
        wheels, "4.0.0", config="[greeter.config\ngreeting = x\n")), check=False)
    assert bad_config.returncode == 1 and "does not parse" in bad_config.stderr

    assert sorted(p.name for p in root.iterdir()) == before
    assert _plugins(d)["pioreactor-greeter"]["version"] == "1.0.0"
    d.pioctl("start", "greeter")
    watcher.wait(f"pioreactor/{d.unit}/exp1/greeter/version", "1.0.0")
    d.pioctl("stop", "greeter")


def test_uninstall_and_list(make_daemon, offline_pip, wheels):
    d = offline_pip(make_daemon())
    d.add_plugin("local_one", "X = 1\n")
    d.start()
    d.pioctl("plugins", "install", str(greeter_wheel(wheels)))
    text = d.pioctl("plugins", "list").stdout.splitlines()
    assert text[0].split() == ["PLUGIN", "VERSION", "FROM", "INSTALLED"]
    assert text[1].split()[:3] == ["pioreactor-greeter", "1.0.0", "wheel"]
    assert text[2].split()[:3] == ["local_one", "-", str(d.plugins / "local_one.py")]

    out = d.pioctl("plugins", "uninstall", "pioreactor_greeter")  # any spelling of the name
    assert out.stdout.strip() == "uninstalled pioreactor-greeter 1.0.0"
    assert "pioreactor-greeter" not in _plugins(d)
    assert "greeter" not in {j["name"] for j in d.pioctl_json("jobs")}
    assert not [p for p in (d.root / "state" / "plugins").iterdir() if p.name != ".lock"]

    again = d.pioctl("plugins", "uninstall", "pioreactor-greeter", check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == ("pioctl: plugin 'pioreactor-greeter' is not installed "
                                    "(installed: local_one)")
    d.pioctl("plugins", "uninstall", "local_one")
    assert not (d.plugins / "local_one.py").exists()


def test_bad_requests(make_daemon, tmp_path):
    d = make_daemon()  # no daemon needed: plugins commands run in pioctl
    usage = d.pioctl("plugins", "install", "foo>=2", check=False)
    assert (usage.returncode, usage.stderr.strip()) == (
        2, "pioctl: 'foo>=2' is not NAME, NAME==VERSION or FILE.whl")
    missing = d.pioctl("plugins", "install", str(tmp_path / "foo-1.0-py3-none-any.whl"), check=False)
    assert missing.returncode == 1 and "no such wheel file" in missing.stderr
    provided = d.pioctl("plugins", "install", "pioreactor==25.11.0", check=False)
    assert provided.returncode == 1 and "provided by pioreactord" in provided.stderr
    assert json.loads(d.pioctl("--json", "plugins", "list").stdout) == []

