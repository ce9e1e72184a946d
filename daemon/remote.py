"""Jobs driven over MQTT: `/set` of settings and `$state/set` (SPEC §4).

    pioreactor/{unit|$broadcast}/{exp}/{job}/{setting}/set   -> the job casts and applies it
    pioreactor/{unit|$broadcast}/{exp}/{job}/$state/set      -> ready (start or resume),
                                                                 sleeping, disconnected
Retained messages are ignored: a stale retained `ready` must never start a job after a reboot.
`{exp}` must be the job's experiment, the unit's experiment, or `$experiment`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from .bridge import Incoming
from .registry import AlreadyRunning

if TYPE_CHECKING:
    from .arbiter import Daemon

log = structlog.get_logger("pioreactord.remote")

STATE_LEAVES = ("$state", "state")


def subscriptions(unit: str) -> list[str]:
    return [f"pioreactor/{unit}/+/+/+/set", "pioreactor/$broadcast/+/+/+/set"]


class Remote:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def handle(self, message: Incoming) -> None:
        parts = message.topic.split("/")
        if len(parts) != 6 or parts[0] != "pioreactor" or parts[5] != "set" or message.retain:
            return
        unit, experiment, job_name, leaf = parts[1:5]
        if unit not in (self.daemon.config.unit, "$broadcast"):
            return
        value = message.payload.decode("utf-8", errors="replace").strip()
        if leaf in STATE_LEAVES:
            self._state_request(experiment, job_name, value)
        else:
            self._setting_request(experiment, job_name, leaf, value)

    def _experiment_ok(self, experiment: str, job_experiment: str | None) -> bool:
        return experiment in ("$experiment", self.daemon.experiment(), job_experiment)

    def _setting_request(self, experiment: str, job_name: str, setting: str, value: str) -> None:
        job = self.daemon.registry.jobs.get(job_name)
        if job is None or not job.registered or not self._experiment_ok(experiment, job.experiment):
            return
        self.daemon.jobs.send(job.identity, {"t": "set", "setting": setting, "value": value})

    def _state_request(self, experiment: str, job_name: str, state: str) -> None:
        job = self.daemon.registry.jobs.get(job_name)
        if not self._experiment_ok(experiment, job.experiment if job else None):
            log.warning("ignored $state/set for another experiment", job=job_name,
                        experiment=experiment, unit_experiment=self.daemon.experiment())
            return
        if state not in ("ready", "sleeping", "disconnected"):
            log.warning("ignored $state/set with an unknown state", job=job_name, state=state)
            return
        if job is None:
            if state == "ready":
                self._start(job_name, experiment)
            return
        if state == "disconnected":
            self.daemon.supervisor.stop(job)
        elif job.registered:
            self.daemon.jobs.send(job.identity, {"t": "state_set", "state": state})

    def _start(self, job_name: str, experiment: str) -> None:
        def started(answer: dict) -> None:
            if not answer.get("ok"):
                log.error("remote start failed", job=job_name, error=answer.get("error"))

        try:
            self.daemon.start_job(job_name, [], on_ready=started,
                                  experiment=experiment if experiment == "$experiment" else None)
        except AlreadyRunning:
            pass
