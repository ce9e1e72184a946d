"""Installing, uninstalling and listing plugin distributions (`pioctl plugins ...`).

Runs in pioctl, as the invoking user (normally `pioreactor`, who owns state_dir), never as part
of the daemon's unit: nothing is written outside `{state_dir}/plugins` (layout: plugins_site.py).
Debian's Python refuses `pip install` into the system (PEP 668), so pip installs with `--target`
into a fresh directory of the plugin's own, and only a finished, checked install replaces the
previous one, by swapping a symlink: a failed install changes nothing.

Dependencies are resolved by pip and installed beside the plugin, except what pioreactord
provides: `pioreactor` (the job API plugins import) is handed to pip as a stub distribution of
the API version we implement, so a plugin that requires it never pulls Pioreactor's real code in
(and one that requires an older API fails to resolve, saying so). The stub is removed afterwards.
"""

from __future__ import annotations

import base64
import configparser
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import Distribution, distributions
from pathlib import Path

from .plugins_site import DEFAULTS, RECORD, SITE, installed_dirs, plugins_root

ENTRY_POINT_GROUP = "pioreactor.plugins"
# What pioreactord provides in place of a PyPI distribution: name -> version handed to pip.
PIOREACTOR_API_VERSION = "25.11.0"
PROVIDED = {"pioreactor": PIOREACTOR_API_VERSION}
PIP_WHEELS = "/usr/share/python-wheels"  # Debian's python3-pip-whl
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_REQUEST = re.compile(rf"^(?P<name>{_NAME})(?:==(?P<version>[A-Za-z0-9.+!_-]+))?$")
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-[^-]+)?-[^-]+-[^-]+-[^-]+\.whl$")

Progress = Callable[[str], None]


class PluginError(Exception):
    """An install, uninstall or lookup that failed; the message is one line saying why."""


class UsageError(PluginError):
    """The request itself is malformed (exit status 2)."""


@dataclass(frozen=True)
class Request:
    name: str  # normalised distribution name (PEP 503)
    pip_argument: str  # what pip is asked to install
    wheel: Path | None = None

    @property
    def source(self) -> str:
        return f"wheel {self.wheel}" if self.wheel else "PyPI"


@dataclass
class Installed:
    name: str
    version: str
    source: str  # PyPI | wheel PATH | plugins_dir | environment
    path: str
    installed_at: str = ""
    dependencies: list[str] | None = None


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_request(text: str) -> Request:
    """NAME, NAME==VERSION or a path to a .whl file."""
    text = text.strip()
    if text.endswith(".whl"):
        path = Path(text).expanduser().absolute()
        match = _WHEEL.match(path.name)
        if not match:
            raise UsageError(f"{path.name} is not a wheel file name (NAME-VERSION-PY-ABI-PLATFORM.whl)")
        if not path.is_file():
            raise PluginError(f"no such wheel file: {path}")
        return Request(normalize(match["name"]), str(path), path)
    match = _REQUEST.match(text)
    if not match:
        raise UsageError(f"{text!r} is not NAME, NAME==VERSION or FILE.whl")
    return Request(normalize(match["name"]), text)


# --- install ---------------------------------------------------------------------------------
def install(state_dir: Path, text: str, progress: Progress) -> Installed:
    """Install (or replace) one plugin distribution; returns what is now installed."""
    request = parse_request(text)
    if request.name in PROVIDED:
        raise PluginError(f"{request.name} is provided by pioreactord itself; it is not a plugin")
    root = _writable_root(state_dir)
    with _locked(root):
        _remove_stale(root)
        version_dir = root / f".v-{request.name}-{secrets.token_hex(3)}"
        version_dir.mkdir()
        try:
            installed = _build(version_dir, request, progress)
            _swap_in(root / request.name, version_dir)
        except BaseException:
            shutil.rmtree(version_dir, ignore_errors=True)
            raise
    _chown_like(root, root / request.name)
    return installed


def _build(version_dir: Path, request: Request, progress: Progress) -> Installed:
    site = version_dir / SITE
    with tempfile.TemporaryDirectory(dir=version_dir.parent, prefix=".stub-") as stubs:
        stub_wheels = [_stub_wheel(Path(stubs), name, version) for name, version in PROVIDED.items()]
        _pip(["install", "--target", str(site), "--no-input", "--no-cache-dir",
              "--no-warn-script-location", "--progress-bar", "off",
              request.pip_argument, *map(str, stub_wheels)], progress)
    for name in PROVIDED:
        _remove_distribution(site, name)
    dist = _find_distribution(site, request.name)
    if dist is None:
        raise PluginError(f"pip installed no distribution named {request.name}")
    _copy_defaults(dist, site, version_dir / DEFAULTS)
    others = sorted(f"{d.metadata['Name']}=={d.version}" for d in distributions(path=[str(site)])
                    if normalize(d.metadata["Name"]) != request.name)
    installed = Installed(name=request.name, version=dist.version, source=request.source,
                          path=str(version_dir.parent / request.name),
                          installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          dependencies=others)
    (version_dir / RECORD).write_text(json.dumps(asdict(installed), indent=1) + "\n")
    return installed


