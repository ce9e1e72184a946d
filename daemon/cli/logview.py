"""`pioctl logs`: read the SQLite log sink directly (read-only; WAL lets us read while the daemon
writes), so logs are there even when the daemon is not."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import click

LEVELS = ["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"]
POLL_SECONDS = 0.5


def _query(job: str | None, level: str | None) -> tuple[str, list]:
    where, params = ["rowid > ?"], []
    if job:
        where.append("task = ?")
        params.append(job)
    if level:
        allowed = LEVELS[LEVELS.index(level.upper()):]
        where.append(f"level IN ({', '.join('?' * len(allowed))})")
        params.extend(allowed)
    return ("SELECT rowid, timestamp, level, task, message, experiment, source FROM logs WHERE "
            + " AND ".join(where)), params


def show_logs(database: Path, *, lines: int, follow: bool, job: str | None, level: str | None,
              as_json: bool) -> None:
    if not database.exists():
        raise click.ClickException(f"no log database at {database} (has pioreactord run yet?)")
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    sql, params = _query(job, level)
    rows = conn.execute(sql + " ORDER BY rowid DESC LIMIT ?", [0, *params, lines]).fetchall()[::-1]
    last = _print(rows, as_json)
    while follow:
        time.sleep(POLL_SECONDS)  # following a file: polling is the point here
        rows = conn.execute(sql + " ORDER BY rowid", [last, *params]).fetchall()
        last = _print(rows, as_json) or last


def _print(rows: list, as_json: bool) -> int:
    for _rowid, timestamp, level, task, message, experiment, source in rows:
        if as_json:
            line = json.dumps({"timestamp": timestamp, "level": level, "task": task,
                               "message": message, "experiment": experiment, "source": source})
        else:
            line = f"{timestamp}  {level:<8} {task:<24} {message}"
        click.echo(line)
    sys.stdout.flush()
    return rows[-1][0] if rows else 0
