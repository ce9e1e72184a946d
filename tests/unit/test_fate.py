"""The fate rules of a job, table by table, against a fake loop, spawner, channel and sink.

What a registration may claim, which end is clean and which is `lost`, what `finish` releases,
how an exit status is decoded, escalation and the shutdown budget, adoption after a restart,
and uniqueness and renames in the registry. No process, socket or thread: the kernel's side
(`collect_exit`, `watch_pid`, `send_signal`, `reap_orphans`) is replaced where it is looked up.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pioreactord import adoption, ending, supervisor
from pioreactord.children import (
    Child,
    ExitInfo,
    SpawnRequest,
    collect_exit,
    decode_status,
    may_signal,
    send_signal,
    signal_process,
)
from pioreactord.config import Config
from pioreactord.gpio import GpioService
from pioreactord.jobchannel import Peer
from pioreactord.protocol import EXIT_REFUSED, EXIT_UNKNOWN_JOB, CommandError
from pioreactord.registry import AlreadyRunning, Job, PinBusy, Registry
from pioreactord.sink import END_JOB, INSERT_JOB, UPDATE_JOB_PID
from pioreactord.supervisor import Supervisor

UNIT, EXP = "unit1", "exp1"
STOP_TIMEOUT = 10.0


# --- fakes ---------------------------------------------------------------------------------------
class FakeLoop:
    """Timers on a virtual clock; watched fds are recorded, and readable when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handlers: dict[Any, Any] = {}
        self.timers: list[tuple[float, int, Any]] = []

    def watch(self, source: Any, handler: Any) -> None:
        self.handlers[source] = handler

    def unwatch(self, source: Any) -> None:
        self.handlers.pop(source, None)

    def call_later(self, delay: float, callback: Any) -> None:
        self.timers.append((self.now + delay, len(self.timers), callback))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while due := sorted(t for t in self.timers if t[0] <= self.now):
            self.timers.remove(due[0])
            due[0][2]()


class FakeSpawner:
    helper_pid: int | None = None

    def __init__(self) -> None:
        self.requests: list[SpawnRequest] = []
        self.fail: OSError | None = None
        self._next_pid = 40000

    def spawn(self, request: SpawnRequest) -> Child:
        if self.fail:
            raise self.fail
        self.requests.append(request)
        self._next_pid += 1
        return Child(self._next_pid, _fd(), None, None, True, via="fake")


class FakeChannel:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, dict]] = []

    def send(self, identity: bytes | None, header: dict, payload: bytes | None = None) -> bool:
        self.sent.append((identity, header))
        return identity is not None


class FakeSink:
    def __init__(self, rows: list[dict] | None = None, meta: dict | None = None) -> None:
        self.writes: list[tuple[str, tuple]] = []
        self.rows, self.meta = rows or [], meta or {}
        self.resumable: list[dict] = []

    def next_job_id(self) -> int:
        return 1

    def write(self, sql: str, params: tuple) -> None:
        self.writes.append((sql, params))

    def running_rows(self) -> list[dict]:
        return self.rows

    def resume_rows(self) -> list[dict]:
        return self.resumable

    def settings_meta_of(self, job_id: int) -> dict:
        return self.meta.get(job_id, {})

    def rows_written(self, sql: str) -> list[tuple]:
        return [params for statement, params in self.writes if statement == sql]


class FakeHub:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def emit(self, record: Any) -> None:
        self.records.append(record)

    def levels(self) -> list[str]:
        return [r.level for r in self.records]


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def pwm_set(self, pin: int, hz: float, dc: float) -> None:
        self.calls.append(("pwm_set", pin, dc))

    def pwm_off(self, pin: int) -> None:
        self.calls.append(("pwm_off", pin))

    def led_set(self, channel: str, intensity: float) -> None:
        self.calls.append(("led_set", channel, intensity))


def _fd() -> int:
    """A real fd standing for a pidfd (the supervisor closes it when the job ends)."""
    read_end, write_end = os.pipe()
    os.close(write_end)
    return read_end


