"""`python -m pioreactor.forkserver FD`: job processes forked from one pre-imported interpreter.

pioreactord starts this once (`[pioreactord] spawner = forkserver`); FD is its end of a
SOCK_SEQPACKET socketpair (messages: `pioreactord.protocol`, fork server section). It imports the
job runtime (click, zmq, BackgroundJob, the config, the built-in jobs) and then only waits on FD:
no threads, no ZeroMQ context, so forking is safe.

A job must be the daemon's child (the daemon is a child subreaper), so the server double-forks:
the intermediate process exits at once and its child is re-parented to the daemon. It does so
*ahead* of the next request: that child, the *spare*, waits for a request already as the daemon's
child, with its own session, Python's signal dispositions, its job's stack-dump file and its
job's channel, already connected to the daemon (jobs/channel.py `prepare_spare_channel`). A
start forks nothing: the server checks the request and hands it (and its descriptors) to the
spare, which acknowledges it and becomes the job; the reply is the spare's pid. The next spare
is made once no request came for `SPARE_AFTER`, or at once for a request that finds none, or
finds it still getting ready (it rehearses a start first: ~5 ms of CPU; the request goes to a
spare made at once without one, and the rehearsed one waits for the next), or finds it gone (a
rehearsal that hangs ends its spare after `REHEARSAL_LIMIT`). A server that is
stopped or dead hands nothing on, so nothing starts behind the daemon's back, and a spare whose
server is gone exits.

The job process then sheds what it inherited (stdio, environment, cwd, random state; the cached
config if the file changed) and runs what `python -m pioreactor.runner` runs. Plugins are imported
there, after the fork, so an edited plugin takes effect at its next start. The server exits when
the daemon closes its end.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import random
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from pioreactord.protocol import FORK_MESSAGE_MAX, JOB_SOCKET_ENV, ProtocolError, decode, encode

# Everything a start imports: a module first imported after the fork costs every start its import
# and its pages (tests/integration/test_forkserver.py checks a job imports nothing new).
PRELOAD = ("click", "zmq", "pioreactor.config", "pioreactor.whoami", "pioreactor.channel",
           "pioreactor.background_jobs.base", "pioreactor.utils.pwm", "pioreactor.catalog",
           "pioreactor.runner", "pioreactor.cli.pio", "pioreactor.cli.run", "pioreactord.names")
STDIO = 3  # stdin, stdout, stderr arrive with each request
# What a fresh interpreter sets up; every other signal starts at SIG_DFL.
PYTHON_SIGNALS: dict[int, Any] = {signal.SIGINT: signal.default_int_handler, signal.SIGPIPE: signal.SIG_IGN,
                  signal.SIGXFSZ: signal.SIG_IGN}
READY = b"ready"  # a spare says so once it waits for a request (rehearsal and channel done)
ACCEPTED = b"taken"  # the spare's answer once it holds a request
# The next spare is made once no request came for this long after a hand-over: making it takes
# ~5 ms of CPU, which on 2 cores slows a start it overlaps by about as much. A start is ready
# ~7 ms after its hand-over here, and a next start, if one follows, comes from 50 ms on (a
# `pioctl start` after another; `$state/set` after a stop: bench/remote_start.py). At 50 ms the
# spare landed in that next start (16.2 ms against 10.8 ms for a first start, medians of 15
# pairs); at 20 ms it is ready before it (9.7 ms).
SPARE_AFTER = 0.02
# A rehearsal takes ~5 ms; one still going after this long hangs (a plugin's import waiting on a
# dead network share, say) and the kernel ends the spare (SIGALRM, left at its default), so the
# server makes another one instead of keeping a spare that never gets ready.
REHEARSAL_LIMIT = 30
BASE_ENVIRONMENT: dict[str, str] = {}  # the server's os.environ, which every job starts with
SERVER_MODULES: set[str] = set()  # what the server had imported when it forked the job


@dataclass
class ForkRequest:
    argv: list[str]  # [job name, job args...], as `python -m pioreactor.runner` takes them
    env: dict[str, str]
    cwd: str
    stdio: list[int]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m pioreactor.forkserver FD  (pioreactord starts it)", file=sys.stderr)
        return 2
    server = socket.socket(fileno=int(argv[0]))
    set_process_name("pio-forkserver")
    gc.disable()  # no collection may dirty the pages every job shares; jobs enable it again
    reset_signals()  # once here: spares and jobs inherit Python's own dispositions and mask
    preload()
    rehearse_in_server()
    BASE_ENVIRONMENT.update(os.environ)
    SERVER_MODULES.update(sys.modules)
    gc.freeze()
    share_identical_pages()
    server.send(encode({"t": "ready", "pid": os.getpid()})[0])
    request = serve(server)  # returns only in a job process
    if request is None:
        return 0
    become_job(request)
    from pioreactor import runner

    sys.argv = [str(runner.__file__), *request.argv]
    return runner.main(request.argv)  # then the interpreter exits as usual: atexit, threads


def preload() -> None:
    from pioreactor.catalog import BUILTIN_MODULES, builtin_commands, builtin_entries
    from pioreactor.config import config

    steps = [*((name, importlib.import_module) for name in PRELOAD),
             *((name, builtin_commands) for name in BUILTIN_MODULES),
             ("the built-in jobs' entries", lambda _: builtin_entries())]
    for name, step in steps:
        try:
            step(name)
        except Exception as exc:  # noqa: BLE001 - the job that needs it reports it at its start
            print(f"cannot preload {name}: {exc!r}", file=sys.stderr)
    try:
        config.sections()  # parsed once here; each job keeps it while the file is unchanged
    except Exception:  # noqa: BLE001 - no or a bad config file: each job says so at its start
        pass


MADV_MERGEABLE = 12  # <asm-generic/mman-common.h>


def share_identical_pages() -> None:
    """Mark the server's private writable memory mergeable (madvise MADV_MERGEABLE; a fork
    keeps the mark, so every spare and job has it). Where the kernel's same-page merging runs
    (`/sys/kernel/mm/ksm/run` = 1; root sets it, README.Debian), a page a job copied on write
    and left as it was (a refcount up and down again: about half of its copies) is shared with
    the server again: an idle job's USS 5.95 -> 3.65 MiB within 10 s here. Where it does not
    run, nothing changes. A range the kernel refuses stays as it was."""
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as maps:
            spans = [fields[0] for fields in map(str.split, maps) if fields[1] == "rw-p"]
    except (OSError, AttributeError):
        return  # no C library madvise, no /proc: jobs are as they were
    for span in spans:
        start, end = (int(bound, 16) for bound in span.split("-"))
        madvise(start, end - start, MADV_MERGEABLE)


def serve(server: socket.socket) -> ForkRequest | None:
    """Answer fork requests until the daemon goes; in a job process, return its request."""
    spare: Spare | None = None
    handed_at = -SPARE_AFTER  # monotonic time of the last hand-over
    while True:
        if spare is None and not _request_within(server, handed_at + SPARE_AFTER - time.monotonic()):
            made = Spare.make(server, rehearse=True)
            if isinstance(made, ForkRequest):
                return made
            spare = made
        message, fds, flags, _ = socket.recv_fds(server, FORK_MESSAGE_MAX, STDIO,
                                                 socket.MSG_CMSG_CLOEXEC)
        if not message:
            close_all(fds)
            if spare is not None:
                spare.dismiss()
            return None
        try:
            parse(message, fds, flags)
        except ProtocolError as exc:
            close_all(fds)
            server.send(encode({"t": "forked", "error": f"ProtocolError: {exc}"})[0])
            continue  # the spare waits for the next request
        if spare is not None and spare.state() == GONE:
            print(f"fork server: spare process {spare.pid} ended before it was handed a request",
                  file=sys.stderr)
            spare.dismiss()
            spare = None
        taker = spare
        try:
            if taker is None or taker.state() == BUSY:
                # None: starts back to back. Busy: still rehearsing; waiting for it cost a start
                # what was left of its ~5 ms (and the CPU it took meanwhile). A spare made now
                # without a rehearsal is ready in ~1 ms; the busy one stays for the next request.
                made = Spare.make(server, rehearse=False)
                if isinstance(made, ForkRequest):
                    return made
                taker = made
            reply: dict[str, Any] = {"t": "forked", "pid": taker.hand_over(message, fds)}
        except OSError as exc:
            reply = {"t": "forked", "error": f"{type(exc).__name__}: {exc}"}
            if taker is not None:
                taker.dismiss()
        finally:
            close_all(fds)
        if taker is spare:
            spare = None
            handed_at = time.monotonic()
        server.send(encode(reply)[0])


def _request_within(server: socket.socket, seconds: float) -> bool:
    """Whether a request arrives within `seconds` (at once if there is none left)."""
    if seconds <= 0:
        return False
    readable, _, _ = select.select([server], [], [], seconds)
    return bool(readable)


def parse(message: bytes, fds: list[int], flags: int) -> ForkRequest:
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise ProtocolError("fork request truncated")
    header, _ = decode([message])
    if header.get("t") != "fork" or len(fds) != STDIO:
        raise ProtocolError(f"expected a fork request with {STDIO} fds, got {header.get('t')!r} "
                            f"with {len(fds)}")
    try:
        return ForkRequest([str(a) for a in header["argv"]],
                           {str(k): str(v) for k, v in header["env"].items()}, str(header["cwd"]),
                           fds)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"bad fork request: {exc!r}") from None


BUSY, WAITING, GONE = "busy", "waiting", "gone"  # what a spare is doing (Spare.state)


class Spare:
    """A process forked ahead of a request, already the daemon's child, that becomes one job."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid, self.channel = pid, channel
        self._state = BUSY

    @classmethod
    def make(cls, server: socket.socket, rehearse: bool) -> Spare | ForkRequest:
        """Double fork; the server gets the spare, and the spare, once it is a job, its request.
        `rehearse`: copy the start's pages ahead (only worth it when no request waits yet)."""
        sys.stdout.flush()
        sys.stderr.flush()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid_r, pid_w = os.pipe()
        intermediate = os.fork()
        if intermediate == 0:
            spare = -1
            try:
                spare = os.fork()
                if spare > 0:
                    os.write(pid_w, str(spare).encode())
            finally:
                if spare != 0:
                    os._exit(0)  # the intermediate's only work was that fork
            for closing in (ours, server):
                closing.close()
            os.close(pid_r)
            os.close(pid_w)
            return _spare_main(theirs, rehearse)
        theirs.close()
        os.close(pid_w)
        try:
            reported = os.read(pid_r, 32)
        finally:
            os.close(pid_r)
            os.waitpid(intermediate, 0)
        if not reported:
            ours.close()
            raise OSError("the intermediate process could not fork")
        return cls(int(reported), ours)

    def state(self) -> str:
        """BUSY until it says READY (it rehearses and connects its channel first), WAITING
        after, GONE if it died. Never blocks."""
        if self._state == BUSY:
            try:
                said = self.channel.recv(len(READY), socket.MSG_DONTWAIT)
            except BlockingIOError:
                return BUSY
            except OSError:
                said = b""
            self._state = WAITING if said == READY else GONE
        return self._state

    def hand_over(self, message: bytes, fds: list[int]) -> int:
        """The request to the spare; its pid once it holds it (OSError if it is gone). A spare
        still busy reads it once ready."""
        socket.send_fds(self.channel, [message], fds)
        said = self.channel.recv(len(ACCEPTED))
        if said == READY and self._state == BUSY:
            said = self.channel.recv(len(ACCEPTED))
        if said != ACCEPTED:
            raise OSError(f"the spare process {self.pid} is gone")
        self.channel.close()
        return self.pid

    def dismiss(self) -> None:
        """Close its channel: a spare still waiting exits (the daemon, its parent, reaps it)."""
        self.channel.close()


