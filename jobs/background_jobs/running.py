"""The jobs alive in this process, and how the process ends them.

A process may construct several jobs (a script usually has one). SIGTERM, SIGINT and interpreter
exit all clean every live job up the same way; the signal handler raises SystemExit only when the
main thread runs its own code, not when it waits in `block_until_disconnected` (that wait simply
returns once its job is disconnected). `current_job()` is the job that carries this process's
hardware requests (a PWM or LED call made from job code without naming the job).
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from pioreactor.exc import JobRequiredError


class CleanableJob(Protocol):
    def clean_up(self) -> None: ...


_jobs: list[Any] = []
_main_thread_waits_on: list[Any] = []  # the job block_until_disconnected waits for (0 or 1)
_exiting = False  # the interpreter is running atexit handlers: a signal must not raise there
_installed = False


def add(job: CleanableJob) -> None:
    _jobs.append(job)
    _install_exit_handlers()


def remove(job: CleanableJob) -> None:
    if job in _jobs:
        _jobs.remove(job)


def current_job(what: str = "this") -> Any:
    """The newest live job of this process; JobRequiredError (what to do) if there is none."""
    if not _jobs:
        raise JobRequiredError(
            f"{what} needs a running BackgroundJob in this process: create it inside your job (after "
            "super().__init__), so pioreactord knows who holds the hardware and can switch it off "
            "when the job ends")
    return _jobs[-1]


def any_job() -> Any | None:
    return _jobs[-1] if _jobs else None


@contextlib.contextmanager
def main_thread_waiting_on(job: Any) -> Iterator[None]:
    _main_thread_waits_on.append(job)
    try:
        yield
    finally:
        _main_thread_waits_on.remove(job)


def main_thread_waits_on(job: Any) -> bool:
    return job in _main_thread_waits_on


def _install_exit_handlers() -> None:
    global _installed
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _on_exit_signal)
    if not _installed:
        atexit.register(_clean_up_at_exit)
        _installed = True


def _clean_up_at_exit() -> None:
    global _exiting
    _exiting = True
    _clean_up_all()


def _on_exit_signal(signum: int, frame: Any) -> None:
    if _exiting:
        return
    blocking = bool(_main_thread_waits_on)
    _clean_up_all()
    if not blocking:
        raise SystemExit(0)


def _clean_up_all() -> None:
    for job in list(_jobs):
        job.clean_up()
