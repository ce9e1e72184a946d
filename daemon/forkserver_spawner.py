"""The daemon's end of the fork server (`[pioreactord] spawner = forkserver`, the default).

`python -m pioreactor.forkserver` imports the job runtime once; a start then costs a fork instead
of a fresh interpreter. The daemon makes itself a child subreaper before starting the server, and
the server double-forks, so every job it hands out is re-parented to the daemon: the daemon's
child like an exec'd one (SPEC §1), waited for and decoded in the same place.

A start never fails because of the fork server. While the server is still importing, the start
uses `exec` quietly. When it is dead or does not answer within REPLY_TIMEOUT, the start uses
`exec` with a WARNING, and the server is killed and started again: 1 s after it ended, doubling up
to 60 s while it keeps dying before it is ready. Its stdout/stderr go to the daemon's log. The
daemon stops it when it exits; the server also exits by itself when the daemon's end closes.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
from typing import Any

import structlog

from .children import (
    Child,
    OutputCapture,
    SpawnRequest,
    SubprocessSpawner,
    become_subreaper,
    collect_exit,
    is_our_child,
    send_signal,
    start_process,
)
from .loop import Loop
from .protocol import FORK_MESSAGE_MAX, ProtocolError, decode, encode

log = structlog.get_logger("pioreactord.forkserver")

REPLY_TIMEOUT = 1.0  # seconds; a fork takes milliseconds, the loop must not wait long
RESTART_DELAY, MAX_RESTART_DELAY = 1.0, 60.0
STOP_TIMEOUT = 2.0


class ForkRefused(Exception):
    """The server answered, but could not fork (the reason is its message)."""


class ForkServerSpawner:
    def __init__(self, loop: Loop, python: str = sys.executable) -> None:
        self.loop = loop
        self._python = python
        self._exec = SubprocessSpawner(python)
        self._env: dict[str, str] = {}
        self._cwd = "/"
        self._server: Child | None = None
        self._socket: socket.socket | None = None
        self._ready = False
        self._usable = True  # False: this kernel cannot make the daemon a subreaper
        self._stopping = False
        self._restart_delay = RESTART_DELAY
        self._output = OutputCapture()

    @property
    def helper_pid(self) -> int | None:
        return self._server.pid if self._server else None

    # --- the server's life ---------------------------------------------------------------------
    def start(self, env: dict[str, str]) -> None:
        self._env, self._cwd = env, os.getcwd()
        if not become_subreaper():
            self._usable = False
            log.warning("cannot become a child subreaper (prctl); jobs start with exec")
            return
        self._launch()

    def _launch(self) -> None:
        if self._stopping:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            server = start_process([self._python, "-m", "pioreactor.forkserver",
                                    str(theirs.fileno())], self._env, merge_stderr=True,
                                   pass_fds=(theirs.fileno(),))
        except OSError as exc:
            ours.close()
            log.warning("cannot start the fork server; jobs start with exec", error=str(exc))
            self._restart_later(ready_before=False)
            return
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        self._server, self._socket, self._ready = server, ours, False
        self._output = OutputCapture()
        self.loop.watch(server.pidfd, self._ended)
        assert server.stdout_fd is not None
        self.loop.watch(server.stdout_fd, self._read_output)
        self.loop.watch(ours.fileno(), self._hello)
        log.debug("fork server starting", pid=server.pid)

    def _hello(self) -> None:
        """The server's first message: its imports are done."""
        assert self._socket is not None and self._server is not None
        self.loop.unwatch(self._socket.fileno())
        try:
            header = self._receive()
        except (OSError, ValueError) as exc:
            log.warning("fork server did not start; restarting it", error=str(exc))
            self._kill()
            return
        if header.get("t") != "ready":
            log.warning("fork server said something else than ready; restarting it", said=header)
            self._kill()
            return
        self._ready = True
        log.info("fork server ready", pid=self._server.pid)

    def _read_output(self) -> None:
        assert self._server is not None and self._server.stdout_fd is not None
        fd = self._server.stdout_fd
        texts, eof = self._output.read(fd, is_stderr=True)
        for text in texts:
            log.warning(f"fork server: {text}")
        if eof:
            self.loop.unwatch(fd)
            os.close(fd)
            self._server.stdout_fd = None

    def _ended(self) -> None:
        server, was_ready = self._server, self._ready
        assert server is not None
        exit_info = collect_exit(server.pid, True)
        self._forget_server()
        if self._stopping:
            return
        self._restart_later(ready_before=was_ready)
        log.warning(f"fork server {exit_info.describe()}; starting it again in "
                    f"{self._restart_delay:g} s (jobs start with exec meanwhile)", pid=server.pid)

    def _restart_later(self, ready_before: bool) -> None:
        if ready_before:
            self._restart_delay = RESTART_DELAY
        else:  # died while starting: do not spin
            self._restart_delay = min(self._restart_delay * 2, MAX_RESTART_DELAY)
        self.loop.call_later(self._restart_delay, self._launch)

    def _forget_server(self) -> None:
        server, self._server, self._ready = self._server, None, False
        if server is None:
            return
        if server.stdout_fd is not None:
            for text in self._output.drain(server.stdout_fd, is_stderr=True):
                log.warning(f"fork server: {text}")
            self.loop.unwatch(server.stdout_fd)
            os.close(server.stdout_fd)
        if self._socket is not None:
            self.loop.unwatch(self._socket.fileno())
            self._socket.close()
            self._socket = None
        self.loop.unwatch(server.pidfd)
        os.close(server.pidfd)

    def _kill(self) -> None:
        """A server that does not answer: kill it; its end (`_ended`) starts a new one."""
        self._ready = False
        if self._server is not None:
            send_signal(self._server.pid, signal.SIGKILL)

    def stop(self) -> None:
        """At daemon exit: close our end (the server exits), SIGKILL if it lingers."""
        self._stopping = True
        server = self._server
        if server is None:
            return
        if self._socket is not None:
            self.loop.unwatch(self._socket.fileno())
            self._socket.close()
            self._socket = None
        if not select.select([server.pidfd], [], [], STOP_TIMEOUT)[0]:
            send_signal(server.pid, signal.SIGKILL)
            select.select([server.pidfd], [], [], STOP_TIMEOUT)
        collect_exit(server.pid, True)
        self._forget_server()

    # --- starting jobs -------------------------------------------------------------------------
    def spawn(self, request: SpawnRequest) -> Child:
        if not self._ready:
            if self._usable and self._server is None:
                log.warning("fork server is down; starting with exec", job=request.job_name)
            else:
                log.debug("fork server not ready yet; starting with exec", job=request.job_name)
            return self._exec.spawn(request)
        try:
            return self._fork(request)
        except ForkRefused as exc:
            log.warning("fork server could not fork; starting with exec", job=request.job_name,
                        error=str(exc))
        except (OSError, ValueError) as exc:
            log.warning("fork server not answering; starting with exec and restarting it",
                        job=request.job_name, error=repr(exc))
            self._kill()
        return self._exec.spawn(request)

    def _fork(self, request: SpawnRequest) -> Child:
        assert self._socket is not None
        message = encode({"t": "fork", "argv": [request.job_name, *request.args],
                          "env": request.env, "cwd": self._cwd})[0]
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            socket.send_fds(self._socket, [message], [stdin, out_w, err_w])
            reply = self._receive()
            if reply.get("error"):
                raise ForkRefused(str(reply["error"]))
            pid = reply.get("pid")
            if reply.get("t") != "forked" or not isinstance(pid, int) or pid <= 0:
                raise ProtocolError(f"unexpected reply {reply!r}")
            pidfd = os.pidfd_open(pid)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in (stdin, out_w, err_w):
                os.close(fd)
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        return Child(pid, pidfd, out_r, err_r, is_our_child(pid), via="forkserver")

    def _receive(self) -> dict[str, Any]:
        assert self._socket is not None
        data = self._socket.recv(FORK_MESSAGE_MAX)  # REPLY_TIMEOUT: TimeoutError
        if not data:
            raise ConnectionError("the fork server closed its end")
        return decode([data])[0]  # ProtocolError is a ValueError
