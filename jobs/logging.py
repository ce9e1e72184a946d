"""`pioreactor.logging`: the NOTICE level, a job's logger, and `create_logger` for helpers.

Importing this module (every job does, through BackgroundJob) adds Pioreactor's NOTICE level (25)
to the standard library as Pioreactor does: `logging.NOTICE`, `logger.notice(...)`.

Every line a job logs goes to pioreactord over the job's channel with its `task` (the job name,
or the name given to `create_logger`) and `source` (`app`, or the plugin's name); the daemon sends
it on to MQTT, SQLite, the log file and its console. A job started by hand also prints INFO and up
on its terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from pioreactord.protocol import JOB_TOKEN_ENV

NOTICE = logging.INFO + 5
SendLog = Callable[..., None]  # (level name, message, task=..., source=...)


def _add_level(name: str, number: int) -> None:
    def log_at_level(self: Any, message: object, *args: Any, **kwargs: Any) -> None:
        self.log(number, message, *args, **kwargs)

    logging.addLevelName(number, name)
    setattr(logging, name, number)
    for cls in (logging.Logger, logging.LoggerAdapter):
        if not hasattr(cls, name.lower()):
            setattr(cls, name.lower(), log_at_level)
    if not hasattr(logging, name.lower()):
        setattr(logging, name.lower(), lambda message, *a, **k: logging.log(number, message, *a, **k))


_add_level("NOTICE", NOTICE)


class JobLogHandler(logging.Handler):
    """Hands each record to a job's channel (never raises into job code)."""

    def __init__(self, send_log: SendLog, **fields: str) -> None:
        super().__init__(logging.DEBUG)
        self._send_log, self._fields = send_log, fields
        self._plain = logging.Formatter("%(message)s")
        self.setFormatter(self._plain)

    def handle(self, record: logging.LogRecord) -> bool:
        # Without Handler.handle's lock: the channel is thread-safe, and the lock costs a busy
        # logger 1.5 µs a line of the ~10 the whole logging call takes (issue 14).
        if self.filters:
            kept = self.filter(record)
            if not kept:
                return False
            if isinstance(kept, logging.LogRecord):  # (3.12: a filter may hand back a new record)
                record = kept
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # The plain formatter of a line without a traceback gives just the message.
            plain = (self.formatter is self._plain and not record.exc_info and not record.exc_text
                     and not record.stack_info)
            self._send_log(record.levelname, record.getMessage() if plain else self.format(record),
                           **self._fields)
        except Exception:  # noqa: BLE001 - logging must never raise into job code
            self.handleError(record)


def _logger(name: str, handler: logging.Handler | None, label: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.handlers.clear()
    if handler is not None:
        logger.addHandler(handler)
    if handler is None or not os.environ.get(JOB_TOKEN_ENV):  # by hand: the terminal shows it
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.INFO)
        console.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-8s [{label}] %(message)s"))
        logger.addHandler(console)
    return logger


def job_logger(job_name: str, key: int, send_log: SendLog) -> logging.Logger:
    """The logger of one job object (`key` tells two jobs of one name apart)."""
    return _logger(f"pioreactor.jobs.{job_name}.{key}", JobLogHandler(send_log), job_name)


def create_logger(name: str, unit: str | None = None, experiment: str | None = None,
                  source: str = "app", task: str | None = None, to_mqtt: bool = True,
                  pub_client: Any = None, **_: Any) -> logging.Logger:
    """A logger for code beside a job (a helper class, an automation): its lines are logged with
    task `task or name` through the job running in this process. Without a job (a script), or
    with `to_mqtt=False`, only the terminal shows them."""
    from pioreactor.background_jobs import running

    job = running.any_job() if to_mqtt else None
    handler = None
    if job is not None:
        handler = JobLogHandler(job.send_log, task=task or name, source=source)
    return _logger(f"pioreactor.create_logger.{name}", handler, name)
