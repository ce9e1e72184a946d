"""The job classes of Pioreactor's plugin API besides BackgroundJob (import them from `base`).

    class AirPump(BackgroundJobContrib):       # a plugin's job: `plugin_name` is its log source
        job_name = "air_pump"
        def __init__(self, unit, experiment):
            super().__init__(unit=unit, experiment=experiment, plugin_name="pioreactor_air_pump")

`LongRunningBackgroundJob` / `LongRunningBackgroundJobContrib` are jobs that outlive experiments
(a log forwarder, a display): the daemon records them `is_long_running_job = 1` and
`pioctl stop --all` leaves them running.
"""

from __future__ import annotations

from typing import Any

from .base import BackgroundJob


def _require_job_name(cls: type, given: str | None) -> None:
    if not (given or getattr(cls, "job_name", None)):
        raise NameError(f"must provide a job_name property to this BackgroundJob class {cls}.")


class BackgroundJobContrib(BackgroundJob):
    """A plugin's job (Pioreactor's signature: unit, experiment, plugin_name)."""

    def __init__(self, unit: str | None = None, experiment: str | None = None,
                 plugin_name: str | None = None, **kwargs: Any) -> None:
        _require_job_name(type(self), kwargs.get("job_name"))
        source = plugin_name or kwargs.pop("source", None)
        super().__init__(unit=unit, experiment=experiment, source=source, **kwargs)


class LongRunningBackgroundJob(BackgroundJob):
    """A built-in-style job that outlives experiments."""

    _IS_LONG_RUNNING = True


class LongRunningBackgroundJobContrib(BackgroundJobContrib):
    """A plugin's job that outlives experiments (e.g. logs forwarded to a chat)."""

    _IS_LONG_RUNNING = True