def _pip(args: list[str], progress: Progress) -> None:
    """Run pip, passing its output to `progress` line by line; PluginError with pip's own last
    error line if it fails."""
    command = [*_pip_command(), "--disable-pip-version-check", *args]
    if os.geteuid() == 0:  # we hand the files to state_dir's owner afterwards (_chown_like)
        command.append("--root-user-action=ignore")
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace")
    except OSError as exc:
        raise PluginError(f"cannot run pip: {exc}") from None
    lines: list[str] = []
    assert process.stdout is not None
    with process:
        for line in process.stdout:
            lines.append(line.rstrip())
            progress(line.rstrip())
    if process.returncode != 0:
        raise PluginError(f"pip failed: {_pip_error(lines, process.returncode)}")


def _pip_command() -> list[str]:
    """pip as a module if this Python has it (Debian: python3-pip), else the self-contained pip
    wheel that Debian's python3-pip-whl ships for venvs, run from the zip as pip supports: the
    package depends on either, and the wheel alone spares a Pi python3-pip's compilers."""
    import importlib.util

    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    wheels = sorted(Path(PIP_WHEELS).glob("pip-*.whl"))
    return [sys.executable, f"{wheels[-1]}/pip"] if wheels else [sys.executable, "-m", "pip"]


def _pip_error(lines: list[str], code: int) -> str:
    if any("No module named pip" in line for line in lines):
        return (f"pip is not installed for {sys.executable} (on Debian: sudo apt install "
                "python3-pip-whl)")
    for name, version in PROVIDED.items():  # a plugin written for another API than ours
        needs = [line.strip() for line in lines
                 if re.search(rf"depends on {name}(?![\w.-])", line)]
        if needs:
            return f"{needs[0]}, but pioreactord provides the {name} {version} API"
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    meaningful = [line for line in lines if line.strip()]
    return (errors or meaningful or [f"exit status {code}"])[0]


def _stub_wheel(directory: Path, name: str, version: str) -> Path:
    """A wheel holding only the metadata of `name` `version`: pip treats the name as
    satisfied without fetching the real distribution."""
    info = f"{name}-{version}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 f"Summary: provided by pioreactord\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: pioreactord\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in files.items():
            wheel.writestr(member, text)
    return path


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def _find_distribution(site: Path, name: str) -> Distribution | None:
    return next((d for d in distributions(path=[str(site)])
                 if normalize(d.metadata["Name"] or "") == name), None)


def _remove_distribution(site: Path, name: str) -> None:
    """Delete one distribution's files (its RECORD) from a --target directory."""
    dist = _find_distribution(site, name)
    if dist is None:
        return
    directories = set()
    for file in dist.files or []:  # RECORD lists the .dist-info's own files too
        path = Path(str(dist.locate_file(file)))
        if path.is_file() or path.is_symlink():
            path.unlink()
            directories.add(path.parent)
    for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
        while directory != site and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent


def _copy_defaults(dist: Distribution, site: Path, target: Path) -> None:
    """The distribution's additional_config.ini (next to its top-level package, where
    Pioreactor looks for it), checked to parse, copied to `target`."""
    found = [f for f in dist.files or [] if f.name == "additional_config.ini" and len(f.parts) == 2]
    if not found:
        return
    source = Path(str(dist.locate_file(found[0])))
    try:
        configparser.ConfigParser(interpolation=None).read(source, encoding="utf-8")
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise PluginError(f"{found[0]} of {dist.metadata['Name']} does not parse: {first}") from None
    shutil.copyfile(source, target)


def _swap_in(link: Path, version_dir: Path) -> None:
    """Point `link` at `version_dir` in one rename; the previous version is removed after."""
    previous = link.resolve() if link.is_symlink() else None
    if link.exists() and previous is None:
        raise PluginError(f"{link} is not a symlink made by pioctl; move it away and retry")
    temporary = link.with_name(f".link-{secrets.token_hex(3)}")
    temporary.symlink_to(version_dir.name)
    os.replace(temporary, link)
    if previous is not None and previous != version_dir.resolve():
        shutil.rmtree(previous, ignore_errors=True)


