"""Where every log line goes: MQTT, the SQLite sink, the log file and the console.

Jobs send records over their channel; the daemon's own lines come from structlog (configured in
`configure_structlog`); a job's raw stdout/stderr is turned into records by `children.py`. All of
them end in `LogHub.emit`, so the four destinations never disagree.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from .protocol import utc_timestamp
from .sink import INSERT_LOG, Sink

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")
LEVELS = {"DEBUG": 10, "INFO": 20, "NOTICE": NOTICE, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


@dataclass(frozen=True)
class LogRecord:
    level: str  # upper case, one of LEVELS
    message: str
    task: str  # the job name, or "pioreactord"
    source: str  # "app" for built-in jobs and the daemon, the plugin's name for plugins
    experiment: str
    timestamp: str
    origin: tuple[str, int] | None = None  # (job instance, seq): a numbered line (confirm.py)

    @classmethod
    def now(cls, level: str, message: str, task: str, experiment: str, source: str = "app"):
        return cls(normalise_level(level), message, task, source, experiment, utc_timestamp())


def normalise_level(level: Any) -> str:
    text = str(level).upper()
    if text == "WARN":
        return "WARNING"
    if text == "EXCEPTION":
        return "ERROR"
    return text if text in LEVELS else "INFO"


class LogHub:
    def __init__(self, *, unit: str, sink: Sink, log_file: Path, console_level: str,
                 publish: Callable[[str, bytes], None]) -> None:
        self._unit = unit
        self._sink = sink
        self._publish = publish
        self._file = _file_logger(log_file)
        self._console_level = LEVELS.get(console_level.upper(), 20)

    def emit(self, record: LogRecord) -> None:
        payload = {"message": record.message, "level": record.level, "task": record.task,
                   "source": record.source, "timestamp": record.timestamp}
        topic = (f"pioreactor/{self._unit}/{record.experiment}/logs/{record.source}/"
                 f"{record.level.lower()}")
        self._publish(topic, json.dumps(payload, separators=(",", ":")).encode())
        self._sink.write(INSERT_LOG, (record.experiment, self._unit, record.timestamp,
                                      record.message, record.source, record.level, record.task),
                         origin=record.origin)
        line = f"{record.timestamp} {record.level:<8} [{record.task}] {record.message}"
        self._file.log(LEVELS[record.level], line)
        if LEVELS[record.level] >= self._console_level:
            print(line, file=sys.stderr, flush=True)


def _file_logger(path: Path) -> logging.Logger:
    """A private stdlib logger writing plain lines; WatchedFileHandler reopens after logrotate."""
    logger = logging.getLogger(f"pioreactord.file.{path}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.handlers.clear()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except OSError as exc:
        print(f"pioreactord: cannot write log file {path} ({exc}); logging to the console only",
              file=sys.stderr)
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


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