@dataclass
class Bench:
    sup: Supervisor
    loop: FakeLoop
    spawner: FakeSpawner
    channel: FakeChannel
    sink: FakeSink
    hub: FakeHub
    backend: FakeBackend
    registry: Registry
    published: list[tuple[str, bytes]] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    signals: list[tuple[int, int]] = field(default_factory=list)
    exits: dict[int, ExitInfo] = field(default_factory=dict)  # pid -> how it ends
    alive: set[int] = field(default_factory=set)  # pids watch_pid finds

    def retained(self, topic_leaf: str) -> list[bytes]:
        return [p for t, p in self.published if t.endswith(topic_leaf)]

    def start(self, name: str = "stirring") -> tuple[Job, list[dict]]:
        replies: list[dict] = []
        return self.sup.start(name, [], on_ready=replies.append), replies

    def register(self, job: Job | None, name: str = "stirring", pid: int | None = None,
                 identity: bytes = b"id-1", **fields: Any) -> dict:
        pid = pid if pid is not None else (job.pid if job else 0)
        msg = {"job_name": name, "pid": pid, "token": job.token if job else None, **fields}
        return self.sup.register(identity, msg, Peer(1000, 1000, pid))

    def end(self, job: Job, exit_info: ExitInfo) -> None:
        """The job's process ends: its pidfd becomes readable."""
        self.exits[job.pid or 0] = exit_info
        self.loop.handlers[job.pidfd]()


@pytest.fixture
def bench(monkeypatch, tmp_path) -> Bench:
    loop, spawner, channel, sink, hub = FakeLoop(), FakeSpawner(), FakeChannel(), FakeSink(), FakeHub()
    registry, backend = Registry(), FakeBackend()
    gpio = GpioService(registry=registry, backend=backend, unit=UNIT,  # type: ignore[arg-type]
                       experiment=lambda: EXP, publish=lambda *a, **k: None)
    b = Bench(None, loop, spawner, channel, sink, hub, backend, registry)  # type: ignore[arg-type]
    b.sup = Supervisor(config=_config(tmp_path), loop=loop, registry=registry, sink=sink,  # type: ignore[arg-type]
                       hub=hub, spawner=spawner, job_channel=channel, gpio=gpio,  # type: ignore[arg-type]
                       publish=lambda topic, payload, **k: b.published.append((topic, payload)),
                       subscribe=lambda pattern: None, unsubscribe=b.unsubscribed.append,
                       experiment=lambda: EXP)
    monkeypatch.setattr(ending, "collect_exit", lambda pid, is_child: b.exits.get(pid, ExitInfo(None)))
    monkeypatch.setattr(ending, "signal_process",
                        lambda pidfd, pid, signum: b.signals.append((pid, signum)))
    monkeypatch.setattr(supervisor, "watch_pid", lambda pid: _fd() if pid in b.alive else None)
    # The shutdown budget is on the monotonic clock: the fake loop's virtual one, for this test.
    monkeypatch.setattr(ending.time, "monotonic", lambda: loop.now)
    return b


def _config(tmp_path: Path) -> Config:
    return Config(path=str(tmp_path / "pioreactord.ini"), unit=UNIT, experiment=EXP,
                  runtime_dir=tmp_path, state_dir=tmp_path, plugins_dir=tmp_path,
                  hardware="simulated", stop_timeout=STOP_TIMEOUT, spawner="exec",
                  silent_job_warning=30.0, resume_jobs=True, hung_job_warning=60.0, broker_address="localhost",
                  broker_port=1883,
                  mqtt_username="", mqtt_password="", mqtt_use_tls=False,
                  database=tmp_path / "db.sqlite", log_file=tmp_path / "log",
                  console_log_level="INFO")


# --- what a registration may claim ---------------------------------------------------------------
def test_a_spawned_job_registers_with_its_token_and_gets_its_row(bench):
    job, _ = bench.start()
    reply = bench.register(job, settings={"target_rpm": {"persist": False}}, long_running=True)
    assert reply == {"ok": True, "result": {"unit": UNIT, "experiment": EXP, "job_id": job.job_id}}
    assert bench.registry.by_identity(b"id-1") is job
    assert bench.sink.rows_written(INSERT_JOB)[0][3] == "stirring"


@pytest.mark.parametrize("case, claim, code", [
    ("its token, another pid: a fork reported too late", {"pid": 99999}, "already_running"),
    ("no token, the name of a running job, another pid", {"token": None, "pid": 99999},
     "already_running"),
    ("no token, a name nobody runs, a pid that is gone", {"token": None, "job_name": "free",
                                                          "pid": 99998}, "gone"),
    ("its token, renamed onto a running job's name", {"job_name": "od_reading"}, "already_running"),
])
def test_registrations_that_are_refused(bench, case, claim, code):
    other, _ = bench.start("od_reading")
    job, _ = bench.start()
    msg = {"job_name": "stirring", "pid": job.pid, "token": job.token, **claim}
    reply = bench.sup.register(b"id-1", msg, Peer(1000, 1000, msg["pid"]))
    assert (reply["ok"], reply["code"]) == (False, code), case
    assert bench.registry.by_identity(b"id-1") is None
    assert not bench.sink.rows_written(INSERT_JOB)
    assert bench.registry.jobs == {"od_reading": other, "stirring": job}


