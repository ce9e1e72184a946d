"""The end of a job: every decision about how a job stops and what its end means.

    stop()       ask over the job channel -> after stop_timeout SIGTERM -> 2 s later SIGKILL
    stop_all()   the daemon is exiting: stop every job within the shutdown budget
    _ended()     its pidfd is readable: decode the exit once, drain its output, then finish()
    finish()     release everything the job held: $state (disconnected if it said bye and exited
                 0, else lost), non-persist settings cleared, pins driven to 0 and unlocked (LEDs
                 too if it crashed), subscriptions dropped, metadata row closed, waiters answered
    reap_orphans()  collect ended descendants that are not jobs (the daemon is a subreaper)

`Ending` is the base of `Adoption` (adoption.py: what outlives a daemon) and of `Supervisor`
(supervisor.py: start, register); it is never used alone.
"""

from __future__ import annotations

import functools
import os
import signal
import stat
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from .children import ExitInfo, Spawner, collect_exit, reap_orphans, signal_process
from .config import Config
from .logs import LogHub, LogRecord
from .loop import Loop
from .protocol import EXIT_REFUSED, EXIT_UNKNOWN_JOB, STACK_SIGNAL, new_id, utc_timestamp
from .registry import Job, Registry
from .sink import END_JOB, FORGET_RESUME, RESUME_AFTER_SHUTDOWN, Sink

if TYPE_CHECKING:
    from .gpio import GpioService
    from .jobchannel import JobChannel

log = structlog.get_logger("pioreactord.supervisor")

Reply = Callable[[dict[str, Any]], None]
SIGKILL_AFTER_SIGTERM = 2.0
SHUTDOWN_SLACK = 5.0  # seconds beyond stop_timeout the daemon waits for its jobs when exiting
STACK_DUMP_WAIT = 0.5  # seconds a job's faulthandler gets to write before the daemon reads
STACK_DUMP_MAX = 64 * 1024  # bytes of one dump that are logged


def is_clean_end(said_bye: bool, exit_info: ExitInfo) -> bool:
    """A job ended `disconnected` only if it finished its clean-up (bye) and did not fail;
    anything else (killed, crashed, exit != 0, no bye) is `lost`."""
    return said_bye and exit_info.exit_code in (0, None)