def _spare_main(channel: socket.socket, rehearse: bool) -> ForkRequest:
    """In the spare: what every job needs first, done before any request; then wait for one."""
    set_process_name("pio-forkspare")
    os.setsid()
    from pioreactor import stack_dump
    from pioreactor.channel import prepare_spare_channel

    if rehearse:
        signal.alarm(REHEARSAL_LIMIT)
        try:
            rehearse_start()
        finally:
            signal.alarm(0)
    socket_path = os.environ.get(JOB_SOCKET_ENV)
    if socket_path:  # it never forks again: its channel can start its threads now
        prepare_spare_channel(socket_path)
        stack_dump.install(socket_path)  # the spare's pid is its job's: the job's file, ahead
    try:
        channel.send(READY)
        message, fds, flags, _ = socket.recv_fds(channel, FORK_MESSAGE_MAX, STDIO,
                                                 socket.MSG_CMSG_CLOEXEC)
        if not message:
            stack_dump.forget()
            os._exit(0)  # dismissed, or the server is gone
        request = parse(message, fds, flags)
        channel.send(ACCEPTED)
    except BaseException:  # noqa: BLE001 - the server reports it; a spare never runs job code then
        stack_dump.forget()
        os._exit(1)
    channel.close()
    return request


def rehearse_in_server() -> None:
    """Rehearse once in the server as well, before the freeze: what a first start makes lazily
    and keeps (mostly the abc module's isinstance caches: ~60 weak references and their sets,
    written into classes' shared pages) is then made once and shared, not again in every spare
    and job: ~0.3 MiB less USS in each (an idle job 5.97 -> 5.70 MiB here; 8 or 50 rehearsals
    save no more). Unlike a spare's, a rehearsal that hangs here is given up, not fatal: a server
    that died of it would hang again each time it is started, and every start would use exec."""
    def give_up(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still going after {REHEARSAL_LIMIT} s")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(REHEARSAL_LIMIT)
    try:
        rehearse_start()  # reports its own failures, a TimeoutError raised inside it among them
    except TimeoutError as exc:
        print(f"fork server: a rehearsal failed: {exc!r}", file=sys.stderr)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # a spare's hung rehearsal ends the spare


def rehearse_start() -> None:
    """Load a typical plugin, run its command's option parsing and check the cached config, then
    forget them: the pages every start copies on write for these steps (~0.5k: refcounts of
    shared objects) are copied now, while the spare waits, and not on the start's path. The
    server runs it once too, before it forks anything (`rehearse_in_server`)."""
    from pathlib import Path

    from pioreactor import catalog
    from pioreactor.cli.run import run

    try:
        path = Path(__file__).with_name("_rehearsal.py")
        registered_before = set(run.commands)
        module = catalog._load_file(path)  # what catalog.discover does with a plugin's file
        commands = catalog._commands_loaded(str(path), module, registered_before)
        catalog._bad_name(path.stem, module, commands)
        module.click_rehearsal.main(args=["--value", "2", "--dry-run"], standalone_mode=False)
        forget_cached_config()  # become_job checks again; the first check in a process: 0.26 ms
    except Exception as exc:  # noqa: BLE001 - a rehearsal only saves time; the job runs anyway
        print(f"fork server: a rehearsal failed: {exc!r}", file=sys.stderr)
    finally:
        sys.modules.pop("pioreactor_plugins._rehearsal", None)


def become_job(request: ForkRequest) -> None:
    """What `subprocess` and exec give a fresh job, given to a forked one (the spare already has
    its own session and Python's signal dispositions)."""
    for target, fd in enumerate(request.stdio):
        os.dup2(fd, target)
        os.close(fd)
    adopt_environment(request.env, BASE_ENVIRONMENT)
    try:
        os.chdir(request.cwd)
    except OSError:
        pass  # the daemon's working directory is gone; exec would not care either
    random.seed()
    gc.enable()
    forget_cached_config()
    set_process_name(request.argv[0] if request.argv else "job")


def adopt_environment(wanted: dict[str, str], inherited: dict[str, str]) -> None:
    """os.environ (now `inherited`) becomes `wanted`. Only what differs is changed: the server's
    environment is the daemon's, like the job's, and every key rewritten is a putenv and pages
    copied on write (so is every key os.environ decodes: `inherited` is a plain dict)."""
    for key in [key for key in inherited if key not in wanted]:
        del os.environ[key]
    for key, value in wanted.items():
        if inherited.get(key) != value:
            os.environ[key] = value


def reset_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for signum in signal.valid_signals():
        wanted = PYTHON_SIGNALS.get(signum, signal.SIG_DFL)
        try:
            if signal.getsignal(signum) != wanted:
                signal.signal(signum, wanted)
        except (OSError, ValueError):
            pass  # SIGKILL, SIGSTOP, signals the C library reserves


def forget_cached_config() -> None:
    """The server has read the config and may have asked the daemon: a job reads the config
    afresh if it changed since, and asks the daemon again."""
    from pioreactor import whoami
    from pioreactor.config import config

    config.refresh()
    whoami._ask_daemon.cache_clear()
    mappings = sys.modules.get("pioreactor.hardware_mappings")
    if mappings is not None:
        mappings.PWM_TO_PIN.reload()


def set_process_name(name: str) -> None:
    """What `ps -e` and `top` show (15 bytes): every forked process has the server's cmdline.
    Threads the spare started (its channel's) took the spare's name, as Python 3.11 names no OS
    thread: they take the new one too, so `top -H` shows whose they are. libzmq's own (ZMQbg/*)
    keep theirs."""
    try:
        before = read_bytes("/proc/self/comm")
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return
    for task in tasks:
        comm = f"/proc/self/task/{task}/comm"
        try:
            if read_bytes(comm) == before:
                fd = os.open(comm, os.O_WRONLY)
                try:
                    os.write(fd, name.encode()[:15])
                finally:
                    os.close(fd)
        except OSError:
            pass  # a thread that ended meanwhile


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
