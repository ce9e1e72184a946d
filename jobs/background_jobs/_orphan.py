"""A spawned job's stdout and stderr outliving the daemon that read them.

They are pipes the daemon reads (its log captures them). When that daemon dies (kill -9, a crash)
the read ends close with it, and the job's next `print()` would raise BrokenPipeError in job code.
So when the job notices the daemon went away, and again when it registers with a new one, a broken
stream is pointed at /dev/null at the descriptor level (C code, messages at interpreter exit), and
`sys.stdout` / `sys.stderr` become streams that send each line to the daemon as a log record
(INFO / ERROR) over the job's channel, which buffers them while no daemon listens.
"""

from __future__ import annotations

import io
import os
import select
import sys
import threading
from collections.abc import Callable

STREAMS = ((1, "stdout", "INFO"), (2, "stderr", "ERROR"))


def pipe_broken(fd: int) -> bool:
    """True if `fd` is a pipe nobody reads any more (poll reports POLLERR on its write end)."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


class LogStream(io.TextIOBase):
    """A text stream whose complete lines become log records."""

    def __init__(self, send_log: Callable[[str, str], None], level: str) -> None:
        super().__init__()
        self._send_log, self._level = send_log, level
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self._send_log(self._level, line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest.strip():
            self._send_log(self._level, rest)


def reroute_orphaned_output(send_log: Callable[[str, str], None]) -> list[str]:
    """Reroute every broken standard stream to the job's log; returns the names rerouted."""
    rerouted = []
    for fd, name, level in STREAMS:
        if not pipe_broken(fd):
            continue
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
        setattr(sys, name, LogStream(send_log, level))
        rerouted.append(name)
    return rerouted