@pytest.mark.parametrize("case, claimed, peer", [
    ("another process's pid (the broker's, say)", 4242, Peer(1000, 1000, 5000)),
    ("pid 0: the daemon's own process group", 0, Peer(1000, 1000, 5000)),
    ("pid -1: every process of the user", -1, Peer(1000, 1000, 5000)),
    ("no credentials from the kernel", 5000, None),
])
def test_a_registration_must_claim_the_pid_the_kernel_saw(bench, case, claimed, peer):
    job, _ = bench.start()
    reply = bench.sup.register(b"id-1", {"job_name": "stirring", "pid": claimed,
                                         "token": job.token}, peer)
    assert (reply["ok"], reply["code"]) == (False, "refused"), case
    assert bench.registry.by_identity(b"id-1") is None and job.pid != claimed


@pytest.mark.parametrize("case, token, name, pid_alive, accepted_as", [
    ("started by hand: reserved at registration", False, "od_reading", True, "od_reading"),
    ("the same process again after a daemon restart", False, "stirring", None, "stirring"),
    ("spawned as one command, its class names another", True, "stirring_v2", None, "stirring_v2"),
])
def test_registrations_that_are_accepted(bench, case, token, name, pid_alive, accepted_as):
    job, _ = bench.start()
    pid = 5555 if pid_alive else job.pid
    if pid_alive:
        bench.alive.add(pid)
    reply = bench.sup.register(b"id-1", {"job_name": name, "pid": pid,
                                         "token": job.token if token else None},
                               Peer(1000, 1000, pid))
    assert reply["ok"], case
    registered = bench.registry.by_identity(b"id-1")
    assert registered is not None and registered.name == accepted_as
    assert bench.registry.jobs[accepted_as] is registered


def test_an_adopting_registration_takes_back_state_values_subscriptions_and_pins(bench):
    bench.alive.add(7000)
    reply = bench.register(None, name="stirring", pid=7000, adopt=True, state="ready",
                           values={"target_rpm": "500"}, subscriptions=["pioreactor/a/#"],
                           pins=[17], driven=[{"pin": 17, "hz": 200, "dc": 30}])
    assert reply["ok"]
    job = bench.registry.jobs["stirring"]
    assert (job.state, job.values, job.subscriptions) == ("ready", {"target_rpm": b"500"},
                                                           {"pioreactor/a/#"})
    assert bench.registry.pins[17].job_name == "stirring"
    assert ("pwm_set", 17, 30.0) in bench.backend.calls
    assert bench.retained("stirring/$state") == [b"ready"]


# --- which end is clean and which is lost -------------------------------------------------------
KILLED = ExitInfo(-9, "SIGKILL")


@pytest.mark.parametrize("registers, says_bye, exit_info, end_state, reply_code, level", [
    (True, True, ExitInfo(0), "disconnected", None, "INFO"),
    (True, True, ExitInfo(None), "disconnected", None, "INFO"),  # adopted: status unknown
    (True, True, ExitInfo(1), "lost", None, "ERROR+Lost."),  # the ERROR, then `Lost.` at INFO
    (True, False, ExitInfo(0), "lost", None, "ERROR+Lost."),
    (True, True, KILLED, "lost", None, "ERROR+Lost."),
    (False, False, ExitInfo(0), None, "finished", "INFO"),  # a short action
    (False, False, ExitInfo(EXIT_UNKNOWN_JOB), None, "unknown_job", None),
    (False, False, ExitInfo(EXIT_REFUSED), None, "already_running", None),
    (False, False, ExitInfo(1), None, "start_failed", "ERROR"),
    (False, False, KILLED, None, "start_failed", "ERROR"),
])
def test_the_verdict_of_each_end(bench, registers, says_bye, exit_info, end_state, reply_code, level):
    job, replies = bench.start()
    if registers:
        bench.register(job)
        bench.sup.state_changed(job, "ready")
    if says_bye:
        bench.sup.said_bye(job)
    bench.end(job, exit_info)
    states = bench.retained("stirring/$state")
    if end_state is None:
        assert states == []  # it never registered: no $state, no row
        assert not bench.sink.rows_written(END_JOB)
    else:
        assert states[-1] == end_state.encode()
        assert bench.sink.rows_written(END_JOB)[0][1:] == (exit_info.exit_code, end_state,
                                                           job.job_id)
    if reply_code == "finished":
        assert replies[-1]["ok"] and replies[-1]["result"]["finished"]
    elif reply_code:
        assert replies[-1]["code"] == reply_code
    if level == "ERROR+Lost.":
        assert bench.hub.levels()[-2:] == ["ERROR", "INFO"]
        assert bench.hub.records[-1].message == "Lost."
    else:
        assert bench.hub.levels()[-1:] == ([level] if level else [])
    assert "stirring" not in bench.registry.jobs and job.pidfd not in bench.loop.handlers


