"""What of a job's life outlives a daemon: adoption after a restart, resume after the unit went
down, a new start after a failure.

    _after_end()           restart = on-failure: a lost job started again with backoff (restarts.py)
    adopt_previous_jobs()  at start: rows a previous daemon left running; live jobs are watched
                           until they re-register, the others ended as lost
    _resume()              resume_jobs: the jobs the unit's going down ended are started again
    hand_over_pipes()      before a re-exec: the child jobs' output pipes for the next image

`Adoption` sits between `Ending` (ending.py) and `Supervisor` (supervisor.py: start, register);
it is never used alone.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from . import reexec
from .children import Child, ExitInfo
from .ending import Ending, Reply
from .logs import LogRecord
from .protocol import CommandError
from .registry import AlreadyRunning, Job
from .restarts import Restarts
from .sink import FORGET_RESUME

log = structlog.get_logger("pioreactord.supervisor")

# A job's process starts at most this long after its row's started_at (spawned) or before it (by
# hand); a process at that pid started later is another one.
PID_REUSE_SLACK = 10.0
# How long pwms/dc and leds/intensity wait for the jobs from before a restart to re-register.
ADOPTION_GRACE = 5.0


class Adoption(Ending):
    restarts: Restarts
    _awaited: set[str]

    if TYPE_CHECKING:  # supervisor.py's half
        def start(self, job_name: str, args: list[str], *, experiment: str | None = None,
                  on_ready: Reply | None = None) -> Job: ...

        def watch_process(self, job: Job, pid: int, child: Child | None) -> bool: ...

    # --- restart = on-failure ----------------------------------------------------------------
    def _after_end(self, job: Job, exit_info: ExitInfo, clean: bool) -> None:
        if (clean or job.stop_requested or self.stopping or job.command is None or not job.unique
                or {job.name, job.command[0]}.isdisjoint(self.config.restart_on_failure)):
            return
        verdict = self.restarts.after_lost(
            job.name, uptime=time.monotonic() - job.started_mono, failure=exit_info.describe(),
            reached_ready=job.reached_ready, exit_code=exit_info.exit_code)
        if verdict.delay is None:
            self._log(job, "ERROR" if verdict.gave_up else "WARNING",
                      f"{job.name} {exit_info.describe()}; not restarting it: {verdict.why_not}")
            return
        self._log(job, "WARNING", f"{job.name} {exit_info.describe()}; starting it again in "
                                  f"{verdict.delay:g} s (restart = on-failure)")
        command, experiment = job.command, job.experiment
        self.loop.call_later(verdict.delay, lambda: self._start_again(command, experiment))

    def _start_again(self, command: tuple[str, ...], experiment: str) -> None:
        name, args = command[0], list(command[1:])
        if self.stopping or name in self.registry.jobs:
            return  # the daemon is exiting, or someone started it meanwhile

        def started(answer: dict[str, Any]) -> None:
            if not answer.get("ok"):
                log.error(f"starting {name} again failed: {answer.get('error')}")

        try:
            self.start(name, args, experiment=experiment, on_ready=started)
        except (AlreadyRunning, CommandError, OSError) as exc:
            log.error(f"starting {name} again failed: {exc}")

    # --- adoption after a daemon restart ------------------------------------------------------
    def adopt_previous_jobs(self, pipes: dict[int, tuple[int | None, int | None]] | None = None, *,
                            fresh_runtime: bool = False) -> None:
        """Rows a previous daemon left running: watch the live ones until they re-register
        (their pidfd says if they end first), and end the others as lost, like any job that
        ends: $state, non-persist settings cleared, row closed (is_running is never left at 1
        for a process that is gone). `pipes`: the output pipes a re-exec handed over.
        `fresh_runtime`: runtime_dir was empty at start (the unit booted; see _resume)."""
        pipes = dict(pipes or {})
        resumable = self.sink.resume_rows()  # read before the rows left running are ended
        for job in self._jobs_from_rows(self.sink.running_rows()):
            created = _process_start(job.pid or 0, job.started_at)
            if created is not None and job.name not in self.registry.jobs:
                job.started_mono = time.monotonic() - max(0.0, time.time() - created)
                self.registry.reserve(job)
                own = reexec.own_child(job.pid or 0, pipes.pop(job.pid or 0, (None, None)))
                if self.watch_process(job, job.pid or 0, own):
                    log.info("waiting for a job from before the restart", job=job.name, pid=job.pid)
                    self._awaited.add(job.name)
                    continue
                self.registry.forget(job)
            log.warning("a job from before the restart ended while pioreactord was away",
                        job=job.name, pid=job.pid)
            self.finish(job, ExitInfo(None), clean=False)
        for out, err in pipes.values():  # a job whose row is gone: its pipes are of no use
            reexec.close_fds(out, err)
        if self._awaited:
            self.gpio.hold_state()
            self.loop.call_later(ADOPTION_GRACE, self.gpio.release_state)
        self._resume(resumable, fresh_runtime)

    def _resume(self, rows: Iterable[Any], fresh_runtime: bool) -> None:
        """resume_jobs: start again the jobs the unit's going down ended (a reboot or power cut:
        another boot id, or a fresh runtime dir where the boot id is the host's, as in a
        container; systemctl stop: the daemon's own shutdown), unless a user stopped them
        or their section says resume = 0. A job that died while a crashed daemon was away is
        not resumed (restart = on-failure is for failures)."""
        adopted = {job.job_id for job in self.registry.jobs.values()}
        boot = boot_id()
        for row in rows:
            if row["job_id"] in adopted:
                continue  # it outlived the daemon
            self.sink.write(FORGET_RESUME, (row["job_id"],))
            command = [str(part) for part in json.loads(row["command"])]
            went_down = bool(row["shutdown"]) or row["boot_id"] != boot or fresh_runtime
            if not went_down or not self.config.resume_jobs or \
                    not {row["job_name"], command[0]}.isdisjoint(self.config.not_resumed):
                continue
            why = "pioreactord was stopped" if row["shutdown"] else "the unit went down"
            self.hub.emit(LogRecord.now("NOTICE", f"resuming {row['job_name']}: it was running "
                                        f"when {why}", "pioreactord", row["experiment"]))
            self._start_again(tuple(command), str(row["experiment"]))

    def _adoption_settled(self, job: Job) -> None:
        """`job` from before the restart re-registered or ended: once none is awaited any more,
        pwms/dc and leds/intensity say what is true."""
        if job.name in self._awaited:
            self._awaited.discard(job.name)
            if not self._awaited:
                self.gpio.release_state()

    def finish(self, job: Job, exit_info: ExitInfo, clean: bool) -> None:
        super().finish(job, exit_info, clean)
        self._adoption_settled(job)

    def hand_over_pipes(self) -> dict[int, tuple[int | None, int | None]]:
        """Before a re-exec: pid -> (stdout, stderr) of every child job's pipes, for the next
        image of this process to read (adopt_previous_jobs)."""
        return {job.pid: job.pipes.hand_over() for job in self.registry.jobs.values()
                if job.pid and job.pipes is not None and job.child is not None and job.child.is_child}

    def _jobs_from_rows(self, rows: Iterable[Any]) -> list[Job]:
        return [Job(name=row["job_name"], job_id=row["job_id"], experiment=row["experiment"],
                    source=row["job_source"], token=None, pid=row["pid"],
                    started_at=row["started_at"], row_written=True,
                    settings=self.sink.settings_meta_of(row["job_id"])) for row in rows]


@functools.cache  # read once: registrations record it too, and it cannot change under us
def boot_id() -> str:
    """This boot of the machine (a reboot or a power cut gives another)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _process_start(pid: int, started_at: str) -> float | None:
    """When process `pid` started (epoch seconds) if it can still be the job a previous daemon
    recorded at `started_at`: alive, and not younger than its row (else its pid was reused, e.g.
    after a reboot). None otherwise."""
    import psutil  # ~1 MiB: loaded only when a previous daemon's jobs are checked

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        created = process.create_time()
        recorded = datetime.strptime(started_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except (psutil.Error, ValueError):
        return None
    return created if created <= recorded.timestamp() + PID_REUSE_SLACK else None
