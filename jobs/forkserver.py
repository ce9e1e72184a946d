"""`python -m pioreactor.forkserver FD`: job processes forked from one pre-imported interpreter.

pioreactord starts this once (`[pioreactord] spawner = forkserver`); FD is its end of a
SOCK_SEQPACKET socketpair (messages: `pioreactord.protocol`, fork server section). It imports the
job runtime (click, zmq, BackgroundJob, the config, the built-in jobs) and then only waits on FD:
no threads, no ZeroMQ context, so forking is safe.

For each `fork` request it double-forks. The intermediate process exits at once, so the job is
re-parented to the daemon (a child subreaper), which waits for it like any child; the reply is
the job's pid. The job process sheds what it inherited (session, stdio, signal handlers and mask,
environment, cwd, random state, cached config) and then runs what `python -m pioreactor.runner`
runs. Plugins are imported there, after the fork, so an edited plugin takes effect at its next
start. The server exits when the daemon closes its end.
"""

from __future__ import annotations

import gc
import importlib
import os
import random
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from pioreactord.protocol import FORK_MESSAGE_MAX, ProtocolError, decode, encode

PRELOAD = ("click", "zmq", "pioreactor.config", "pioreactor.whoami", "pioreactor.channel",
           "pioreactor.background_jobs.base", "pioreactor.utils.pwm", "pioreactor.catalog",
           "pioreactor.runner")
STDIO = 3  # stdin, stdout, stderr arrive with each request
# What a fresh interpreter sets up; every other signal starts at SIG_DFL.
PYTHON_SIGNALS: dict[int, Any] = {signal.SIGINT: signal.default_int_handler, signal.SIGPIPE: signal.SIG_IGN,
                  signal.SIGXFSZ: signal.SIG_IGN}


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
    preload()
    gc.freeze()
    server.send(encode({"t": "ready", "pid": os.getpid()})[0])
    request = serve(server)  # returns only in a forked job process
    if request is None:
        return 0
    become_job(request)
    from pioreactor import runner

    sys.argv = [str(runner.__file__), *request.argv]
    return runner.main(request.argv)  # then the interpreter exits as usual: atexit, threads


def preload() -> None:
    from pioreactor.catalog import BUILTIN_MODULES

    for name in (*PRELOAD, *BUILTIN_MODULES):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the job that needs it reports it at its start
            print(f"cannot preload {name}: {exc!r}", file=sys.stderr)


def serve(server: socket.socket) -> ForkRequest | None:
    """Answer fork requests until the daemon goes; in a forked job, return its request."""
    while True:
        message, fds, flags, _ = socket.recv_fds(server, FORK_MESSAGE_MAX, STDIO,
                                                 socket.MSG_CMSG_CLOEXEC)
        if not message:
            close_all(fds)
            return None
        try:
            request = parse(message, fds, flags)
            pid = fork_job(request)
        except (ProtocolError, OSError) as exc:
            close_all(fds)
            server.send(encode({"t": "forked", "error": f"{type(exc).__name__}: {exc}"})[0])
            continue
        if pid is None:
            server.close()
            return request
        close_all(fds)
        server.send(encode({"t": "forked", "pid": pid})[0])


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


def fork_job(request: ForkRequest) -> int | None:
    """Double fork. Returns the job's pid once its intermediate parent is gone (so the job is
    already the daemon's child); returns None in the job process itself."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid_r, pid_w = os.pipe()
    intermediate = os.fork()
    if intermediate == 0:
        job_pid = -1
        try:
            job_pid = os.fork()
            if job_pid > 0:
                os.write(pid_w, str(job_pid).encode())
        finally:
            if job_pid != 0:
                os._exit(0)  # the intermediate's only work was that fork
        os.close(pid_r)
        os.close(pid_w)
        return None
    os.close(pid_w)
    try:
        reported = os.read(pid_r, 32)
    finally:
        os.close(pid_r)
        os.waitpid(intermediate, 0)
    if not reported:
        raise OSError("the intermediate process could not fork")
    return int(reported)


def become_job(request: ForkRequest) -> None:
    """What `subprocess` and exec give a fresh job, given to a forked one."""
    os.setsid()
    for target, fd in enumerate(request.stdio):
        os.dup2(fd, target)
        os.close(fd)
    reset_signals()
    os.environ.clear()
    os.environ.update(request.env)
    try:
        os.chdir(request.cwd)
    except OSError:
        pass  # the daemon's working directory is gone; exec would not care either
    random.seed()
    gc.enable()
    forget_cached_config()
    set_process_name(request.argv[0] if request.argv else "job")


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
    """The server may have read the config or asked the daemon: a job reads both afresh."""
    from pioreactor import whoami
    from pioreactor.config import config

    config.reload()
    whoami._ask_daemon.cache_clear()
    mappings = sys.modules.get("pioreactor.hardware_mappings")
    if mappings is not None:
        mappings.PWM_TO_PIN.reload()


def set_process_name(name: str) -> None:
    """What `ps -e` and `top` show (15 bytes): every forked process has the server's cmdline."""
    try:
        with open("/proc/self/comm", "w", encoding="utf-8") as comm:
            comm.write(name[:15])
    except OSError:
        pass


def close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