def test_a_lost_jobs_error_line_carries_its_exit_and_stderr_tail(bench):
    job, _ = bench.start()
    bench.register(job)
    job.output.stderr_tail.extend(["Traceback (most recent call last):", "ValueError: boom"])
    bench.end(job, ExitInfo(1))
    assert bench.hub.records[-2].message == (
        f"stirring exited with code 1 (pid {job.pid}); state lost\n"
        "Traceback (most recent call last):\nValueError: boom")
    assert (bench.hub.records[-1].level, bench.hub.records[-1].message) == ("INFO", "Lost.")


# --- what finish releases ------------------------------------------------------------------------
@pytest.mark.parametrize("clean, leds_off", [(True, False), (False, True)])
def test_finish_releases_everything_the_job_held(bench, clean, leds_off):
    job, _ = bench.start()
    bench.register(job, settings={"target_rpm": {"persist": False}, "kept": {"persist": True},
                                  "state": {"persist": False}})
    gpio = bench.sup.gpio
    gpio.handle(job, "lock", {"pin": 17})
    gpio.handle(job, "pwm", {"pin": 12, "dc": 50})  # driven, not locked
    gpio.handle(job, "led", {"intensities": {"A": 80}})
    bench.sup.subscribe(job, "pioreactor/+/x")
    gone: list[dict] = []
    bench.sup.stop(job, on_gone=gone.append)
    if clean:
        bench.sup.said_bye(job)
    bench.end(job, ExitInfo(0))
    assert bench.registry.pins == {} and bench.registry.jobs == {}
    assert {("pwm_off", 17), ("pwm_off", 12)} <= set(bench.backend.calls)
    assert (("led_set", "A", 0.0) in bench.backend.calls) is leds_off
    assert bench.retained("stirring/target_rpm") == [b""]
    assert bench.retained("stirring/kept") == [] and bench.retained("stirring/state") == []
    assert bench.unsubscribed == ["pioreactor/+/x"]
    assert gone == [{"ok": True, "result": {"job_name": "stirring", "exit_code": 0,
                                            "end_state": "disconnected" if clean else "lost"}}]


# --- exit-status decoding ------------------------------------------------------------------------
@pytest.mark.parametrize("status, exit_code, signal_name, described", [
    (0, 0, None, "exited with code 0"),
    (1 << 8, 1, None, "exited with code 1"),
    (EXIT_UNKNOWN_JOB << 8, 78, None, "exited with code 78"),
    (signal.SIGKILL, -9, "SIGKILL", "killed by SIGKILL"),
    (signal.SIGTERM, -15, "SIGTERM", "killed by SIGTERM"),
    (signal.SIGSEGV | 0x80, -11, "SIGSEGV", "killed by SIGSEGV"),  # with a core dump
])
def test_exit_status_decoding(status, exit_code, signal_name, described):
    info = decode_status(status)
    assert (info.exit_code, info.signal_name, info.describe()) == (exit_code, signal_name, described)


@pytest.mark.parametrize("pid, allowed", [(0, False), (1, False), (-1, False),
                                          (os.getpid(), False), (os.getpgrp(), False),
                                          (999_999, True)])
def test_signals_never_go_to_init_everyone_or_the_daemon(pid, allowed):
    assert may_signal(pid) is allowed
    if not allowed:
        assert signal_process(_fd(), pid, 0) is False and send_signal(pid, 0) is False


