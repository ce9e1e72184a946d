"""Where a job's threads are, on the daemon's request: before pioreactord SIGTERMs a job that did
not stop in time, or when a callback has not returned for `[pioreactord] hung_job_warning` s, it
sends STACK_SIGNAL, and faulthandler (C code: it works while the job is stuck in a C call) writes
every thread's stack to `<runtime_dir>/stacks/<pid>`. The daemon reads that file (its own path,
never one the job names) and logs it under the job's name at WARNING.
"""

from __future__ import annotations

import faulthandler
import os
from typing import IO

from pioreactord.protocol import STACK_SIGNAL

_file: IO[str] | None = None


def install(job_socket: str) -> bool:
    """Once per process; False where the stacks directory cannot be written (then the daemon
    never sends the signal, whose default action would end the process)."""
    global _file
    if _file is not None:
        return True
    path = os.path.join(os.path.dirname(job_socket), "stacks", str(os.getpid()))
    try:
        handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 - kept open for faulthandler
        faulthandler.register(STACK_SIGNAL, file=handle, all_threads=True)
    except (OSError, RuntimeError, ValueError):
        return False
    _file = handle
    return True


def forget() -> None:
    """A fork server's spare that never became a job: its file goes with it (a job's is removed by
    the daemon once the job has ended)."""
    if _file is not None:
        try:
            os.unlink(_file.name)
        except OSError:
            pass
