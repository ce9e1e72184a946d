"""Small helpers the Pioreactor docs and plugins import from `pioreactor.utils`.

`is_pio_job_running` / `pio_jobs_running` ask the running pioreactord (its control socket, one
request each), so they are true for every job on this unit, whoever started it.
"""

from __future__ import annotations

from typing import Any, overload


def clamp(minimum: float, x: float, maximum: float) -> float:
    """`x` limited to [minimum, maximum]."""
    return max(minimum, min(x, maximum))


def running_jobs(timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """job name -> its `pioctl status` row, from the daemon; ConnectionError if it is not there."""
    from pathlib import Path

    from pioreactor.config import config
    from pioreactord.client import Unreachable, call

    runtime_dir = config.get("pioreactord", "runtime_dir", fallback="/run/pioreactord")
    socket = str(Path(runtime_dir) / "control.sock")
    try:
        reply = call(socket, {"t": "call", "cmd": "status", "args": {}}, timeout)
    except Unreachable as exc:
        raise ConnectionError(f"pioreactord is not answering on {socket}: {exc}") from None
    result = reply.get("result")
    rows = result.get("jobs", []) if isinstance(result, dict) else result or []
    return {str(row["job_name"]): row for row in rows}


def pio_jobs_running() -> list[str]:
    """The names of the jobs running on this unit."""
    return sorted(running_jobs())


@overload
def is_pio_job_running(target_jobs: str) -> bool: ...


@overload
def is_pio_job_running(target_jobs: list[str]) -> list[bool]: ...


def is_pio_job_running(target_jobs: str | list[str]) -> bool | list[bool]:
    """Whether the job (or each of the jobs) runs now, as Pioreactor's does: one name in, one
    bool out; a list in, a list out."""
    names = set(running_jobs())
    if isinstance(target_jobs, str):
        return target_jobs in names
    return [name in names for name in target_jobs]
