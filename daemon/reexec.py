"""Re-executing the daemon in place (`systemctl reload`, SIGHUP; SPEC §7).

The process stays (same pid, same cgroup, its jobs still its children); only its code and config
are loaded again: the old image tears down what the new one rebuilds (sockets, broker connection,
SQLite writer, fork server) and calls execv(2) on the interpreter with the same arguments. What
must cross the exec travels in the environment, which execv keeps:

    PIOREACTORD_STARTED_AT   when this process first started (set once; `pioctl version`)
    PIOREACTORD_RELOADS      how many reload requests this process has answered
    PIOREACTORD_JOB_PIPES    pid:stdout_fd:stderr_fd,... the jobs' output pipes, kept open
                             (inheritable) so that a job's stdout never breaks on a reload

The new image adopts its jobs through the ordinary adoption path (their rows are still
`is_running = 1`): pidfds are opened again (they are close-on-exec) and, the jobs being its
children, waitpid still gives their real exit status.

The daemon answers each reload request in `runtime_dir/exec.state` (one line, replaced
atomically): `PID SEQ ok|refused TEXT`. `unitctl reload` (the unit's ExecReload=) waits for SEQ to
grow, because systemd 252 has no Type=notify-reload to wait for the daemon itself.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .protocol import utc_timestamp

if TYPE_CHECKING:
    from .children import Child

STARTED_AT_ENV = "PIOREACTORD_STARTED_AT"
RELOADS_ENV = "PIOREACTORD_RELOADS"
JOB_PIPES_ENV = "PIOREACTORD_JOB_PIPES"
STATE_FILE = "exec.state"
# Variables of the daemon's own that must not leak into a job's environment.
DAEMON_ONLY_ENV = (STARTED_AT_ENV, RELOADS_ENV, JOB_PIPES_ENV)


@dataclass(frozen=True)
class ProcessClock:
    started_at: str  # when this process first started (unchanged by a re-exec)
    exec_at: str  # when this image started (a re-exec changes it)
    reloads: int  # reload requests answered so far by this process


def process_clock() -> ProcessClock:
    """Read (on a first start: set) what the previous image of this process left in the
    environment. Called once, early in the daemon's start."""
    now = utc_timestamp()
    started = os.environ.setdefault(STARTED_AT_ENV, now)
    reloads = os.environ.get(RELOADS_ENV, "0")
    return ProcessClock(started, now, int(reloads) if reloads.isdigit() else 0)


@dataclass(frozen=True)
class ExecState:
    pid: int
    seq: int
    ok: bool
    text: str

    def describe(self) -> str:
        return f"{'done' if self.ok else 'refused'}: {self.text}"


def write_exec_state(path: Path, state: ExecState) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{state.pid} {state.seq} {'ok' if state.ok else 'refused'} {state.text}\n")
    tmp.replace(path)


def read_exec_state(path: Path, pid: int) -> ExecState | None:
    """The daemon's last answer, if it is from process `pid`."""
    try:
        words = path.read_text().rstrip("\n").split(" ", 3)
    except OSError:
        return None
    if len(words) < 3 or not words[0].isdigit() or not words[1].isdigit() or int(words[0]) != pid:
        return None
    return ExecState(int(words[0]), int(words[1]), words[2] == "ok", words[3] if len(words) > 3 else "")


def job_pipes_from_env() -> dict[int, tuple[int | None, int | None]]:
    """pid -> (stdout fd, stderr fd) handed over by the previous image; the variable is removed.
    An fd that is not open (a damaged variable) is left out."""
    text = os.environ.pop(JOB_PIPES_ENV, "")
    pipes: dict[int, tuple[int | None, int | None]] = {}
    for item in filter(None, text.split(",")):
        fields = item.split(":")
        if len(fields) != 3 or not fields[0].isdigit():
            continue
        out, err = (_open_fd(word) for word in fields[1:])
        pipes[int(fields[0])] = (out, err)
    return pipes


def _open_fd(word: str) -> int | None:
    if not word.isdigit():
        return None
    fd = int(word)
    try:
        os.fstat(fd)
    except OSError:
        return None
    os.set_inheritable(fd, False)  # handed over once; the next exec hands them over again
    return fd


def daemon_version() -> str:
    try:
        from . import __version__  # type: ignore[attr-defined]

        return str(__version__)
    except ImportError:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pioreactord")
        except PackageNotFoundError:
            return "unknown"


def exec_self(reloads: int, job_pipes: dict[int, tuple[int | None, int | None]]) -> None:
    """Replace this process's image with a fresh start of the same command line. Returns only
    if execv failed (OSError propagates)."""
    keep = [fd for pair in job_pipes.values() for fd in pair if fd is not None]
    for fd in keep:
        os.set_inheritable(fd, True)
    os.environ[RELOADS_ENV] = str(reloads)
    os.environ[JOB_PIPES_ENV] = ",".join(
        f"{pid}:{'' if out is None else out}:{'' if err is None else err}"
        for pid, (out, err) in job_pipes.items())
    sys.stdout.flush()
    sys.stderr.flush()
    # sys.orig_argv: the interpreter's own command line (`python3 /usr/bin/pioreactord --config
    # ...`), so the console script, `python -m` and a venv all start again the same way.
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def own_child(pid: int, pipes: tuple[int | None, int | None]) -> Child | None:
    """After a re-exec the jobs are still this process's children: their exit status can be
    collected and their output pipes read again. None for any other job (pipes closed)."""
    from .children import Child, is_our_child  # not at import: unitctl's reload reads this module

    pidfd = None
    if is_our_child(pid):
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pass
    if pidfd is None:
        close_fds(*pipes)
        return None
    return Child(pid, pidfd, pipes[0], pipes[1], True, via="re-exec")


def close_fds(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)