def test_a_process_that_is_not_our_child_ends_with_an_unknown_status():
    assert collect_exit(os.getpid(), is_child=False) == ExitInfo(None)
    assert "exit status unknown" in ExitInfo(None).describe()


# --- stop, escalation, shutdown ------------------------------------------------------------------
def test_stop_asks_then_sigterm_after_stop_timeout_then_sigkill(bench):
    job, _ = bench.start()
    bench.register(job)
    bench.sup.stop(job)
    bench.sup.stop(job)  # asked once, whoever asks again
    asks = [h for i, h in bench.channel.sent if h.get("t") == "state_set"]
    assert [h["state"] for h in asks] == ["disconnected"]
    bench.loop.advance(STOP_TIMEOUT - 0.1)
    assert bench.signals == []
    bench.loop.advance(0.2)
    assert bench.signals == [(job.pid, signal.SIGTERM)]
    bench.loop.advance(ending.SIGKILL_AFTER_SIGTERM)
    assert bench.signals == [(job.pid, signal.SIGTERM), (job.pid, signal.SIGKILL)]


def test_a_job_that_ends_in_time_gets_no_signal(bench):
    job, _ = bench.start()
    bench.register(job)
    bench.sup.stop(job)
    bench.sup.said_bye(job)
    bench.end(job, ExitInfo(0))
    bench.loop.advance(STOP_TIMEOUT + 5)
    assert bench.signals == []


def test_a_job_still_importing_is_sent_sigterm_at_once(bench):
    job, _ = bench.start()
    bench.sup.stop(job)
    assert bench.channel.sent == [] and bench.signals == [(job.pid, signal.SIGTERM)]


def test_shutdown_refuses_new_jobs_and_waits_within_its_budget(bench):
    job, _ = bench.start()
    bench.register(job)
    assert not bench.sup.may_exit()
    budget = bench.sup.stop_all("SIGTERM")
    assert budget == STOP_TIMEOUT + ending.SHUTDOWN_SLACK
    with pytest.raises(CommandError) as refused:
        bench.start("od_reading")
    assert refused.value.code == "refused"
    bench.loop.advance(budget - 1)
    assert not bench.sup.may_exit()
    bench.loop.advance(2)
    assert bench.sup.may_exit()  # the budget is spent, the job is still there
    bench.sup.end_survivors()
    assert bench.registry.jobs == {} and bench.retained("stirring/$state")[-1] == b"lost"


def test_shutdown_ends_as_soon_as_every_job_is_gone(bench):
    job, _ = bench.start()
    bench.sup.stop_all("SIGTERM")
    bench.end(job, ExitInfo(-15, "SIGTERM"))
    assert bench.sup.may_exit()


def test_orphan_reaping_spares_jobs_and_the_spawners_helper(bench, monkeypatch):
    kept: list[set[int]] = []
    monkeypatch.setattr(ending, "reap_orphans", lambda keep: kept.append(set(keep)) or [])
    job, _ = bench.start()
    bench.spawner.helper_pid = 321
    bench.sup.reap_orphans()
    assert kept == [{job.pid, 321}]


def test_a_failed_spawn_frees_the_name_and_answers_the_caller(bench):
    bench.spawner.fail = OSError("no such file")
    replies: list[dict] = []
    with pytest.raises(OSError):
        bench.sup.start("stirring", [], on_ready=replies.append)
    assert bench.registry.jobs == {} and replies[0]["code"] == "spawn_failed"


# --- adoption after a restart --------------------------------------------------------------------
def _row(job_id: int, name: str, pid: int) -> dict:
    return {"job_id": job_id, "job_name": name, "experiment": EXP, "job_source": "app",
            "pid": pid, "started_at": "2026-01-01T00:00:00.000Z"}


def test_rows_left_running_are_adopted_if_alive_and_ended_lost_if_not(bench, monkeypatch):
    bench.sink.rows = [_row(1, "stirring", 7001), _row(2, "od_reading", 7002),
                       _row(3, "stirring", 7003)]  # a second row under a name already adopted
    bench.sink.meta = {2: {"od": {"persist": False}}}
    monkeypatch.setattr(adoption, "_process_start", lambda pid, started_at: 0.0
                        if pid in (7001, 7003) else None)
    bench.alive.update({7001, 7003})
    bench.sup.adopt_previous_jobs()
    assert list(bench.registry.jobs) == ["stirring"] and bench.registry.jobs["stirring"].pid == 7001
    ended = {params[3]: params[2] for params in bench.sink.rows_written(END_JOB)}
    assert ended == {2: "lost", 3: "lost"}
    assert bench.retained("od_reading/od") == [b""]
    bench.register(None, name="stirring", pid=7001, adopt=True)
    assert bench.sink.rows_written(UPDATE_JOB_PID) == [(7001, "stirring", 1)]


