"""The daemon's stdout and stderr: writing to them can never stop or kill it.

The console is the least important of the log's four destinations, and the only one that can
vanish under the daemon: `pioreactord | tee log` and Ctrl-C kills tee first (EPIPE), an SSH
session that drops leaves a dead terminal (EIO). Every console write of the daemon (the log
hub's line, structlog, a stray print, an interpreter warning) goes through `sys.stdout` or
`sys.stderr`, so both are wrapped once, first thing in `main()`: the first write that fails
points the file descriptor at /dev/null (so later writes from any layer, C included, and the
interpreter's final flush at exit succeed) and reports it once through `on_gone`. The file,
SQLite and MQTT copies of the log are untouched.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

# Set by the daemon once it can log: called (once per stream) with a one-line explanation.
_on_gone: Callable[[str], Any] | None = None
_pending: list[str] = []


class _Console:
    """A text stream whose write and flush never raise; anything else goes to the real stream."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self._name = name
        self.gone = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as exc:  # ValueError: the stream object itself was closed
            self._go_dark(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._go_dark(exc)

    def _go_dark(self, exc: BaseException) -> None:
        if self.gone:
            return
        self.gone = True
        try:
            null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            os.dup2(null, self._stream.fileno(), inheritable=False)
            os.close(null)
            self._stream.flush()  # what was buffered goes to /dev/null now
        except (OSError, ValueError):
            pass  # best effort: write() above already swallows any further failure
        _report(f"console output ({self._name}) failed ({type(exc).__name__}: {exc}); the log "
                "goes on to the log file, SQLite and MQTT")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_std_streams() -> None:
    """Wrap sys.stdout and sys.stderr (idempotent)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Console):
            setattr(sys, name, _Console(stream, name))


def report_to(callback: Callable[[str], Any]) -> None:
    """From now on a console that fails is reported through `callback` (and any earlier one)."""
    global _on_gone
    _on_gone = callback
    while _pending:
        callback(_pending.pop(0))


def _report(message: str) -> None:
    if _on_gone is None:
        _pending.append(message)
    else:
        _on_gone(message)