class Ending:
    config: Config
    loop: Loop
    registry: Registry
    sink: Sink
    hub: LogHub
    job_channel: JobChannel
    gpio: GpioService
    child_pids: set[int]
    stopping: bool
    _spawner: Spawner
    _publish: Callable[..., Any]
    _unsubscribe: Callable[[str], None]
    _on_jobs_changed: Callable[[], None]
    _ready_waiters: dict[int, list[Reply]]
    _gone_waiters: dict[int, list[Reply]]
    _exit_deadline: float

    # --- stopping ------------------------------------------------------------------------------
    def stop(self, job: Job, on_gone: Reply | None = None) -> None:
        """Ask, then SIGTERM after stop_timeout, then SIGKILL 2 s later. Never blocks."""
        if on_gone:
            self._gone_waiters.setdefault(job.job_id, []).append(on_gone)
        if job.stop_requested:
            return
        job.stop_requested = True
        if job.registered:
            self.job_channel.send(job.identity, {"t": "state_set", "state": "disconnected",
                                                 "id": new_id()})
            self.loop.call_later(self.config.stop_timeout, lambda: self._escalate(job))
        else:  # not talking to us yet (still importing): nothing to ask
            self._escalate(job)

    def _escalate(self, job: Job) -> None:
        if self.registry.jobs.get(job.name) is not job or job.pid is None:
            return
        if job.stop_requested and job.registered and self.ask_for_stacks(job):
            self.loop.call_later(STACK_DUMP_WAIT, lambda: self._terminate(job, dumped=True))
        else:
            self._terminate(job, dumped=False)

    def _terminate(self, job: Job, dumped: bool) -> None:
        if self.registry.jobs.get(job.name) is not job:
            return
        if dumped:
            self.log_stacks(job, f"{job.name} (pid {job.pid}) did not stop within "
                                 f"{self.config.stop_timeout:g} s; sending SIGTERM")
        log.warning("job did not stop in time; sending SIGTERM", job=job.name, pid=job.pid)
        signal_process(job.pidfd, job.pid, signal.SIGTERM)
        self.loop.call_later(SIGKILL_AFTER_SIGTERM, lambda: self._kill(job))

    # --- where a job is stuck ------------------------------------------------------------------
    def ask_for_stacks(self, job: Job) -> bool:
        """Have the job's faulthandler write every thread's stack (jobs/stack_dump.py)."""
        return job.stack_dump and signal_process(job.pidfd, job.pid, STACK_SIGNAL)

    def log_stacks(self, job: Job, headline: str) -> None:
        """Log, at WARNING under the job's name, what its stack-dump file gained since the last
        time: a file at the daemon's own path for that pid, owned by the job's uid."""
        self._log(job, "WARNING", f"{headline}; where its threads are:\n"
                  + (self._read_stacks(job) or "(no stack dump arrived)"))

    def _read_stacks(self, job: Job) -> str:
        path = self.config.runtime_dir / "stacks" / str(job.pid)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return ""
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != job.uid:
                return ""
            os.lseek(fd, job.stack_read, os.SEEK_SET)
            data = os.read(fd, STACK_DUMP_MAX)
        finally:
            os.close(fd)
        job.stack_read += len(data)
        return data.decode("utf-8", "replace").rstrip()

    def _forget_stacks(self, job: Job) -> None:
        if job.stack_dump and job.pid:
            (self.config.runtime_dir / "stacks" / str(job.pid)).unlink(missing_ok=True)

    def _kill(self, job: Job) -> None:
        if self.registry.jobs.get(job.name) is job and job.pid is not None:
            log.error("job ignored SIGTERM; sending SIGKILL", job=job.name, pid=job.pid)
            signal_process(job.pidfd, job.pid, signal.SIGKILL)

    def stop_all(self, reason: str) -> float:
        """The daemon is exiting: stop every job. Returns the budget (s) it waits for them;
        from now on no job may start."""
        self.stopping = True
        budget = self.config.stop_timeout + SHUTDOWN_SLACK
        self._exit_deadline = time.monotonic() + budget
        log.info("stopping every job before exiting", reason=reason, jobs=len(self.registry.jobs))
        for job in list(self.registry.jobs.values()):
            self.stop(job)
        return budget

    def may_exit(self) -> bool:
        """After stop_all: every job has ended, or the budget is spent."""
        return self.stopping and (not self.registry.jobs or time.monotonic() > self._exit_deadline)

    def end_survivors(self) -> None:
        """At exit: account for jobs that survived even SIGKILL (or were never ours to kill)."""
        for job in list(self.registry.jobs.values()):
            self.finish(job, ExitInfo(None), clean=False)

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

    def reap_orphans(self) -> None:
        """Collect ended children that are not jobs; a job's own pidfd handler collects it."""
        keep = set(self.child_pids)
        if self._spawner.helper_pid:
            keep.add(self._spawner.helper_pid)
        for pid in reap_orphans(keep):
            log.debug("reaped an orphaned process", pid=pid)

    # --- the end -------------------------------------------------------------------------------
    def _ended(self, job: Job) -> None:
        exit_info = ExitInfo(None)
        try:
            exit_info = collect_exit(job.pid or 0, bool(job.child and job.child.is_child))
            self.child_pids.discard(job.pid or 0)
            if job.pipes is not None:
                job.pipes.close()
            self.loop.unwatch(job.pidfd)
            os.close(job.pidfd)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - whatever failed here, the job is over
            log.error("collecting an ended job failed", job=job.name, error=repr(exc))
        finally:
            self.finish(job, exit_info, is_clean_end(job.said_bye, exit_info))

    def finish(self, job: Job, exit_info: ExitInfo, clean: bool) -> None:
        """Release everything `job` held. Called exactly once per job, whatever ended it. Every
        step runs whatever the others do: a step that fails is logged and the next one runs, so
        the pins are switched off, the locks freed and the row ended in any case."""
        end_state = "disconnected" if clean else "lost"
        freed = self._step(job, "forgetting it", lambda: self.registry.forget(job)) or []
        if job.state != end_state and job.row_written:  # it registered, here or before a restart
            self._step(job, "publishing its $state", lambda: self._publish(
                self.topic(job, "$state"), end_state.encode(), qos=2, retain=True))
        for name, meta in job.settings.items():
            if not meta.get("persist") and name != "state":
                self._step(job, f"clearing {name}", functools.partial(
                    self._publish, self.topic(job, name), b"", qos=2, retain=True))
        self._step(job, "switching its pins off", lambda: self.gpio.release(
            job, [lock.pin for lock in freed], crashed=not clean))
        self._step(job, "updating the job list", self._on_jobs_changed)
        for pattern in job.subscriptions:
            self._step(job, f"unsubscribing {pattern}", functools.partial(self._unsubscribe, pattern))
        if job.row_written:
            self._step(job, "ending its row", lambda: self.sink.write(
                END_JOB, (utc_timestamp(), exit_info.exit_code, end_state, job.job_id)))
        self._step(job, "removing its stack-dump file", lambda: self._forget_stacks(job))
        self._step(job, "reporting its end", lambda: self._report_end(job, exit_info, clean))
        self._step(job, "deciding whether it starts again", lambda: self._after_end(
            job, exit_info, clean))
        self._step(job, "noting whether it resumes", lambda: self.sink.write(
            RESUME_AFTER_SHUTDOWN if self.stopping and not job.user_stopped else FORGET_RESUME,
            (job.job_id,)))
        self._step(job, "answering pioctl stop", lambda: self._answer(
            self._gone_waiters.pop(job.job_id, []),
            result={"job_name": job.name, "end_state": end_state, "exit_code": exit_info.exit_code}))

    def _after_end(self, job: Job, exit_info: ExitInfo, clean: bool) -> None:
        """What follows an end besides releasing (supervisor.py: restart = on-failure)."""

    def _step(self, job: Job, what: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - one failed step never skips the others
            log.error(f"finishing {job.name}: {what} failed", error=repr(exc))
            return None

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
        if job.row_written:  # its `lost` was published: the line Pioreactor's tools look for
            self._log(job, "INFO", "Lost.")
        self._answer(waiters, error=f"{job.name} failed during start: {exit_info.describe()}"
                     + (f"\n{tail}" if tail else ""), code="start_failed")

    # --- shared with supervisor.py --------------------------------------------------------------
    def topic(self, job: Job, leaf: str) -> str:
        return f"pioreactor/{self.config.unit}/{job.experiment}/{job.name}/{leaf}"

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


def _last_line(job: Job) -> str:
    return job.output.stderr_tail[-1].strip() if job.output.stderr_tail else ""
