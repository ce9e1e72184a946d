"""A real pioreactord in a short temporary folder, plus helpers to run pioctl and jobs by hand."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

from .waiting import wait_for

BIN = Path(sys.executable).parent


class Daemon:
    def __init__(self, broker_port: int, *, unit: str | None = None, experiment: str = "exp1",
                 stop_timeout: float = 3, extra_ini: str = "", root: Path | None = None,
                 spawner: str | None = None, broker_address: str = "127.0.0.1") -> None:
        # Unix socket paths must fit in 107 bytes: keep the folder short.
        self.root = root or Path(tempfile.mkdtemp(prefix="pd", dir="/tmp"))
        # A unit name of its own per test: retained messages on the shared broker never collide.
        unit = unit or f"u{os.urandom(3).hex()}"
        self.unit, self.broker_port = unit, broker_port
        self.spawner = spawner or "forkserver"  # None: the config says nothing (the default)
        self.plugins = self.root / "plugins"
        self.plugins.mkdir(exist_ok=True)
        self.config = self.root / "pioreactord.ini"
        self.database = self.root / "state" / "pioreactord.sqlite"
        self.config.write_text(f"""[pioreactord]
unit = {unit}
experiment = {experiment}
runtime_dir = {self.root}/run
state_dir = {self.root}/state
plugins_dir = {self.plugins}
hardware = simulated
stop_timeout = {stop_timeout}
{f"spawner = {spawner}" if spawner else ""}
[mqtt]
broker_address = {broker_address}
broker_port = {broker_port}
[storage]
database = {self.database}
[logging]
log_file = {self.root}/log/pioreactord.log
console_log_level = DEBUG
[PWM]
1 = stirring
2 = motor_driver
3 = alt_media
[simulation]
seed = 1
{extra_ini}
""")
        self.env = dict(os.environ, PIOREACTORD_CONFIG=str(self.config))
        for key in ("PIOREACTOR_UNIT", "PIOREACTOR_EXPERIMENT", "PIOREACTORD_JOB_TOKEN",
                    "PIOREACTORD_JOB_SOCKET", "NOTIFY_SOCKET"):
            self.env.pop(key, None)
        self.process: subprocess.Popen | None = None

    def add_plugin(self, name: str, source: str) -> Path:
        path = self.plugins / f"{name}.py"
        path.write_text(source)
        return path

    def start(self, env: dict[str, str] | None = None, *, console: Any = None) -> Daemon:
        """`console`: the daemon's stdout and stderr (a file object or fd; default daemon.out)."""
        readies = self.forkserver_readies()
        self.output = open(self.root / "daemon.out", "ab")
        self.process = subprocess.Popen([str(BIN / "pioreactord"), "--config", str(self.config)],
                                        env={**self.env, **(env or {})},
                                        stdout=self.output if console is None else console,
                                        stderr=subprocess.STDOUT)
        wait_for(lambda: self.pioctl("status", check=False).returncode == 0 or self._died(), 15,
                 "pioreactord answering")
        if self.spawner == "forkserver":  # so that starts do fork, not fall back to exec
            wait_for(lambda: self.forkserver_readies() > readies or self._died(), 15,
                     "the fork server ready")
        if self._died():
            raise RuntimeError(f"pioreactord exited: {self.log_text()}")
        return self

    def forkserver_readies(self) -> int:
        """How often a fork server said it was ready, by the daemon's log."""
        try:
            return self.query("SELECT count(*) FROM logs WHERE task='pioreactord' AND "
                              "message LIKE 'fork server ready%'")[0][0]
        except sqlite3.OperationalError:  # no database (yet)
            return 0

    def forkserver_pid(self) -> int | None:
        assert self.process is not None
        return next((c.pid for c in psutil.Process(self.process.pid).children()
                     if c.name() == "pio-forkserver"), None)

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def log_text(self) -> str:
        return (self.root / "daemon.out").read_text(errors="replace")

    def pioctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN / "pioctl"), *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"pioctl {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}")
        return result

    def pioctl_json(self, *args: str) -> Any:
        return json.loads(self.pioctl("--json", *args).stdout)

    def status(self) -> dict[str, dict[str, Any]]:
        return {row["job_name"]: row for row in self.pioctl_json("status")}

    def run_by_hand(self, script: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(5)
        self.output.close()
        return code

    def cleanup(self) -> None:
        """Kill the daemon and anything it started (tests always kill what they started)."""
        if self.process and self.process.poll() is None:
            self.stop()
        for pid in _pids_with_env("PIOREACTORD_CONFIG", str(self.config)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _pids_with_env(key: str, value: str) -> list[int]:
    needle = f"{key}={value}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids
