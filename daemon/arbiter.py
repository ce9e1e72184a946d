"""The daemon: builds the parts, runs the loop, stops cleanly.

Signals (handlers only enqueue; the loop acts):

    signal           the daemon                                         its jobs
    SIGTERM, SIGINT  stops every job (ask, SIGTERM, SIGKILL), publishes  each ends `disconnected`
                     `disconnected` on its own $state, exits 0           (or `lost` if killed)
    SIGHUP           re-executes itself in place (reexec.py): same pid,  untouched, still its
                     new code and config; refused if the config is bad   children
    SIGCHLD          not used: a pidfd per job says when it ends        -
                     (orphans adopted as a subreaper: reaped each tick)

One loop iteration: wake pipe (signals, paho events, posted work) -> job channel -> control
channel -> pidfds and job output -> timers (stop escalation, watchdog).
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import structlog
import zmq

from . import reexec, remote
from .bridge import Bridge, Will
from .children import Spawner, SubprocessSpawner
from .commands import Control
from .config import Config
from .dbfile import check_writable_dir
from .experiment import ExperimentStore
from .forkserver_spawner import ForkServerSpawner
from .gpio import GpioService
from .hardware.base import HardwareBackend
from .jobchannel import JobChannel
from .jobmessages import JobMessages
from .limits import MAX_FRAME, MAX_MQTT_PAYLOAD, size_text
from .logs import LogHub, LogRecord, configure_structlog
from .loop import Loop
from .operations import Operations
from .protocol import new_id
from .registry import Registry
from .sink import Sink
from .supervisor import Supervisor
from .systemd import Notifier

log = structlog.get_logger("pioreactord.arbiter")



class DaemonAlreadyRunning(Exception):
    pass


class Daemon:
    def __init__(self, config: Config, *, backend: HardwareBackend, startup_warnings: Sequence[str] = (),
                 startup_notes: Sequence[str] = ()) -> None:
        self.config = config
        self.clock = reexec.process_clock()  # first start and this exec (pioctl version)
        self._inherited_pipes = reexec.job_pipes_from_env()  # a re-exec's jobs' output
        self.pid = os.getpid()
        self.daemon_id = new_id()
        self.loop = Loop()
        self.registry = Registry()
        self.notifier = Notifier()
        self._signals: list[int] = []
        self._startup_warnings = list(startup_warnings)
        self._startup_notes = list(startup_notes)
        # A runtime dir without our lock file is a fresh /run: the machine (or the container,
        # which shares the host's boot id) booted since the last daemon ran here.
        self._runtime_was_fresh = not (config.runtime_dir / "pioreactord.lock").exists()
        config.runtime_dir.mkdir(parents=True, exist_ok=True)
        check_writable_dir(config.state_dir, "state_dir")  # StorageError: main exits 78
        stacks = config.runtime_dir / "stacks"  # jobs' stack dumps (jobs/stack_dump.py)
        stacks.mkdir(exist_ok=True)
        os.chmod(stacks, 0o1770)  # a job of the group writes its own; sticky: none removes another's
        self._lock_file = self._take_lock()
        self.experiments = ExperimentStore(config.state_dir, config.experiment)
        self.sink = Sink(config.database, report=self._report_storage,
                         integrity_interval=config.integrity_check_interval)
        self.bridge = Bridge(client_id=f"pioreactord-{config.unit}-{self.daemon_id}",
                             host=config.broker_address, port=config.broker_port,
                             will=Will(self.state_topic, b"lost"), wake=self.loop.wake,
                             username=config.mqtt_username, password=config.mqtt_password,
                             use_tls=config.mqtt_use_tls, defer=self.loop.at_end_of_pass)
        self.hub = LogHub(unit=config.unit, sink=self.sink, log_file=config.log_file,
                          console_level=config.console_log_level,
                          publish_many=self._publish_logs, schedule=self.loop.post)
        configure_structlog(lambda level, message: self.hub.emit(
            LogRecord.now(level, message, "pioreactord", self.experiment())))
        self.gpio = GpioService(registry=self.registry, backend=backend, unit=config.unit,
                                experiment=self.experiment, publish=self.publish)
        self.zmq = zmq.Context()
        self.jobs_socket = self._bind(config.job_socket)
        self.control_socket = self._bind(config.control_socket)
        self.spawner: Spawner = (ForkServerSpawner(self.loop) if config.spawner == "forkserver"
                                 else SubprocessSpawner())
        # Built in this order: each part gets the ones before it, nothing reaches back.
        self.job_channel = JobChannel(socket=self.jobs_socket, loop=self.loop,
                                      registry=self.registry)
        self.supervisor = Supervisor(
            config=config, loop=self.loop, registry=self.registry, sink=self.sink, hub=self.hub,
            spawner=self.spawner, job_channel=self.job_channel, gpio=self.gpio,
            publish=self.publish, subscribe=lambda p: self.bridge.subscribe(p, resend_retained=True),
            unsubscribe=self.bridge.unsubscribe, experiment=self.experiment,
            on_jobs_changed=lambda: self.notifier.status(self._status_text()))
        self.job_messages = JobMessages(
            channel=self.job_channel, registry=self.registry, supervisor=self.supervisor,
            gpio=self.gpio, publish=self.publish, daemon_id=self.daemon_id, unit=config.unit,
            experiment=self.experiment)
        self.operations = Operations(
            unit=config.unit, pid=self.pid, daemon_id=self.daemon_id, supervisor=self.supervisor,
            registry=self.registry, job_channel=self.job_channel, bridge=self.bridge,
            experiments=self.experiments, sink=self.sink, started_at=self.clock.started_at,
            exec_at=self.clock.exec_at)
        self.control = Control(self.control_socket, self.operations, self.loop)
        self.remote = remote.Remote(self.operations)

    # --- set-up --------------------------------------------------------------------------------
    @property
    def state_topic(self) -> str:
        return f"pioreactor/{self.config.unit}/$experiment/pioreactord/$state"

    def _take_lock(self) -> Any:
        handle = open(self.config.runtime_dir / "pioreactord.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise DaemonAlreadyRunning(
                f"another pioreactord (pid {holder}) already uses {self.config.runtime_dir}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def _report_storage(self, level: str, message: str) -> None:
        """The SQLite writer's own troubles (its thread): logged from the loop, so they reach
        MQTT, the log file and the console too, not only the database that is failing."""
        self.loop.post(lambda: getattr(log, level.lower())(message))

    def _bind(self, path) -> zmq.Socket:
        socket = self.zmq.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a vanished job fails, not drops
        socket.setsockopt(zmq.SNDHWM, 100_000)
        socket.setsockopt(zmq.RCVHWM, 100_000)
        # Backstop: a message up to 16x MAX_FRAME is read and refused with its size (decode);
        # a peer sending more is disconnected by ZeroMQ before it can fill our memory.
        socket.setsockopt(zmq.MAXMSGSIZE, 16 * MAX_FRAME)
        if path.exists():
            path.unlink()  # we hold the lock: whatever left this socket file is gone
        socket.bind(f"ipc://{path}")
        os.chmod(path, 0o660)
        return socket

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self.loop.wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda s, f: self._signals.append(s))
        self.loop.on_wake = self._on_wake
        self.loop.on_error = lambda exc, fn: log.error(
            "internal error (the daemon goes on)", error=repr(exc), where=getattr(fn, "__qualname__", "?"))

    # --- running -------------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        self.sink.start()
        self.job_channel.listen(self.job_messages.handle)
        self.loop.watch(self.control_socket, self.control.on_readable)
        for pattern in remote.subscriptions(self.config.unit):
            self.bridge.subscribe(pattern)
        self.bridge.start()
        self.spawner.start(self.supervisor.job_env_base())
        self.supervisor.adopt_previous_jobs(self._inherited_pipes,
                                            fresh_runtime=self._runtime_was_fresh)
        self.supervisor.check_liveness()
        log.info("pioreactord started", unit=self.config.unit, experiment=self.experiment(),
                 pid=self.pid, broker=f"{self.config.broker_address}:{self.config.broker_port}")
        for note in self._startup_notes:
            log.info(note)
        for warning in self._startup_warnings:
            log.warning(warning)
        for problem in self.experiments.problems:
            log.error(problem)
        # Current values: the bridge keeps them and publishes them again on every (re)connect.
        self.publish(self.state_topic, b"ready", qos=2, retain=True)
        self.gpio.publish_state()
        self.notifier.ready(self._status_text())
        self._answer_reload(True, f"pioreactord {reexec.daemon_version()} serving, pid {self.pid}, "
                                  f"exec'd at {self.clock.exec_at}")
        self._schedule_watchdog()
        while not self.supervisor.may_exit():
            self.loop.run_once(max_wait=1.0)
        return self._shutdown()

    def _on_wake(self) -> None:
        while self._signals:
            self._handle_signal(self._signals.pop(0))
        for event in self.bridge.take_events():  # also logs connection changes, refills paho
            if len(event.payload) > MAX_MQTT_PAYLOAD:  # refused, never echoed or forwarded
                log.warning(f"ignored a {size_text(len(event.payload))} message on "
                            f"{event.topic[:200]}: larger than the {size_text(MAX_MQTT_PAYLOAD)} "
                            "limit for MQTT payloads")
                continue
            self.remote.handle(event)
            self.job_channel.forward(event)
            self.control.forward(event)

    def _handle_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.begin_shutdown(signal.Signals(signum).name)
        elif signum == signal.SIGHUP:
            self._reload()

    def _schedule_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval or 5.0

        def tick() -> None:
            self.notifier.watchdog()  # STATUS= is sent when the jobs change (on_jobs_changed)
            self.supervisor.reap_orphans()
            self.loop.call_later(interval, tick)

        self.loop.call_later(0, tick)

    def _status_text(self) -> str:
        names = sorted(self.registry.jobs)
        return f"{len(names)} job{'s' if len(names) != 1 else ''}" + (f": {', '.join(names)}" if names else "")

    def _reload(self) -> None:
        """SIGHUP: re-execute in place (reexec.py), or refuse and change nothing. The answer
        goes to runtime_dir/exec.state (the new image writes it once serving)."""
        seq = self.clock.reloads + 1
        self.clock = replace(self.clock, reloads=seq)
        os.environ[reexec.RELOADS_ENV] = str(seq)
        problem = self._reload_problem()
        if problem:
            log.error(f"reload refused: {problem}; nothing changed")
            self._answer_reload(False, problem)
            return
        log.info("reload: re-executing in place", jobs=len(self.registry.jobs))
        self.notifier.reloading()
        self.loop.run_once(max_wait=0)  # what jobs already sent is handled by this image
        pipes = self.supervisor.hand_over_pipes()
        self._close(for_exec=True)
        try:
            reexec.exec_self(seq, pipes)
        except OSError as exc:  # nothing is left to serve with: systemd restarts us, jobs go on
            print(f"pioreactord: re-exec failed ({exc}); exiting", file=sys.stderr, flush=True)
            os._exit(1)

    def _reload_problem(self) -> str | None:
        if self.supervisor.stopping:
            return "pioreactord is shutting down"
        try:
            Config.load(self.config.path)
        except Exception as exc:  # noqa: BLE001 - a bad edit must not take the daemon down
            return f"config file rejected: {exc}"
        return None

    def _answer_reload(self, ok: bool, text: str) -> None:
        try:
            reexec.write_exec_state(self.config.runtime_dir / reexec.STATE_FILE,
                                    reexec.ExecState(self.pid, self.clock.reloads, ok, text))
        except OSError as exc:
            log.warning("cannot write the reload answer", error=str(exc))

    # --- jobs ----------------------------------------------------------------------------------
    def experiment(self) -> str:
        return self.experiments.current

    # --- MQTT ----------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes | str, *, qos: int = 2, retain: bool = False) -> None:
        self.bridge.publish(topic, payload, qos=qos, retain=retain)

    def _publish_logs(self, messages: list[tuple[str, bytes]]) -> None:
        # QoS 0: a log line is in SQLite already, and a QoS 1 PUBACK in a start burst of QoS 2
        # state makes small writes wait for TCP's delayed ACK (issue 14).
        self.bridge.publish_many(messages, qos=0)

    # --- stopping ------------------------------------------------------------------------------
    def begin_shutdown(self, reason: str) -> None:
        if self.supervisor.stopping:
            return
        budget = self.supervisor.stop_all(reason)
        self.notifier.stopping(budget + 5)

    def _shutdown(self) -> int:
        self.supervisor.end_survivors()
        self._close(for_exec=False)
        for path in (self.config.job_socket, self.config.control_socket):
            path.unlink(missing_ok=True)
        return 0

    def _close(self, *, for_exec: bool) -> None:
        """Everything but the jobs. For a re-exec the broker connection ends without our
        `disconnected` (the next image says `ready`; waiting for this `ready` lets what was
        queued before it go out) and the hardware is left as it is: the jobs' pins stay on."""
        self.spawner.stop()
        if for_exec:
            self.hub.flush()  # this last pass's lines: the loop that would flush them is done
            self.publish(self.state_topic, b"ready", qos=2, retain=True)
            self.bridge.flush(2.0)
        else:
            log.info("pioreactord stopped")
            self.hub.flush()
            self.publish(self.state_topic, b"disconnected", qos=2, retain=True)
            self.bridge.flush(3.0)
        self.bridge.stop()
        if not for_exec:
            self.gpio.close()
        self.hub.flush()  # what gpio.close and the bridge said: to SQLite, the file, the console
        self.sink.close()
        for socket in (self.jobs_socket, self.control_socket):
            socket.close(0)
        self.zmq.term()