# --- the registry: uniqueness, renames, pins -----------------------------------------------------
def _job(name: str, job_id: int, pid: int | None = None, unique: bool = True) -> Job:
    return Job(name=name, job_id=job_id, experiment=EXP, source="app", token=None, pid=pid,
               unique=unique)


@pytest.mark.parametrize("first, second, refused", [
    (_job("stirring", 1, 10), _job("stirring", 2), True),
    (_job("stirring", 1, 10), _job("od_reading", 2), False),
    (_job("led_intensity", 1, unique=False), _job("led_intensity", 2, unique=False), False),
])
def test_one_job_per_name_except_short_actions(first, second, refused):
    registry = Registry()
    registry.reserve(first)
    if refused:
        with pytest.raises(AlreadyRunning, match=r"stirring is already running \(pid 10\)"):
            registry.reserve(second)
    else:
        registry.reserve(second)


@pytest.mark.parametrize("new_name, refused", [("stirring", False), ("free", False),
                                               ("od_reading", True)])
def test_renames(new_name, refused):
    registry = Registry()
    job, other = _job("stirring", 1, 10), _job("od_reading", 2, 20)
    registry.reserve(job)
    registry.reserve(other)
    if refused:
        with pytest.raises(AlreadyRunning):
            registry.rename(job, new_name)
        assert registry.jobs == {"stirring": job, "od_reading": other}
    else:
        registry.rename(job, new_name)
        assert registry.jobs[new_name] is job and job.name == new_name


def test_pins_belong_to_one_job_and_forget_returns_them():
    registry = Registry()
    job, other = _job("stirring", 1, 10), _job("od_reading", 2, 20)
    registry.reserve(job)
    registry.reserve(other)
    registry.lock(17, job)
    with pytest.raises(PinBusy, match="GPIO pin 17 is locked by stirring"):
        registry.lock(17, other)
    with pytest.raises(PinBusy):
        registry.check_pin(17, other)
    assert registry.unlock(17, other) is False
    registry.attach(job, b"a")
    registry.attach(job, b"b")  # a reconnect: the old identity no longer maps to it
    assert registry.by_identity(b"a") is None and registry.by_identity(b"b") is job
    assert [lock.pin for lock in registry.forget(job)] == [17]
    assert registry.pins == {} and registry.by_identity(b"b") is None


# --- an end nothing can break --------------------------------------------------------------------
def test_finish_releases_pins_locks_and_row_whatever_else_fails(bench):
    """A name the broker rejects (`we+ird`) made every publish raise, and finish stopped at the
    first: the pin stayed on, the row running and pioctl unanswered."""
    def refuse(topic, payload, **kwargs):
        if "+" in topic:
            raise ValueError("Publish topic cannot contain wildcards.")
        bench.published.append((topic, payload))

    bench.sup._publish = refuse
    bench.sup._unsubscribe = lambda pattern: 1 / 0
    job, replies = bench.start("we+ird")
    bench.register(job, name="we+ird", settings={"speed": {"persist": False}})
    bench.sup.gpio.handle(job, "lock", {"pin": 12})
    bench.sup.gpio.handle(job, "pwm", {"pin": 12, "dc": 30})
    job.subscriptions.add("pioreactor/#")
    gone: list[dict] = []
    bench.sup.stop(job, on_gone=gone.append)
    bench.end(job, ExitInfo(-9, "SIGKILL"))
    assert ("pwm_off", 12) in bench.backend.calls and bench.registry.pins == {}
    assert bench.sink.rows_written(END_JOB)[0][2] == "lost"
    assert gone[0]["result"]["end_state"] == "lost" and bench.registry.jobs == {}
    assert replies  # pioctl start got its answer too


def test_a_failure_while_collecting_the_exit_still_finishes_the_job(bench, monkeypatch):
    job, _ = bench.start()
    bench.register(job)
    monkeypatch.setattr(ending, "collect_exit", lambda pid, is_child: 1 / 0)
    bench.loop.handlers[job.pidfd]()
    assert bench.registry.jobs == {} and bench.sink.rows_written(END_JOB)[0][1:3] == (None, "lost")


