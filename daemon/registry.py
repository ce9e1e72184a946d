"""Running jobs and the GPIO lock registry: who runs, under which name, holding which pins.

Pure bookkeeping, no I/O: the supervisor decides, the registry remembers. Uniqueness is enforced
here and only here (`reserve`, `rename`); so is pin ownership (`lock`). `forget` returns everything
a job held, so what dies with a job is decided in one place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .children import Child, OutputCapture, OutputPipes
from .protocol import utc_timestamp


class AlreadyRunning(Exception):
    def __init__(self, job_name: str, pid: int | None) -> None:
        holder = f"pid {pid}" if pid else "starting"
        super().__init__(f"{job_name} is already running ({holder})")
        self.job_name, self.pid = job_name, pid


class PinBusy(Exception):
    def __init__(self, pin: int, holder: PinLock) -> None:
        super().__init__(f"GPIO pin {pin} is locked by {holder.job_name} (pid {holder.pid})")
        self.pin, self.holder = pin, holder


@dataclass(frozen=True)
class PinLock:
    pin: int
    job_name: str
    pid: int
    since: str


@dataclass
class Job:
    """One running (or starting) job, whoever started it."""

    name: str
    job_id: int
    experiment: str
    source: str
    token: str | None
    pid: int | None = None
    identity: bytes | None = None  # ZeroMQ routing id of its channel, once registered
    state: str = "init"
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> metadata
    values: dict[str, bytes] = field(default_factory=dict)  # name -> last published wire value
    subscriptions: set[str] = field(default_factory=set)
    child: Child | None = None  # set when this daemon spawned it
    pidfd: int | None = None
    output: OutputCapture = field(default_factory=OutputCapture)
    pipes: OutputPipes | None = None  # its stdout/stderr on the loop, when this daemon spawned it
    said_bye: bool = False  # the job finished its clean-up itself
    stop_requested: bool = False
    started_at: str = field(default_factory=utc_timestamp)
    started_mono: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)  # its last message on the channel
    silence_reported: float | None = None  # the last_seen a "silent" warning was about
    is_long_running: bool = False  # says the job at registration (LongRunning* classes)
    unique: bool = True  # False for a short action: several may run at once
    row_written: bool = False  # its pio_job_metadata row exists (written at registration)
    command: tuple[str, ...] | None = None  # job name and arguments, when this daemon spawned it
    reached_ready: bool = False  # it was `ready` once (restart = on-failure needs that)
    user_stopped: bool = False  # pioctl stop or $state/set disconnected (never resumed)
    uid: int | None = None  # of the process that registered it (the kernel's word)
    stack_dump: bool = False  # it answers STACK_SIGNAL with a stack dump (jobs/stack_dump.py)
    stack_read: int = 0  # bytes of its stack-dump file already logged
    hung_reported: bool = False  # the callback running now was reported (hung_job_warning)
    version: str | None = None  # the pioreactord version of the code it runs (its registration)

    @property
    def registered(self) -> bool:
        return self.identity is not None


class Registry:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.actions: dict[int, Job] = {}  # short actions in flight, by job id (not unique)
        self.pins: dict[int, PinLock] = {}
        self._by_identity: dict[bytes, Job] = {}

    # --- jobs ----------------------------------------------------------------------------------
    def reserve(self, job: Job) -> None:
        """Claim the job's name before any of its code runs; refuse a second instance."""
        if not job.unique:
            self.actions[job.job_id] = job
            return
        running = self.jobs.get(job.name)
        if running is not None:
            raise AlreadyRunning(job.name, running.pid)
        self.jobs[job.name] = job

    def rename(self, job: Job, new_name: str) -> None:
        """A job whose class says another name than the command it was started as."""
        if new_name == job.name:
            return
        running = self.jobs.get(new_name)
        if running is not None and running is not job:
            raise AlreadyRunning(new_name, running.pid)
        del self.jobs[job.name]
        job.name = new_name
        self.jobs[new_name] = job

    def attach(self, job: Job, identity: bytes) -> None:
        if job.identity is not None:
            self._by_identity.pop(job.identity, None)
        job.identity = identity
        self._by_identity[identity] = job

    def by_identity(self, identity: bytes) -> Job | None:
        return self._by_identity.get(identity)

    def by_token(self, token: str) -> Job | None:
        return next((j for j in self._all() if j.token == token), None)

    def _all(self) -> list[Job]:
        return [*self.jobs.values(), *self.actions.values()]

    def forget(self, job: Job) -> list[PinLock]:
        """Remove a job that ended; returns the pins it held (now free)."""
        if self.jobs.get(job.name) is job:
            del self.jobs[job.name]
        self.actions.pop(job.job_id, None)
        if job.identity is not None:
            self._by_identity.pop(job.identity, None)
        return [self.pins.pop(lock.pin) for lock in self.locks_of(job)]

    # --- GPIO locks ----------------------------------------------------------------------------
    def lock(self, pin: int, job: Job) -> PinLock:
        holder = self.pins.get(pin)
        if holder is not None and holder.job_name != job.name:
            raise PinBusy(pin, holder)
        if holder is None:
            holder = PinLock(pin, job.name, job.pid or 0, utc_timestamp())
            self.pins[pin] = holder
        return holder

    def unlock(self, pin: int, job: Job) -> bool:
        holder = self.pins.get(pin)
        if holder is None or holder.job_name != job.name:
            return False
        del self.pins[pin]
        return True

    def check_pin(self, pin: int, job: Job) -> None:
        """Driving a pin another job holds is refused; an unlocked pin may be driven."""
        holder = self.pins.get(pin)
        if holder is not None and holder.job_name != job.name:
            raise PinBusy(pin, holder)

    def locks_of(self, job: Job) -> list[PinLock]:
        return [lock for lock in self.pins.values() if lock.job_name == job.name]
