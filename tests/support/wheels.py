"""Wheels built at test time (a zip with a .dist-info), for `pioctl plugins install` tests."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

# A plugin distribution the way Pioreactor's plugins are packaged: a package with the job, an
# additional_config.ini beside it, and an entry point in `pioreactor.plugins`.
GREETER_JOB = '''
import click
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.config import config
from pioreactor.whoami import get_unit_name, get_latest_experiment_name
{extra_import}

class Greeter(BackgroundJob):
    job_name = "greeter"
    published_settings = {{"greeting": {{"datatype": "string", "settable": True}},
                          "version": {{"datatype": "string", "settable": False}}}}

    def __init__(self, unit, experiment):
        super().__init__(unit=unit, experiment=experiment)
        self.greeting = config.get("greeter.config", "greeting")
        self.version = "{version}"


@click.command(name="greeter")
def click_greeter():
    """say hello"""
    Greeter(unit=get_unit_name(), experiment=get_latest_experiment_name()).block_until_disconnected()
'''

GREETER_CONFIG = "[greeter.config]\ngreeting = hello\nloudness = 3\n"


def build_wheel(directory: Path, name: str, version: str, files: dict[str, str],
                requires: list[str] = (), entry_points: dict[str, str] | None = None) -> Path:
    """Write `{name}-{version}-py3-none-any.whl` holding `files` and its metadata."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    members = dict(files)
    members[f"{info}/METADATA"] = metadata
    members[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if entry_points:
        members[f"{info}/entry_points.txt"] = "[pioreactor.plugins]\n" + "".join(
            f"{k} = {v}\n" for k, v in entry_points.items())
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}" for path, text in members.items()]
    members[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = directory / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in members.items():
            wheel.writestr(member, text)
    return path


def greeter_wheel(directory: Path, version: str = "1.0.0", requires: list[str] = (),
                  config: str = GREETER_CONFIG, extra_import: str = "") -> Path:
    return build_wheel(directory, "pioreactor-greeter", version, {
        "pioreactor_greeter/__init__.py": GREETER_JOB.format(version=version,
                                                             extra_import=extra_import),
        "pioreactor_greeter/additional_config.ini": config,
    }, requires=requires, entry_points={"pioreactor_greeter": "pioreactor_greeter"})


def library_wheel(directory: Path, name: str, version: str = "1.0") -> Path:
    """A dependency: module `name` with VALUE = version."""
    return build_wheel(directory, name, version, {f"{name}.py": f"VALUE = {version!r}\n"})


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