# --- restart = on-failure ------------------------------------------------------------------------
@pytest.mark.parametrize("how, restarted", [
    ("lost after ready", True),
    ("stopped by a user", False),
    ("clean exit", False),
    ("never ready", False),
])
def test_which_ends_are_started_again(bench, how, restarted):
    import dataclasses

    bench.sup.config = dataclasses.replace(bench.sup.config, restart_on_failure=frozenset({"stirring"}))
    replies: list[dict] = []
    job = bench.sup.start("stirring", ["--target-rpm", "600"], on_ready=replies.append)
    bench.register(job)
    if how != "never ready":
        bench.sup.state_changed(job, "ready")
    if how == "stopped by a user":
        bench.sup.stop(job)
    if how == "clean exit":
        bench.sup.said_bye(job)
    bench.end(job, ExitInfo(0) if how == "clean exit" else KILLED)
    bench.loop.advance(1.0)
    again = [r for r in bench.spawner.requests[1:] if r.job_name == "stirring"]
    assert (len(again) == 1) is restarted, how
    if restarted:
        assert again[0].args == ("--target-rpm", "600")
        assert any(r.level == "WARNING" and "starting it again in 1 s (restart = on-failure)"
                   in r.message for r in bench.hub.records)


# --- resume_jobs ---------------------------------------------------------------------------------
def _resume_row(job_id: int, name: str, boot: str, shutdown: int) -> dict:
    return {"job_id": job_id, "job_name": name, "experiment": "exp7", "boot_id": boot,
            "command": f'["{name}", "--x", "1"]', "shutdown": shutdown}


@pytest.mark.parametrize("case, boot, shutdown, fresh_run, opted_out, resumed", [
    ("pioreactord was stopped (systemctl stop)", "this", 1, False, False, True),
    ("a reboot or a power cut: another boot", "other", 0, False, False, True),
    ("a container's power cut: same boot id, fresh /run", "this", 0, True, False, True),
    ("the daemon crashed and the job died meanwhile", "this", 0, False, False, False),
    ("its section says resume = 0", "other", 0, False, True, False),
])
def test_what_is_resumed_at_start(bench, monkeypatch, case, boot, shutdown, fresh_run, opted_out,
                                  resumed):
    import dataclasses

    monkeypatch.setattr(adoption, "boot_id", lambda: "this")
    bench.sup.config = dataclasses.replace(
        bench.sup.config, not_resumed=frozenset({"stirring"} if opted_out else ()))
    bench.sink.resumable = [_resume_row(5, "stirring", boot, shutdown)]
    bench.sup.adopt_previous_jobs(fresh_runtime=fresh_run)
    started = [(r.job_name, r.args) for r in bench.spawner.requests]
    assert (started == [("stirring", ("--x", "1"))]) is resumed, case
    if resumed:
        assert bench.registry.jobs["stirring"].experiment == "exp7"
        assert any(r.level == "NOTICE" and r.message.startswith("resuming stirring")
                   for r in bench.hub.records)
    assert ("DELETE FROM pioreactord_resume WHERE job_id = ?", (5,)) in bench.sink.writes


def test_a_job_that_outlived_the_daemon_is_adopted_not_resumed(bench, monkeypatch):
    monkeypatch.setattr(adoption, "_process_start", lambda pid, started_at: 0.0)
    bench.alive.add(7001)
    bench.sink.rows = [_row(5, "stirring", 7001)]
    bench.sink.resumable = [_resume_row(5, "stirring", "other", 1)]
    bench.sup.adopt_previous_jobs()
    assert bench.spawner.requests == [] and bench.registry.jobs["stirring"].pid == 7001


@pytest.mark.parametrize("who_stops, kept_for_resume", [("the daemon's shutdown", True),
                                                        ("a user", False)])
def test_a_shutdown_keeps_a_job_for_resume_a_user_stop_does_not(bench, who_stops, kept_for_resume):
    job, _ = bench.start()
    bench.register(job)
    if who_stops == "a user":
        job.user_stopped = True
        bench.sup.stop(job)
    bench.sup.stop_all("SIGTERM")
    bench.sup.said_bye(job)
    bench.end(job, ExitInfo(0))
    marks = [sql for sql, params in bench.sink.writes if "pioreactord_resume" in sql]
    assert marks[0].startswith("INSERT OR REPLACE")  # written when it registered
    assert marks[-1].startswith("UPDATE" if kept_for_resume else "DELETE")
