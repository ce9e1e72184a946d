"""The life of a job, from reservation to its end: the one place a job's fate is decided.

Read in this order (a job's life): `start` (reserve the name, refused before any job code runs;
spawn; watch its pidfd and pipes) -> `register` (its channel says hello: a spawned job is matched
by its token, one started by hand is reserved now, one from before a daemon restart is adopted
with its state, settings, subscriptions and pins) -> state/setting events (retained MQTT +
SQLite) -> ending.py (`stop`, escalation, `finish`: what its end means and what it releases).
adoption.py is what outlives a daemon: adopting a previous daemon's jobs, resume_jobs, restart =
on-failure. The class is built in that order: Ending <- Adoption <- Supervisor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import structlog

from .adoption import Adoption, boot_id
from .children import Child, OutputPipes, Spawner, SpawnRequest, watch_pid
from .config import Config
from .ending import STACK_DUMP_WAIT, Reply
from .gpio import GpioService
from .jobchannel import JobChannel, Peer
from .logs import LogHub, LogRecord
from .loop import Loop
from .protocol import (
    EXPERIMENT_ENV,
    JOB_SOCKET_ENV,
    JOB_TOKEN_ENV,
    SHORT_ACTIONS,
    UNIT_ENV,
    CommandError,
    new_id,
    to_wire,
    utc_timestamp,
)
from .reexec import DAEMON_ONLY_ENV
from .registry import AlreadyRunning, Job, Registry
from .restarts import Restarts
from .sink import (
    INSERT_JOB,
    SAVE_RESUME,
    SAVE_SETTINGS_META,
    UPDATE_JOB_PID,
    UPSERT_SETTING,
    Sink,
)

log = structlog.get_logger("pioreactord.supervisor")

__all__ = ["Reply", "Supervisor", "refusal"]

class Supervisor(Adoption):
    """Built after the job channel it talks to jobs through (it sends; the channel's messages
    come back as calls here, through jobmessages.py)."""

    def __init__(self, *, config: Config, loop: Loop, registry: Registry, sink: Sink, hub: LogHub,
                 spawner: Spawner, job_channel: JobChannel, gpio: GpioService,
                 publish: Callable[..., Any], subscribe: Callable[[str], None],
                 unsubscribe: Callable[[str], None], experiment: Callable[[], str],
                 on_jobs_changed: Callable[[], None] = lambda: None):
        self.config, self.loop, self.registry, self.sink, self.hub = config, loop, registry, sink, hub
        self.job_channel, self.gpio = job_channel, gpio
        self._spawner = spawner
        self._publish = publish
        self._subscribe, self._unsubscribe = subscribe, unsubscribe
        self._experiment = experiment
        self._on_jobs_changed = on_jobs_changed  # a job was added or ended (systemd STATUS=)
        self._next_job_id = sink.next_job_id()
        self._ready_waiters: dict[int, list[Reply]] = {}
        self._gone_waiters: dict[int, list[Reply]] = {}
        self.child_pids: set[int] = set()  # spawned and not collected yet (see reap_orphans)
        self._awaited: set[str] = set()  # jobs from before a restart, not re-registered yet
        self.stopping = False  # the daemon is exiting (stop_all): nothing new starts
        self.restarts = Restarts()
        self._exit_deadline = 0.0

    # --- starting ------------------------------------------------------------------------------
    def start(self, job_name: str, args: list[str], *, experiment: str | None = None,
              on_ready: Reply | None = None) -> Job:
        """Reserve and spawn. Raises AlreadyRunning before anything is spawned, CommandError
        (refused) while the daemon is exiting."""
        if self.stopping:
            raise CommandError("pioreactord is shutting down", "refused")
        job = Job(name=job_name, job_id=self._allocate_job_id(), token=new_id(),
                  experiment=experiment or self._experiment(), source="app",
                  unique=job_name not in SHORT_ACTIONS, command=(job_name, *args))
        self.registry.reserve(job)
        if on_ready:
            self._ready_waiters.setdefault(job.job_id, []).append(on_ready)
        try:
            child = self._spawner.spawn(SpawnRequest(job_name, tuple(args), self._job_env(job)))
        except OSError as exc:
            self.registry.forget(job)
            self._answer(self._ready_waiters.pop(job.job_id, []),
                         error=f"cannot start {job_name}: {exc}", code="spawn_failed")
            raise
        self.watch_process(job, child.pid, child)
        self._on_jobs_changed()
        log.debug("spawned", job=job_name, pid=child.pid, via=child.via, args=" ".join(args))
        return job

    def job_env_base(self) -> dict[str, str]:
        """The environment of any process running job code (jobs, the plugin catalog)."""
        env = dict(os.environ)
        env.update({"PIOREACTORD_CONFIG": self.config.path, UNIT_ENV: self.config.unit,
                    JOB_SOCKET_ENV: str(self.config.job_socket), "PYTHONUNBUFFERED": "1"})
        env.pop("NOTIFY_SOCKET", None)  # only the daemon talks to systemd
        env.pop("WATCHDOG_USEC", None)
        for key in DAEMON_ONLY_ENV:  # what the daemon hands its own re-exec'd image
            env.pop(key, None)
        return env

    def _job_env(self, job: Job) -> dict[str, str]:
        return {**self.job_env_base(), JOB_TOKEN_ENV: job.token or "",
                EXPERIMENT_ENV: job.experiment}

    def watch_process(self, job: Job, pid: int, child: Child | None) -> bool:
        """Watch a process's end (and its output, if we hold its pipes)."""
        job.pid, job.child = pid, child
        job.pidfd = child.pidfd if child else watch_pid(pid)
        if child and child.is_child:
            self.child_pids.add(pid)
        if job.pidfd is None:
            return False
        self.loop.watch(job.pidfd, lambda: self._ended(job))
        if child:
            job.pipes = OutputPipes(self.loop, child, job.output, lambda is_stderr, text: self._log(
                job, "ERROR" if is_stderr else "INFO", text))
            job.pipes.watch()
        return True

    def _allocate_job_id(self) -> int:
        job_id, self._next_job_id = self._next_job_id, self._next_job_id + 1
        return job_id

    # --- the job channel -----------------------------------------------------------------------
    def register(self, identity: bytes, msg: dict[str, Any], peer: Peer | None) -> dict[str, Any]:
        """A job says who it is; the kernel says which process it is (`peer`). Returns the reply
        (refusals included)."""
        name, pid = str(msg["job_name"]), int(msg["pid"])
        if peer is None or peer.pid != pid:
            return self._impostor(name, pid, peer)
        job = self.registry.by_token(msg["token"]) if msg.get("token") else None
        if job is not None and job.pid not in (None, pid):
            # Its token, another process: a fork the fork server reported too late to be used.
            return refusal(AlreadyRunning(job.name, job.pid))
        if job is None:
            job = self.registry.jobs.get(name)
            if job is not None and job.pid == pid:  # the same process again (daemon restarted)
                pass
            elif job is not None:
                return refusal(AlreadyRunning(name, job.pid))
            else:
                job = self._register_by_hand(name, pid, msg)
                if job is None:
                    return {"ok": False, "error": f"process {pid} is gone", "code": "gone"}
        renamed = job.name != name
        try:
            self.registry.rename(job, name)
        except AlreadyRunning as exc:
            return refusal(exc)
        if renamed:
            self._on_jobs_changed()
        self.registry.attach(job, identity)
        job.source = str(msg.get("source") or job.source)
        job.settings = {k: dict(v) for k, v in (msg.get("settings") or {}).items()}
        job.is_long_running = bool(msg.get("long_running", False))
        job.experiment = str(msg.get("experiment") or job.experiment)  # `$experiment`, say
        job.version = str(msg["version"]) if msg.get("version") else None
        job.uid, job.stack_dump = peer.uid, bool(msg.get("stack_dump"))
        if job.row_written:
            self.sink.write(UPDATE_JOB_PID, (pid, job.name, job.job_id))
        else:
            self._write_row(job)
        self.sink.write(SAVE_SETTINGS_META, (job.job_id, json.dumps(job.settings)))
        if job.command is not None and job.unique:  # spawned here, not a short action
            self.sink.write(SAVE_RESUME, (job.job_id, job.name, job.experiment,
                                          json.dumps(list(job.command)), boot_id()))
        if msg.get("adopt"):
            self._restore(job, msg)
            self.gpio.adopt(job, msg.get("pins") or [], msg.get("driven") or [])
            log.info("job adopted after a restart", job=job.name, pid=pid, state=job.state)
            self._adoption_settled(job)
        else:
            log.debug("registered", job=job.name, pid=pid)
        return {"ok": True, "result": {"unit": self.config.unit, "experiment": job.experiment,
                                       "job_id": job.job_id}}

    def _impostor(self, name: str, pid: int, peer: Peer | None) -> dict[str, Any]:
        who = f"pid {peer.pid}, uid {peer.uid}" if peer else "a process the kernel did not name"
        log.warning(f"refused the registration of {name}: it claims pid {pid}, but the connection "
                    f"is {who}")
        return {"ok": False, "error": f"pid {pid} is not the pid of this connection",
                "code": "refused"}

    def _register_by_hand(self, name: str, pid: int, msg: dict[str, Any]) -> Job | None:
        job = Job(name=name, job_id=self._allocate_job_id(), token=None,
                  experiment=str(msg.get("experiment") or self._experiment()),
                  source=str(msg.get("source") or "app"))
        self.registry.reserve(job)
        if not self.watch_process(job, pid, None):
            self.registry.forget(job)
            return None
        self._on_jobs_changed()
        return job

    def _write_row(self, job: Job) -> None:
        """A job gets its pio_job_metadata row once it registers: a command that never became a
        job (unknown name, bad option, import error) is a log line, not a job."""
        job.row_written = True
        self.sink.write(INSERT_JOB, (job.job_id, self.config.unit, job.experiment, job.name,
                                     job.source, job.started_at, self.config.unit, job.pid,
                                     int(job.is_long_running)))

    def _restore(self, job: Job, msg: dict[str, Any]) -> None:
        """Re-adoption after a daemon restart: take back the job's state, values, subscriptions."""
        for pattern in msg.get("subscriptions") or []:
            self.subscribe(job, pattern)
        for name, value in (msg.get("values") or {}).items():
            self.setting_changed(job, name, value)
        if msg.get("state"):
            self.state_changed(job, str(msg["state"]))

    def state_changed(self, job: Job, state: str) -> None:
        job.state = state
        job.reached_ready = job.reached_ready or state == "ready"
        if state == "ready":  # the caller waits for the job, not for our write to the broker
            self._answer(self._ready_waiters.pop(job.job_id, []), result=self.describe(job))
        self._publish(self.topic(job, "$state"), state.encode(), qos=2, retain=True)

    def setting_changed(self, job: Job, name: str, value: str | None) -> None:
        wire = to_wire(value)
        job.values[name] = wire
        self._publish(self.topic(job, name), wire, qos=2, retain=True)
        now = utc_timestamp()
        self.sink.write(UPSERT_SETTING, (name, wire.decode("utf-8", "replace"), now, now, job.job_id))

    def subscribe(self, job: Job, pattern: str) -> None:
        if pattern in job.subscriptions:
            return
        job.subscriptions.add(pattern)
        self._subscribe(pattern)

    def heartbeat(self, job: Job, busy: float) -> None:
        """A job's ping: `busy` s its running callback has not returned (0: none runs). Past
        hung_job_warning, one WARNING with its stacks per callback; it is not stopped."""
        if busy < self.config.hung_job_warning:
            job.hung_reported = False
            return
        if job.hung_reported or not self.ask_for_stacks(job):
            return
        job.hung_reported = True
        headline = (f"{job.name} (pid {job.pid}): a callback has not returned for {busy:.0f} s "
                    f"(hung_job_warning = {self.config.hung_job_warning:g}); not stopping it")
        self.loop.call_later(STACK_DUMP_WAIT, lambda: self.log_stacks(job, headline))

    def said_bye(self, job: Job) -> None:
        job.said_bye = True

    def job_log(self, job: Job, msg: dict[str, Any], origin: tuple[str, int] | None = None) -> None:
        """A job's log line, under its own name, experiment and source (whatever the message
        says), stamped when the job emitted it (lines buffered while the daemon was away keep
        their time). The log hub cuts a line longer than limits.MAX_LOG_LINE. `origin`: (job
        instance, seq) of a numbered line, committed with it (confirm.py)."""
        self.hub.emit(LogRecord.now(msg.get("level", "INFO"), str(msg.get("message", "")),
                                    job.name, job.experiment, job.source,
                                    timestamp=str(msg.get("timestamp") or ""), origin=origin))



def refusal(exc: AlreadyRunning) -> dict[str, Any]:
    return {"ok": False, "error": str(exc), "code": "already_running", "holder_pid": exc.pid}
