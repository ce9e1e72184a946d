"""What pioctl (commands.py) and MQTT commands (remote.py) may do: the one narrow interface they
get instead of the whole daemon.

    experiment / set_experiment      the unit's experiment
    job(name) / jobs() / locks()     what runs and which pins it holds
    start / stop                     through the supervisor (its refusals included)
    set / set_state                  a request to a running job (answered, or fire and forget)
    describe / job_env               a job as pioctl shows it; the environment of job code
    follow / unfollow                broker subscriptions for `pioctl mqtt` streams

Refusals are `protocol.CommandError` (with its reply code) or `registry.AlreadyRunning`.
"""

from __future__ import annotations

from typing import Any

import structlog

from . import __version__
from .bridge import Bridge
from .experiment import ExperimentStore
from .jobchannel import JobChannel
from .limits import job_args_error
from .names import BadName, check_job_name
from .protocol import CommandError
from .registry import Job, PinLock, Registry
from .sink import Sink
from .supervisor import Reply, Supervisor

log = structlog.get_logger("pioreactord.arbiter")


class Operations:
    def __init__(self, *, unit: str, pid: int, daemon_id: str, supervisor: Supervisor,
                 registry: Registry, job_channel: JobChannel, bridge: Bridge,
                 experiments: ExperimentStore, sink: Sink | None = None, started_at: str = "",
                 exec_at: str = "") -> None:
        self.unit, self.pid, self.daemon_id = unit, pid, daemon_id
        self.started_at, self.exec_at = started_at, exec_at  # pioctl version
        self._supervisor, self._registry, self._channel = supervisor, registry, job_channel
        self._bridge, self._experiments, self._sink = bridge, experiments, sink

    # --- the unit ------------------------------------------------------------------------------
    def experiment(self) -> str:
        return self._experiments.current

    def set_experiment(self, name: str) -> str:
        """Returns the previous experiment; CommandError (bad_request) for a bad name."""
        try:
            previous = self._experiments.set(name)
        except ValueError as exc:
            raise CommandError(str(exc), "bad_request") from None
        log.info("experiment changed", experiment=name, previous=previous)
        return previous

    def daemon_status(self) -> dict[str, Any]:
        """The daemon itself for `pioctl status`: version, pid, when it started and exec'd, and
        the state of its broker connection and of its SQLite sink (their owners' `state()`)."""
        part: dict[str, Any] = {"version": __version__, "pid": self.pid,
                                "started_at": self.started_at, "exec_at": self.exec_at}
        for name, owner in (("broker", self._bridge), ("sink", self._sink)):
            state = getattr(owner, "state", None)
            if callable(state):
                part[name] = state()
        part.setdefault("broker", {"connected": self._bridge.connected})
        return part

    # --- jobs ----------------------------------------------------------------------------------
    def job(self, name: str) -> Job | None:
        return self._registry.jobs.get(name)

    def jobs(self) -> list[Job]:
        return list(self._registry.jobs.values())

    def locks(self) -> list[PinLock]:
        return [lock for _, lock in sorted(self._registry.pins.items())]

    def start(self, name: str, args: list[str], *, on_ready: Reply,
              experiment: str | None = None) -> Job:
        try:
            check_job_name(name)
        except BadName as exc:
            raise CommandError(str(exc), "unknown_job") from None
        too_large = job_args_error(args)  # refused here: never echoed, never sent to a fork
        if too_large:
            raise CommandError(f"{name} not started: {too_large}", "bad_request")
        return self._supervisor.start(name, args, experiment=experiment, on_ready=on_ready)

    def stop(self, job: Job, on_gone: Reply | None = None) -> None:
        """A user's stop (pioctl stop, $state/set disconnected): the job is not resumed."""
        job.user_stopped = True
        self._supervisor.stop(job, on_gone)

    def set(self, job: Job, setting: str, value: str, on_reply: Reply | None = None) -> None:
        """Ask `job` to set `setting` (it casts and checks `value`); without `on_reply` nobody
        waits for its answer (MQTT /set)."""
        self._ask(job, {"t": "set", "setting": setting, "value": value}, on_reply)

    def set_state(self, job: Job, state: str, on_reply: Reply | None = None) -> None:
        self._ask(job, {"t": "state_set", "state": state}, on_reply)

    def _ask(self, job: Job, header: dict[str, Any], on_reply: Reply | None) -> None:
        if on_reply is None:
            self._channel.send(job.identity, header)
        else:
            self._channel.request(job, header, on_reply)

    def describe(self, job: Job) -> dict[str, Any]:
        return self._supervisor.describe(job)

    def job_env(self) -> dict[str, str]:
        return self._supervisor.job_env_base()

    # --- streams -------------------------------------------------------------------------------
    def follow(self, pattern: str) -> None:
        self._bridge.subscribe(pattern, resend_retained=True)

    def unfollow(self, pattern: str) -> None:
        self._bridge.unsubscribe(pattern)

