"""Where every log line goes: MQTT, the SQLite sink, the log file and the console.

Jobs send records over their channel; the daemon's own lines come from structlog (configured in
`configure_structlog`); a job's raw stdout/stderr is turned into records by `children.py`. All of
them end in `LogHub.emit`, so the four destinations never disagree.
"""

from __future__ import annotations

import json
import json.encoder
import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import structlog

from .limits import MAX_LOG_LINE, cut_text
from .protocol import utc_timestamp
from .sink import Sink

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")
LEVELS = {"DEBUG": 10, "INFO": 20, "NOTICE": NOTICE, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


class LogRecord(NamedTuple):  # (a tuple: made per log line, 3x cheaper than a frozen dataclass)
    level: str  # upper case, one of LEVELS
    message: str
    task: str  # the job name, or "pioreactord"
    source: str  # "app" for built-in jobs and the daemon, the plugin's name for plugins
    experiment: str
    timestamp: str
    origin: tuple[str, int] | None = None  # (job instance, seq): a numbered line (confirm.py)

    @classmethod
    def now(cls, level: str, message: str, task: str, experiment: str, source: str = "app",
            timestamp: str | None = None, origin: tuple[str, int] | None = None):
        """A record stamped now, or at `timestamp` (a job's own stamp: lines it buffered while
        the daemon was away keep their time)."""
        return cls(normalise_level(level), message, task, source, experiment,
                   timestamp or utc_timestamp(), origin)


def normalise_level(level: Any) -> str:
    text = str(level).upper()
    if text == "WARN":
        return "WARNING"
    if text == "EXCEPTION":
        return "ERROR"
    return text if text in LEVELS else "INFO"


class LogHub:
    """Log lines are gathered during one loop pass and written together at its end (`flush`,
    posted with `schedule`): one executemany, one write+flush of the file and of the console,
    and one hand-over of the MQTT messages (about 1/20 of the per-line cost of doing each alone).
    Every line still reaches all four; the order is kept. At most `MAX_BATCH` lines wait."""

    MAX_BATCH = 5000

    def __init__(self, *, unit: str, sink: Sink, log_file: Path, console_level: str,
                 publish_many: Callable[[list[tuple[str, bytes]]], None],
                 schedule: Callable[[Callable[[], None]], None] | None = None) -> None:
        self._unit = unit
        self._sink = sink
        self._publish_many = publish_many
        self._schedule = schedule
        self._file = LogFile(log_file)
        self._console_level = LEVELS.get(console_level.upper(), 20)
        self._batch: list[LogRecord] = []

    def emit(self, record: LogRecord) -> None:
        if len(record.message) > MAX_LOG_LINE:
            record = record._replace(message=cut_text(record.message, MAX_LOG_LINE))
        self._batch.append(record)
        if len(self._batch) == 1 and self._schedule is not None:
            self._schedule(self.flush)
        elif self._schedule is None or len(self._batch) >= self.MAX_BATCH:
            self.flush()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        unit, quote = self._unit, _json_string
        # The payload is what json.dumps of the dict gives, assembled by hand: 5x faster (the
        # level is one of LEVELS, the rest is quoted).
        self._publish_many([
            (f"pioreactor/{unit}/{r.experiment}/logs/{r.source}/{r.level.lower()}",
             f'{{"message":{quote(r.message)},"level":"{r.level}","task":{quote(r.task)},'
             f'"source":{quote(r.source)},"timestamp":{quote(r.timestamp)}}}'.encode())
            for r in batch])
        self._sink.write_logs([(r.experiment, unit, r.timestamp, r.message, r.source, r.level,
                                r.task) for r in batch], [r.origin for r in batch])
        lines = [f"{r.timestamp} {r.level:<8} [{r.task}] {r.message}\n" for r in batch]
        self._file.write("".join(lines))
        floor = self._console_level
        self._console("".join(line for r, line in zip(batch, lines, strict=True)
                              if LEVELS[r.level] >= floor))

    def _console(self, text: str) -> None:
        if not text:
            return
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed or full console must not stop the other three
            pass


_json_string = json.encoder.encode_basestring_ascii  # a str as JSON text, as json.dumps does


class LogFile:
    """Appends to the log file; reopens it when logrotate moved it (checked once per batch).
    A failed write is said once on the console and retried with the next batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None
        self._identity: tuple[int, int] | None = None
        self._error: str | None = None
        self._open()

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
            st = os.fstat(self._handle.fileno())
            self._identity = (st.st_dev, st.st_ino)
        except OSError as exc:
            self._handle = None
            self._failed(exc)

    def _rotated(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def write(self, text: str) -> None:
        if self._handle is None or self._rotated():
            if self._handle is not None:
                self._handle.close()
            self._open()
        if self._handle is None:
            return
        try:
            self._handle.write(text)
            self._handle.flush()
            self._error = None
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if self._error is None:
            print(f"pioreactord: cannot write log file {self.path} ({exc}); the lines go to "
                  "MQTT, SQLite and the console, and are written again once it works",
                  file=sys.stderr, flush=True)
        self._error = str(exc)


def configure_structlog(emit: Callable[[str, str], None]) -> None:
    """Route the daemon's structlog calls into `emit(level, message)` (and so into the hub)."""

    def to_hub(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        event = str(event_dict.pop("event", ""))
        event_dict.pop("level", None)
        extras = " ".join(f"{k}={v}" for k, v in event_dict.items() if not k.startswith("_"))
        emit(normalise_level(method_name), f"{event} ({extras})" if extras else event)
        raise structlog.DropEvent

    structlog.configure(
        processors=[structlog.processors.format_exc_info, to_hub],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
