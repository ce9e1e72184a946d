"""Job processes at the OS level: spawning, watching for their end, decoding how they ended.

`Spawner` is the one replaceable piece of the start path (`[pioreactord] spawner`):
`SubprocessSpawner` (`exec`) runs a fresh interpreter, `python -m pioreactor.runner JOB ARGS...`;
`ForkServerSpawner` (`forkserver`, in forkserver_spawner.py) forks the job from a pre-imported process and
uses `exec` whenever that process cannot answer. Either way the job is the daemon's child.
Whatever spawned a process, the daemon watches it through a pidfd (it becomes readable the moment
the process ends, child or not), so jobs started by hand and jobs adopted after a daemon restart
are watched exactly like children.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .limits import MAX_LOG_LINE
from .output import OutputCapture

if TYPE_CHECKING:
    from .loop import Loop

OUTPUT_QUIET = 0.05  # seconds without output before held stdout/stderr becomes one log record
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


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
    via: str = "exec"  # which spawner started it (for the log)


class Spawner(Protocol):
    def start(self, env: dict[str, str]) -> None:
        """At daemon start: anything the spawner runs beside the jobs (`env`: job code's)."""

    def spawn(self, request: SpawnRequest) -> Child: ...

    def stop(self) -> None:
        """At daemon exit."""

    @property
    def helper_pid(self) -> int | None:
        """A process of the spawner's own among the daemon's children (not a job), if any."""


class SubprocessSpawner:
    """A fresh interpreter per job (~300 ms on a Pi). Simple, and the fallback of any faster one."""

    def __init__(self, python: str = sys.executable) -> None:
        self._python = python
        self.helper_pid: int | None = None

    def start(self, env: dict[str, str]) -> None:
        pass

    def stop(self) -> None:
        pass

    def spawn(self, request: SpawnRequest) -> Child:
        return start_process([self._python, "-m", "pioreactor.runner", request.job_name,
                              *request.args], request.env)


def start_process(argv: Sequence[str], env: dict[str, str], *, merge_stderr: bool = False,
                  pass_fds: Sequence[int] = ()) -> Child:
    """Exec `argv` as our child in its own session, stdin from /dev/null, its stdout/stderr on
    non-blocking pipes (one pipe for both with `merge_stderr`)."""
    process = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        # Own session: a Ctrl-C in the daemon's terminal reaches the daemon only, which then
        # stops its jobs in order.
        start_new_session=True,
        close_fds=True,
        pass_fds=pass_fds,
    )
    pipes = [pipe for pipe in (process.stdout, process.stderr) if pipe is not None]
    fds = [os.dup(pipe.fileno()) for pipe in pipes]
    for pipe, fd in zip(pipes, fds, strict=True):
        pipe.close()
        os.set_blocking(fd, False)
    # The Popen object is dropped: the pidfd and waitpid below are the only watchers.
    process.returncode = 0  # keep Popen.__del__ from reaping our child behind our back
    return Child(process.pid, os.pidfd_open(process.pid), fds[0],
                 fds[1] if len(fds) > 1 else None, True)


def become_subreaper() -> bool:
    """Make the daemon a child subreaper: orphaned descendants (the fork server's double-forked
    jobs) are re-parented to it instead of init, so it can wait for them. False where the kernel
    or the C library does not offer it."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def is_our_child(pid: int) -> bool:
    """True when os.waitpid can collect `pid`'s status (it is not collected here)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def reap_orphans(keep: Collection[int]) -> list[int]:
    """Collect ended children the daemon did not spawn: as a subreaper it inherits every orphaned
    descendant (a job's own subprocess that outlived it, a fork server's half-done fork). Stops at
    a child in `keep`: its pidfd handler reaps it and decodes its status."""
    reaped: list[int] = []
    while True:
        try:
            ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if ended is None or ended.si_pid in keep:
            return reaped
        os.waitpid(ended.si_pid, os.WNOHANG)
        reaped.append(ended.si_pid)


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
    """For the daemon's own helpers (the fork server), which are its children. Never pid <= 1,
    the daemon itself or its process group."""
    if not may_signal(pid):
        return False
    try:
        os.kill(pid, signum)
        return True
    except OSError:  # gone, or EPERM: a hand-run job of another user
        return False


