"""The life of a job, from reservation to its end. The one place a job's fate is decided.

    start()  reserve the name (refused before any job code runs) -> spawn -> watch pidfd and pipes
    register()  the job's channel says hello (spawned: matched by token; by hand: reserved now)
    state/setting events  -> retained MQTT + SQLite
    stop()   ask over the channel -> after stop_timeout SIGTERM -> 2 s later SIGKILL
    _ended() pidfd readable: decode the exit once, then release everything the job held:
             $state (disconnected if it said bye and exited 0, else lost), non-persist settings
             cleared, pins driven to 0 and unlocked, subscriptions dropped, metadata row closed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog

from .children import Child, ExitInfo, Spawner, SpawnRequest, collect_exit, send_signal, watch_pid
from .config import Config
from .logs import LogHub, LogRecord
from .loop import Loop
from .protocol import (
    EXIT_REFUSED,
    EXIT_UNKNOWN_JOB,
    EXPERIMENT_ENV,
    JOB_SOCKET_ENV,
    JOB_TOKEN_ENV,
    SHORT_ACTIONS,
    UNIT_ENV,
    new_id,
    to_wire,
    utc_timestamp,
)
from .registry import AlreadyRunning, Job, Registry
from .sink import END_JOB, INSERT_JOB, SAVE_SETTINGS_META, UPDATE_JOB_PID, UPSERT_SETTING, Sink

log = structlog.get_logger("pioreactord.supervisor")

Reply = Callable[[dict[str, Any]], None]
SIGKILL_AFTER_SIGTERM = 2.0
OUTPUT_QUIET = 0.05  # seconds without output before held stdout/stderr becomes one log record


class Supervisor:
    def __init__(self, *, config: Config, loop: Loop, registry: Registry, sink: Sink, hub: LogHub,
                 spawner: Spawner, publish: Callable[..., Any], send_job: Callable[..., None],
                 subscribe: Callable[[str], None], unsubscribe: Callable[[str], None],
                 experiment: Callable[[], str], release_pins: Callable[..., None],
                 on_jobs_changed: Callable[[], None] = lambda: None):
        self.config, self.loop, self.registry, self.sink, self.hub = config, loop, registry, sink, hub
        self._spawner = spawner
        self._publish = publish
        self._send_job = send_job
        self._subscribe, self._unsubscribe = subscribe, unsubscribe
        self._experiment = experiment
        self._release_pins = release_pins
        self._on_jobs_changed = on_jobs_changed  # a job was added or ended (systemd STATUS=)
        self._next_job_id = sink.next_job_id()
        self._ready_waiters: dict[int, list[Reply]] = {}
        self._gone_waiters: dict[int, list[Reply]] = {}
        self._held_output: dict[tuple[int, bool], list[str]] = {}
        self.child_pids: set[int] = set()  # spawned and not collected yet (see reap_orphans)

    # --- starting ------------------------------------------------------------------------------
    def start(self, job_name: str, args: list[str], *, experiment: str | None = None,
              on_ready: Reply | None = None) -> Job:
        """Reserve and spawn. Raises AlreadyRunning before anything is spawned."""
        job = Job(name=job_name, job_id=self._allocate_job_id(), token=new_id(),
                  experiment=experiment or self._experiment(), source="app",
                  unique=job_name not in SHORT_ACTIONS)
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
            for fd, is_err in ((child.stdout_fd, False), (child.stderr_fd, True)):
                if fd is not None:
                    self.loop.watch(fd, functools.partial(self._read_output, job, fd, is_err))
        return True

    def _allocate_job_id(self) -> int:
        job_id, self._next_job_id = self._next_job_id, self._next_job_id + 1
        return job_id

    # --- the job channel -----------------------------------------------------------------------
    def register(self, identity: bytes, msg: dict[str, Any]) -> dict[str, Any]:
        """A job says who it is. Returns the reply (refusals included)."""
        name, pid = str(msg["job_name"]), int(msg["pid"])
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
        job.is_long_running = bool(msg.get("long_running", True))
        job.version = str(msg["version"]) if msg.get("version") else None
        if job.row_written:
            self.sink.write(UPDATE_JOB_PID, (pid, job.name, job.job_id))
        else:
            self._write_row(job)
        self.sink.write(SAVE_SETTINGS_META, (job.job_id, json.dumps(job.settings)))
        if msg.get("adopt"):
            self._restore(job, msg)
            log.info("job adopted after a restart", job=job.name, pid=pid, state=job.state)
        else:
            log.debug("registered", job=job.name, pid=pid)
        return {"ok": True, "result": {"unit": self.config.unit, "experiment": job.experiment,
                                       "job_id": job.job_id}}

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
        self._publish(self.topic(job, "$state"), state.encode(), qos=2, retain=True)
        if state == "ready":
            self._answer(self._ready_waiters.pop(job.job_id, []), result=self.describe(job))

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

    def said_bye(self, job: Job) -> None:
        job.said_bye = True

    def job_log(self, job: Job | None, msg: dict[str, Any]) -> None:
        """A job's log line, stamped when the job emitted it (lines buffered while the daemon
        was away keep their time); a job not registered (yet) says its experiment itself."""
        experiment = job.experiment if job else str(msg.get("experiment") or self._experiment())
        record = LogRecord.now(msg.get("level", "INFO"), str(msg.get("message", "")),
                               str(msg.get("task") or (job.name if job else "?")), experiment,
                               str(msg.get("source") or (job.source if job else "app")))
        if msg.get("timestamp"):
            record = dataclasses.replace(record, timestamp=str(msg["timestamp"]))
        self.hub.emit(record)

    def topic(self, job: Job, leaf: str) -> str:
        return f"pioreactor/{self.config.unit}/{job.experiment}/{job.name}/{leaf}"

    # --- stopping ------------------------------------------------------------------------------
    def stop(self, job: Job, on_gone: Reply | None = None) -> None:
        """Ask, then SIGTERM after stop_timeout, then SIGKILL 2 s later. Never blocks."""
        if on_gone:
            self._gone_waiters.setdefault(job.job_id, []).append(on_gone)
        if job.stop_requested:
            return
        job.stop_requested = True
        if job.registered:
            self._send_job(job.identity, {"t": "state_set", "state": "disconnected",
                                          "id": new_id()})
            self.loop.call_later(self.config.stop_timeout, lambda: self._escalate(job))
        else:  # not talking to us yet (still importing): nothing to ask
            self._escalate(job)

    def _escalate(self, job: Job) -> None:
        if self.registry.jobs.get(job.name) is not job or job.pid is None:
            return
        log.warning("job did not stop in time; sending SIGTERM", job=job.name, pid=job.pid)
        send_signal(job.pid, signal.SIGTERM)
        self.loop.call_later(SIGKILL_AFTER_SIGTERM, lambda: self._kill(job))

    def _kill(self, job: Job) -> None:
        if self.registry.jobs.get(job.name) is job and job.pid is not None:
            log.error("job ignored SIGTERM; sending SIGKILL", job=job.name, pid=job.pid)
            send_signal(job.pid, signal.SIGKILL)

    # --- liveness ------------------------------------------------------------------------------
    def check_liveness(self) -> None:
        """Every few seconds: warn, once per silence, about a job that has sent nothing for
        `silent_job_warning` s (registered jobs ping every 2 s: it is hung or stopped), or that
        has not come back since a restart. Nobody is stopped: a long computation is not a crash."""
        limit, now = self.config.silent_job_warning, time.monotonic()
        for job in list(self.registry.jobs.values()):
            from_before_restart = job.child is None and not job.registered
            if not (job.registered or from_before_restart) or now - job.last_seen < limit:
                continue
            if job.silence_reported == job.last_seen:
                continue
            job.silence_reported = job.last_seen
            what = ("has not registered again since pioreactord restarted" if from_before_restart
                    else f"has sent nothing for {now - job.last_seen:.0f} s (jobs ping every 2 s)")
            self._log(job, "WARNING", f"{job.name} (pid {job.pid}) {what}; not stopping it")
        self.loop.call_later(min(5.0, limit / 2), self.check_liveness)

    # --- the end -------------------------------------------------------------------------------
    def _read_output(self, job: Job, fd: int, is_stderr: bool) -> None:
        texts, eof = job.output.read(fd, is_stderr)
        if texts:
            # Output arrives in pipe-sized pieces: a traceback is one record if we wait for a
            # quiet moment before logging it.
            held = self._held_output.setdefault((job.job_id, is_stderr), [])
            if not held:
                self.loop.call_later(OUTPUT_QUIET, lambda: self._flush_output(job, is_stderr))
            held.extend(texts)
        if eof:
            self.loop.unwatch(fd)
            os.close(fd)
            if job.child:
                if fd == job.child.stdout_fd:
                    job.child.stdout_fd = None
                else:
                    job.child.stderr_fd = None

    def _ended(self, job: Job) -> None:
        exit_info = collect_exit(job.pid or 0, bool(job.child and job.child.is_child))
        self.child_pids.discard(job.pid or 0)
        self._drain_output(job)
        self.loop.unwatch(job.pidfd)
        os.close(job.pidfd)  # type: ignore[arg-type]
        clean = job.said_bye and exit_info.exit_code in (0, None)
        self.finish(job, exit_info, clean)

    def _flush_output(self, job: Job, is_stderr: bool) -> None:
        texts = self._held_output.pop((job.job_id, is_stderr), [])
        if texts:
            self.hub.emit(LogRecord.now("ERROR" if is_stderr else "INFO", "\n".join(texts),
                                        job.name, job.experiment, job.source))

    def _drain_output(self, job: Job) -> None:
        """The process is gone: log what is left in its pipes, then close them."""
        if not job.child:
            return
        for fd, is_err in ((job.child.stdout_fd, False), (job.child.stderr_fd, True)):
            if fd is None:
                continue
            self._held_output.setdefault((job.job_id, is_err), []).extend(job.output.drain(fd, is_err))
            self._flush_output(job, is_err)
            self.loop.unwatch(fd)
            os.close(fd)
        job.child.stdout_fd = job.child.stderr_fd = None

    def finish(self, job: Job, exit_info: ExitInfo, clean: bool) -> None:
        """Release everything `job` held. Called exactly once per job, whatever ended it."""
        end_state = "disconnected" if clean else "lost"
        freed = self.registry.forget(job)
        if job.state != end_state and job.row_written:  # it registered, here or before a restart
            self._publish(self.topic(job, "$state"), end_state.encode(), qos=2, retain=True)
        for name, meta in job.settings.items():
            if not meta.get("persist") and name != "state":
                self._publish(self.topic(job, name), b"", qos=2, retain=True)
        self._release_pins(job, [lock.pin for lock in freed], crashed=not clean)
        self._on_jobs_changed()
        for pattern in job.subscriptions:
            self._unsubscribe(pattern)
        if job.row_written:
            self.sink.write(END_JOB, (utc_timestamp(), exit_info.exit_code, end_state, job.job_id))
        self._report_end(job, exit_info, clean)
        self._answer(self._gone_waiters.pop(job.job_id, []),
                     result={"job_name": job.name, "end_state": end_state,
                             "exit_code": exit_info.exit_code})

    def _report_end(self, job: Job, exit_info: ExitInfo, clean: bool) -> None:
        waiters = self._ready_waiters.pop(job.job_id, [])
        if exit_info.exit_code == EXIT_UNKNOWN_JOB and not job.registered:
            message = _last_line(job) or f"unknown job {job.name!r}"
            self._answer(waiters, error=message, code="unknown_job")
            return
        if exit_info.exit_code == EXIT_REFUSED and not job.registered:
            self._answer(waiters, error=_last_line(job) or "refused", code="already_running")
            return
        if clean or (exit_info.exit_code == 0 and not job.registered):
            # A short action (runs, acts, exits 0 without registering) has succeeded.
            self._answer(waiters, result={**self.describe(job), "finished": True})
            self._log(job, "INFO", f"{job.name} {'stopped' if job.registered else 'finished'}")
            return
        tail = "\n".join(job.output.stderr_tail)
        message = f"{job.name} {exit_info.describe()} (pid {job.pid}); state lost"
        self._log(job, "ERROR", message + (f"\n{tail}" if tail else ""))
        self._answer(waiters, error=f"{job.name} failed during start: {exit_info.describe()}"
                     + (f"\n{tail}" if tail else ""), code="start_failed")

    def _log(self, job: Job, level: str, message: str) -> None:
        self.hub.emit(LogRecord.now(level, message, job.name, job.experiment, job.source))

    def describe(self, job: Job) -> dict[str, Any]:
        return {"job_name": job.name, "state": job.state, "pid": job.pid,
                "experiment": job.experiment, "job_id": job.job_id, "source": job.source,
                "started_at": job.started_at, "uptime": round(time.monotonic() - job.started_mono, 3),
                "version": job.version,
                "settings": {k: v.decode("utf-8", "replace") for k, v in job.values.items()}}

    @staticmethod
    def _answer(waiters: list[Reply], *, result: Any = None, error: str | None = None,
                code: str = "failed") -> None:
        reply = {"ok": False, "error": error, "code": code} if error else {"ok": True, "result": result}
        for waiter in waiters:
            waiter(reply)


def refusal(exc: AlreadyRunning) -> dict[str, Any]:
    return {"ok": False, "error": str(exc), "code": "already_running", "holder_pid": exc.pid}


def _last_line(job: Job) -> str:
    return job.output.stderr_tail[-1].strip() if job.output.stderr_tail else ""
