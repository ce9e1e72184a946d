"""A spawned job's stdout and stderr outliving the daemon that read them.

They are pipes the daemon reads (its log captures them). When that daemon dies (kill -9, a crash)
the read ends close with it, and the job's next `print()` would raise BrokenPipeError in job code.
So a spawned job's `sys.stdout` / `sys.stderr` are guarded (`guard_standard_streams`): the first
write that meets a broken pipe, or the job noticing that the daemon went away (or registering with
a new one), points the descriptor at /dev/null (C code, messages at interpreter exit) and turns
the stream into one that sends each line to the daemon as a log record (INFO / ERROR) over the
job's channel, which buffers them while no daemon listens.
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


class GuardedStream(io.TextIOBase):
    """A standard stream that writes to its pipe until the pipe breaks, then to the log."""

    def __init__(self, stream: io.TextIOBase, fd: int, send_log: Callable[[str, str], None],
                 level: str) -> None:
        super().__init__()
        self._stream, self._fd = stream, fd
        self._log = LogStream(send_log, level)
        self.broken = False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def __getattr__(self, name: str) -> object:  # e.g. `buffer`: the pipe's, as before
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                written = self._stream.write(text)
                self._stream.flush()
                return written
            except BrokenPipeError:
                self.switch_to_log()
        return self._log.write(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
                return
            except BrokenPipeError:
                self.switch_to_log()
        self._log.flush()

    def switch_to_log(self) -> None:
        if not self.broken:
            self.broken = True
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._fd)
            os.close(null)


def guard_standard_streams(send_log: Callable[[str, str], None]) -> None:
    """Guard sys.stdout and sys.stderr (once per process): see the module docstring."""
    for fd, name, level in STREAMS:
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, GuardedStream):
            setattr(sys, name, GuardedStream(stream, fd, send_log, level))


def reroute_orphaned_output() -> list[str]:
    """Switch every guarded stream whose pipe is broken to the log; returns their names."""
    rerouted = []
    for fd, name, _ in STREAMS:
        stream = getattr(sys, name)
        if isinstance(stream, GuardedStream) and not stream.broken and pipe_broken(fd):
            stream.switch_to_log()
            rerouted.append(name)
    return rerouted
