"""Job processes at the OS level: spawning, watching for their end, decoding how they ended.

`Spawner` is the one replaceable piece of the start path: `SubprocessSpawner` execs a fresh
interpreter running `python -m pioreactor.runner JOB ARGS...`; a fork server that hands out
pre-imported children implements the same `spawn`. Whatever spawned a process, the daemon watches
it through a pidfd (it becomes readable the moment the process ends, child or not), so jobs
started by hand and jobs adopted after a daemon restart are watched exactly like children.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

STDERR_TAIL_LINES = 20


@dataclass(frozen=True)
class SpawnRequest:
    job_name: str
    args: tuple[str, ...]
    env: dict[str, str]


@dataclass
class Child:
    """A spawned process: its pid, a pidfd to watch, and pipes carrying its stdout/stderr."""

    pid: int
    pidfd: int
    stdout_fd: int | None
    stderr_fd: int | None
    is_child: bool  # True when os.waitpid can collect its exit status


class Spawner(Protocol):
    def spawn(self, request: SpawnRequest) -> Child: ...


class SubprocessSpawner:
    """A fresh interpreter per job (~300 ms on a Pi). Simple, and the fallback of any faster one."""

    def __init__(self, python: str = sys.executable) -> None:
        self._python = python

    def spawn(self, request: SpawnRequest) -> Child:
        process = subprocess.Popen(
            [self._python, "-m", "pioreactor.runner", request.job_name, *request.args],
            env=request.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Own session: a Ctrl-C in the daemon's terminal reaches the daemon only, which then
            # stops its jobs in order.
            start_new_session=True,
            close_fds=True,
        )
        assert process.stdout is not None and process.stderr is not None
        stdout_fd, stderr_fd = os.dup(process.stdout.fileno()), os.dup(process.stderr.fileno())
        process.stdout.close()
        process.stderr.close()
        for fd in (stdout_fd, stderr_fd):
            os.set_blocking(fd, False)
        # The Popen object is dropped: the pidfd and waitpid below are the only watchers.
        process.returncode = 0  # keep Popen.__del__ from reaping our child behind our back
        return Child(process.pid, os.pidfd_open(process.pid), stdout_fd, stderr_fd, True)


def watch_pid(pid: int) -> int | None:
    """A pidfd for any process (a job started by hand); None if it is already gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


@dataclass(frozen=True)
class ExitInfo:
    """How a process ended. `exit_code` follows SPEC §6: the exit status, or -signal."""

    exit_code: int | None  # None: not our child, status unknown
    signal_name: str | None = None

    def describe(self) -> str:
        if self.signal_name:
            return f"killed by {self.signal_name}"
        if self.exit_code is None:
            return "ended (exit status unknown: not the daemon's child)"
        return f"exited with code {self.exit_code}"


def collect_exit(child_pid: int, is_child: bool) -> ExitInfo:
    """Reap a process whose pidfd became readable and decode its status (once, here)."""
    if not is_child:
        return ExitInfo(None)
    try:
        _, status = os.waitpid(child_pid, os.WNOHANG)
    except ChildProcessError:
        return ExitInfo(None)
    return decode_status(status)


def decode_status(status: int) -> ExitInfo:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        return ExitInfo(-signum, signal.Signals(signum).name)
    return ExitInfo(os.waitstatus_to_exitcode(status))


def send_signal(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
        return True
    except OSError:  # gone, or EPERM: a hand-run job of another user
        return False


@dataclass
class OutputCapture:
    """Turns a job's raw stdout/stderr into log lines; keeps the last stderr lines for crash reports.

    A chunk read at once stays one record (a traceback is one log line, not twenty).
    """

    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    _partial: dict[int, bytes] = field(default_factory=dict)

    def read(self, fd: int, is_stderr: bool) -> tuple[list[str], bool]:
        """Read what is available; returns (complete text records, eof)."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return [], False
        except OSError:
            data = b""
        eof = not data
        buffered = self._partial.pop(fd, b"") + data
        if not eof and not buffered.endswith(b"\n"):
            cut = buffered.rfind(b"\n") + 1
            if cut == 0:
                self._partial[fd] = buffered
                return [], False
            buffered, self._partial[fd] = buffered[:cut], buffered[cut:]
        text = buffered.decode("utf-8", errors="replace").rstrip("\n")
        if not text.strip():
            return [], eof
        if is_stderr:
            self.stderr_tail.extend(text.splitlines())
        return [text], eof

    def drain(self, fd: int, is_stderr: bool, max_reads: int = 256) -> list[str]:
        """After the process ended: everything left in the pipe, partial last line included.
        Bounded, and stops at EAGAIN: a grandchild may hold the pipe open forever."""
        texts: list[str] = []
        for _ in range(max_reads):
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            self._partial[fd] = self._partial.get(fd, b"") + data
        rest = self._partial.pop(fd, b"").decode("utf-8", errors="replace").rstrip("\n")
        if rest.strip():
            texts.append(rest)
            if is_stderr:
                self.stderr_tail.extend(rest.splitlines())
        return texts
