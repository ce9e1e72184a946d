"""Jobs driven over MQTT (SPEC §4). `{unit}` is this unit or `$broadcast`.

    pioreactor/{unit}/{exp}/{job}/{setting}/set  -> the job casts and applies it
    pioreactor/{unit}/{exp}/{job}/$state/set     -> ready: start (config defaults) or resume;
                        (also state/set)            sleeping: pause (ignored when not running);
                                                    disconnected: stop; else a WARNING line
    pioreactor/{unit}/{exp}/run/{job}            -> start with arguments (`runargs`); a bad
                                                    payload or a failed start is an ERROR line
    pioreactor/{this unit}/$experiment/assignment -> the leader's {"experiment": name}: the
                                                    unit's experiment from now on

Retained messages (delivered from the broker's store) are ignored, so a stale retained `ready`
never starts a job after a reboot — except the assignment, which is state and counts retained.
`{exp}` must be the unit's experiment or `$experiment` (the job then runs under `$experiment`);
a running job is also addressed by the experiment it started under. Otherwise: ignored, logged.
Everything goes through `operations.Operations`, like pioctl's commands. Log lines have task `pioreactord`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import structlog

from . import runargs
from .bridge import Incoming
from .protocol import CommandError
from .registry import AlreadyRunning

if TYPE_CHECKING:
    from .operations import Operations

log = structlog.get_logger("pioreactord.remote")

STATE_LEAVES = ("$state", "state")
STATES = ("ready", "sleeping", "disconnected")


def subscriptions(unit: str) -> list[str]:
    return [*(f"pioreactor/{u}/+/+/+/set" for u in (unit, "$broadcast")),
            *(f"pioreactor/{u}/+/run/+" for u in (unit, "$broadcast")),
            assignment_topic(unit)]


def assignment_topic(unit: str) -> str:
    return f"pioreactor/{unit}/$experiment/assignment"


class Remote:
    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def handle(self, message: Incoming) -> None:
        if message.topic == assignment_topic(self.ops.unit):
            return self._assignment(message.payload)
        parts = message.topic.split("/")
        if message.retain or parts[0] != "pioreactor" or len(parts) < 5:
            return
        if parts[1] not in (self.ops.unit, "$broadcast"):
            return
        if len(parts) == 6 and parts[5] == "set":
            experiment, job_name, leaf = parts[2:5]
            value = message.payload.decode("utf-8", errors="replace").strip()
            if leaf in STATE_LEAVES:
                self._state_request(experiment, job_name, value)
            else:
                self._setting_request(experiment, job_name, leaf, value)
        elif len(parts) == 5 and parts[3] == "run":
            self._run_request(parts[2], parts[4], message.payload)

    def _experiment_ok(self, experiment: str, job_experiment: str | None) -> bool:
        return experiment in ("$experiment", self.ops.experiment(), job_experiment)

    def _setting_request(self, experiment: str, job_name: str, setting: str, value: str) -> None:
        job = self.ops.job(job_name)
        if job is None or not job.registered or not self._experiment_ok(experiment, job.experiment):
            return
        self.ops.set(job, setting, value)

    def _state_request(self, experiment: str, job_name: str, state: str) -> None:
        job = self.ops.job(job_name)
        if not self._experiment_ok(experiment, job.experiment if job else None):
            return _wrong_experiment(f"{job_name}/$state/set", experiment, self.ops.experiment())
        if state not in STATES:
            log.warning(f"ignored {job_name}/$state/set: unknown state {state!r} "
                        f"(expected one of {', '.join(STATES)})")
            return
        if job is None:
            if state == "ready":
                self._start(job_name, [], experiment, f"{job_name}/$state/set ready")
            return
        if state == "disconnected":
            self.ops.stop(job)
        elif job.registered:
            self.ops.set_state(job, state)

    def _run_request(self, experiment: str, job_name: str, payload: bytes) -> None:
        what = f"run/{job_name}"
        if not self._experiment_ok(experiment, None):
            return _wrong_experiment(what, experiment, self.ops.experiment())
        try:
            args = runargs.parse(payload)
        except runargs.BadRunRequest as exc:
            log.error(f"{what} refused: {exc}; nothing started")
            return
        self._start(job_name, args, experiment, what)

    def _start(self, job_name: str, args: list[str], experiment: str, what: str) -> None:
        def started(answer: dict[str, Any]) -> None:
            if not answer.get("ok"):
                log.error(f"{what} failed: {answer.get('error')}")

        try:
            self.ops.start(job_name, args, on_ready=started,
                           experiment=experiment if experiment == "$experiment" else None)
        except (AlreadyRunning, CommandError, OSError) as exc:
            log.error(f"{what} refused: {exc}")

    def _assignment(self, payload: bytes) -> None:
        if not payload:
            return  # the leader cleared it: the unit keeps its experiment
        try:
            name = json.loads(payload.decode("utf-8"))["experiment"]
            if not isinstance(name, str):
                raise TypeError("experiment must be a string")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            log.error(f"ignored experiment assignment {payload[:200]!r}: expected JSON "
                      f'{{"experiment": "<name>"}} ({type(exc).__name__}: {exc})')
            return
        if name.strip() == self.ops.experiment():
            return
        try:
            self.ops.set_experiment(name)
        except CommandError as exc:
            log.error(f"ignored experiment assignment: {exc}")


def _wrong_experiment(what: str, experiment: str, current: str) -> None:
    log.warning(f"ignored {what} for experiment {experiment!r}: this unit's experiment is "
                f"{current!r} (or use $experiment)")