def signal_process(pidfd: int | None, pid: int | None, signum: int) -> bool:
    """Signal exactly the process `pidfd` was opened for (a reused pid cannot be hit); `pid` is
    its pid, checked like send_signal's. False if there is nothing safe to signal."""
    if pidfd is None or pid is None or not may_signal(pid):
        return False
    try:
        signal.pidfd_send_signal(pidfd, signum)
        return True
    except OSError:  # gone, or EPERM: a hand-run job of another user
        return False


def may_signal(pid: int) -> bool:
    """Never init or "every process" (pid <= 1), the daemon, or the daemon's process group."""
    return pid > 1 and pid not in (os.getpid(), os.getpgrp())


class OutputPipes:
    """A spawned job's stdout/stderr pipes on the loop: read as output arrives, logged as one
    record per quiet moment (`emit(is_stderr, text)`), drained and closed when the job ends."""

    def __init__(self, loop: Loop, child: Child, capture: OutputCapture,
                 emit: Callable[[bool, str], None]) -> None:
        self._loop, self._child, self._capture, self._emit = loop, child, capture, emit
        self._held: dict[bool, list[str]] = {}  # is_stderr -> texts waiting for a quiet moment
        self._held_size: dict[bool, int] = {False: 0, True: 0}

    def watch(self) -> None:
        for fd, is_stderr in self._open():
            self._loop.watch(fd, functools.partial(self._readable, fd, is_stderr))

    def _open(self) -> list[tuple[int, bool]]:
        return [(fd, is_stderr) for fd, is_stderr in ((self._child.stdout_fd, False),
                                                      (self._child.stderr_fd, True))
                if fd is not None]

    def _readable(self, fd: int, is_stderr: bool) -> None:
        texts, eof = self._capture.read(fd, is_stderr)
        for text in texts:
            # Output arrives in pipe-sized pieces: a traceback is one record if we wait for a
            # quiet moment before logging it. A record holds at most MAX_LOG_LINE characters:
            # a flood goes out in records of that size, never held whole.
            held = self._held.setdefault(is_stderr, [])
            if held and self._held_size[is_stderr] + len(text) > MAX_LOG_LINE:
                self._flush(is_stderr)
                held = self._held.setdefault(is_stderr, [])
            if not held:
                self._held_size[is_stderr] = 0
                self._loop.call_later(OUTPUT_QUIET, lambda: self._flush(is_stderr))
            held.append(text)
            self._held_size[is_stderr] += len(text) + 1
        if eof:
            self._close(fd)

    def _flush(self, is_stderr: bool) -> None:
        texts = self._held.pop(is_stderr, [])
        if texts:
            self._emit(is_stderr, "\n".join(texts))

    def hand_over(self) -> tuple[int | None, int | None]:
        """Before a re-exec: log what is held, stop watching, and give up the (still open)
        stdout and stderr fds to the next image of this process."""
        for fd, is_stderr in self._open():
            self._flush(is_stderr)
            self._loop.unwatch(fd)
        fds = (self._child.stdout_fd, self._child.stderr_fd)
        self._child.stdout_fd = self._child.stderr_fd = None
        return fds

    def close(self) -> None:
        """The process is gone: log what is left in its pipes, then close them."""
        for fd, is_stderr in self._open():
            self._held.setdefault(is_stderr, []).extend(self._capture.drain(fd, is_stderr))
            self._flush(is_stderr)
            self._close(fd)

    def _close(self, fd: int) -> None:
        self._loop.unwatch(fd)
        os.close(fd)
        if fd == self._child.stdout_fd:
            self._child.stdout_fd = None
        else:
            self._child.stderr_fd = None