def _writable_root(state_dir: Path) -> Path:
    root = plugins_root(state_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise PermissionError
    except PermissionError:
        owner = _owner(root if root.exists() else state_dir)
        raise PluginError(f"cannot write {root} (permission denied); it belongs to {owner}: "
                          f"run as that user, e.g. sudo -u {owner} pioctl plugins ...") from None
    except OSError as exc:
        raise PluginError(f"cannot create {root}: {exc.strerror}") from None
    return root


def _owner(path: Path) -> str:
    import pwd

    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        return "its owner"


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One install or uninstall at a time per state_dir."""
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _remove_stale(root: Path) -> None:
    """Version directories no symlink points to: left by an install that was killed."""
    live = {p.resolve().name for p in root.iterdir() if p.is_symlink()}
    for path in root.iterdir():
        if path.name.startswith((".v-", ".stub-", ".link-")) and path.name not in live:
            if path.is_symlink() or path.is_file():
                path.unlink()
            else:
                shutil.rmtree(path, ignore_errors=True)


def _chown_like(root: Path, link: Path) -> None:
    """Run as root, leave the files to state_dir's owner (the daemon's user), as pip would."""
    if os.geteuid() != 0:
        return
    owner = root.parent.stat()
    for top in (link, link.resolve()):
        os.chown(top, owner.st_uid, owner.st_gid, follow_symlinks=False)
    for directory, subdirs, files in os.walk(link.resolve()):
        for name in [*subdirs, *files]:
            os.chown(os.path.join(directory, name), owner.st_uid, owner.st_gid,
                     follow_symlinks=False)
    os.chown(root, owner.st_uid, owner.st_gid)


# --- uninstall, list -------------------------------------------------------------------------
def uninstall(state_dir: Path, plugins_dir: Path, text: str) -> Installed:
    """Remove an installed distribution, or a plugins_dir file named NAME.py (as `pio plugins
    uninstall` does)."""
    name = normalize(text.strip())
    link = plugins_root(state_dir) / name
    if link.is_symlink():
        found = _read_record(link)
        with _locked(_writable_root(state_dir)):
            target = link.resolve()
            link.unlink()
            shutil.rmtree(target, ignore_errors=True)
        return found
    for path in _plugin_files(plugins_dir):
        if path.stem == text.strip():
            path.unlink()
            return Installed(name=path.stem, version="", source="plugins_dir", path=str(path))
    known = ", ".join(p.name for p in list_installed(state_dir, plugins_dir)) or "none"
    raise PluginError(f"plugin {text.strip()!r} is not installed (installed: {known})")


def list_installed(state_dir: Path, plugins_dir: Path) -> list[Installed]:
    """Installed distributions, plugins_dir files, and plugin distributions found elsewhere on
    sys.path (installed with pip by hand)."""
    found = [_read_record(d) for d in installed_dirs(state_dir)]
    found += [Installed(name=p.stem, version="", source="plugins_dir", path=str(p))
              for p in _plugin_files(plugins_dir)]
    seen = {f.name for f in found}
    for dist in distributions():
        name = normalize(dist.metadata["Name"] or "")
        if name not in seen and any(ep.group == ENTRY_POINT_GROUP for ep in dist.entry_points):
            seen.add(name)
            found.append(Installed(name=name, version=dist.version, source="environment",
                                   path=str(dist.locate_file(""))))
    return found


def overridden_defaults(state_dir: Path, name: str, config_path: str) -> list[str]:
    """`[section] key = default` lines of a plugin's defaults that the main config file sets to
    something else (the plugin's README may assume its value, e.g. its [PWM] channel)."""
    defaults = configparser.ConfigParser(interpolation=None)
    main = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    defaults.read(plugins_root(state_dir) / normalize(name) / DEFAULTS, encoding="utf-8")
    main.read(config_path, encoding="utf-8")
    return [f"[{section}] {key} = {value} (the config says {main.get(section, key)})"
            for section in defaults.sections() for key, value in defaults.items(section)
            if main.has_option(section, key) and main.get(section, key).strip() != value.strip()]


def entry_point_names(state_dir: Path, name: str) -> set[str]:
    """The `pioreactor.plugins` entry point names of an installed distribution."""
    dist = _find_distribution(plugins_root(state_dir) / normalize(name) / SITE, normalize(name))
    return {ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP} if dist else set()


def _read_record(directory: Path) -> Installed:
    try:
        return Installed(**json.loads((directory / RECORD).read_text()))
    except (OSError, ValueError, TypeError):
        return Installed(name=directory.name, version="?", source="?", path=str(directory))


def _plugin_files(plugins_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in plugins_dir.glob("*.py") if p.is_file())
    except OSError:
        return []
