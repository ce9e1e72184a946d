"""A job's raw stdout/stderr turned into log lines, in constant memory and CPU per byte.

Lines end at `\\n`, `\\r\\n` or `\\r`. What is held between reads is one unfinished line, at
most `MAX_LOG_LINE` bytes: the rest of a longer line is counted, not kept, and the line is logged
cut, with a marker giving its size. Every byte is looked at once (no buffer re-joined per read).

A segment ended by a lone `\\r` is a progress bar redrawing its line (tqdm, click): it replaces
the previous one, as on a terminal. The newest is logged at most once per `PROGRESS_EVERY` s,
and at the end of the stream; a `\\n` line that follows overwrites it (the terminal's last
picture of that line is the `\\n` one), so a bar at 100 updates/s makes one log line a second.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque

from .limits import CUT_MARKER_ROOM, MAX_LOG_LINE, cut_marker

STDERR_TAIL_LINES = 20
READ_SIZE = 65536
PROGRESS_EVERY = 1.0
_LINE_END = re.compile(rb"\r\n|\r|\n")


class _Stream:
    """One pipe's unfinished line (bounded) and its newest progress redraw."""

    __slots__ = ("head", "size", "progress", "progress_at")

    def __init__(self) -> None:
        self.head = bytearray()
        self.size = 0  # the whole line's length, kept part or not
        self.progress: str | None = None
        self.progress_at = 0.0

    def add(self, piece: bytes, limit: int) -> None:
        room = limit - len(self.head)
        if room > 0:
            self.head += piece[:room]
        self.size += len(piece)

    def take(self) -> str:
        text = self.head.decode("utf-8", errors="replace")
        if self.size > len(self.head):
            text += cut_marker(self.size)
        self.head.clear()
        self.size = 0
        return text


class OutputCapture:
    """Turns a job's stdout/stderr into log lines; keeps the last stderr lines for crash reports."""

    def __init__(self, max_line: int = MAX_LOG_LINE - CUT_MARKER_ROOM) -> None:
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._max_line = max_line
        self._streams: dict[int, _Stream] = {}

    def read(self, fd: int, is_stderr: bool) -> tuple[list[str], bool]:
        """Read what is available; returns (complete lines, eof). At eof, the unfinished rest."""
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return [], False
        except OSError:
            data = b""
        if not data:
            return self._finish(fd, is_stderr), True
        return self._split(fd, data, is_stderr), False

    def drain(self, fd: int, is_stderr: bool, max_reads: int = 256) -> list[str]:
        """After the process ended: everything left in the pipe, partial last line included.
        Bounded, and stops at EAGAIN: a grandchild may hold the pipe open forever."""
        texts: list[str] = []
        for _ in range(max_reads):
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            if not data:
                break
            texts += self._split(fd, data, is_stderr)
        return texts + self._finish(fd, is_stderr)

    def _split(self, fd: int, data: bytes, is_stderr: bool) -> list[str]:
        stream = self._streams.get(fd)
        if stream is None:
            stream = self._streams[fd] = _Stream()
        texts: list[str] = []
        start = 0
        for end in _LINE_END.finditer(data):
            stream.add(data[start:end.start()], self._max_line)
            start = end.end()
            text = stream.take()
            if end.group() == b"\r":
                self._progress(stream, text, texts)
            else:
                stream.progress = None  # this line overwrote the bar on the terminal
                if text.strip():
                    texts.append(text)
        stream.add(data[start:], self._max_line)
        if is_stderr:
            self.stderr_tail.extend(texts)
        return texts

    @staticmethod
    def _progress(stream: _Stream, text: str, texts: list[str]) -> None:
        if not text.strip():
            return
        now = time.monotonic()
        if now - stream.progress_at >= PROGRESS_EVERY:
            stream.progress_at, stream.progress = now, None
            texts.append(text)
        else:
            stream.progress = text

    def _finish(self, fd: int, is_stderr: bool) -> list[str]:
        stream = self._streams.pop(fd, None)
        if stream is None:
            return []
        rest = stream.take()  # an unfinished redraw is newer than the held progress line
        last = rest if rest.strip() else stream.progress
        texts = [last] if last else []
        if is_stderr:
            self.stderr_tail.extend(texts)
        return texts
