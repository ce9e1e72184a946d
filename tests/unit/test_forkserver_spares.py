"""The fork server's spares: a request never waits for a spare that is still getting ready.

The real `serve` loop runs in a forked process and forks real spares; only the rehearsal is
replaced, by one that holds until the test lets it go (a rehearsal takes ~5 ms of CPU here, so
waiting for one cost a start that came meanwhile up to that much, and more on a slower machine).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from pathlib import Path

import pytest

from pioreactor import forkserver
from pioreactord.protocol import decode, encode
from tests.support.waiting import wait_for

REHEARSED: list[bool] = []  # in a spare's process: whether it went through its rehearsal


class Server:
    """`forkserver.serve` in a child; each spare that becomes a job writes a line to a pipe:
    its pid, its job's name, and whether it rehearsed."""

    def __init__(self, hang_first: Path | None = None,
                 rehearsal_limit: int = forkserver.REHEARSAL_LIMIT) -> None:
        """`hang_first`: the first rehearsal writes its spare's pid there and never returns."""
        self.hang_first = hang_first
        self.release_r, self.release_w = os.pipe()
        jobs_r, jobs_w = os.pipe()
        self.socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.socket.settimeout(10)  # a request handed to the held spare is never answered
        self.pid = os.fork()
        if self.pid == 0:  # the server, and every spare it forks
            try:
                self.socket.close()
                forkserver.reset_signals()  # as its main does: SIGALRM not pytest-timeout's
                forkserver.rehearse_start = self._held_rehearsal
                forkserver.REHEARSAL_LIMIT = rehearsal_limit
                request = forkserver.serve(theirs)
                if request is not None:  # a spare that became a job
                    os.write(jobs_w, f"{os.getpid()} {request.argv[0]} {bool(REHEARSED)}\n".encode())
            finally:
                os._exit(0)
        theirs.close()
        os.close(jobs_w)
        self.jobs = os.fdopen(jobs_r, "r")

    def _held_rehearsal(self) -> None:
        if self.hang_first is not None and not self.hang_first.exists():
            self.hang_first.write_text(str(os.getpid()))
            while True:
                signal.pause()
        os.read(self.release_r, 1)
        REHEARSED.append(True)

    def fork(self, name: str) -> int:
        """A fork request for job `name`; the pid the server answers with."""
        with open(os.devnull, "rb") as null:
            socket.send_fds(self.socket, encode({"t": "fork", "argv": [name], "env": {},
                                                 "cwd": "/"}), [null.fileno()] * forkserver.STDIO)
        reply, _ = decode([self.socket.recv(4096)])
        assert "pid" in reply, reply
        return int(reply["pid"])

    def job_ran(self) -> tuple[int, str, bool]:
        readable, _, _ = select.select([self.jobs], [], [], 10)
        assert readable, "no job ran"
        pid, name, rehearsed = self.jobs.readline().split()
        return int(pid), name, rehearsed == "True"

    def release_rehearsals(self) -> None:
        os.write(self.release_w, b"x" * 64)  # this one and the next ones

    def close(self) -> None:
        self.socket.close()  # the server returns; a spare still waiting exits
        self.release_rehearsals()
        if self.hang_first is not None and self.hang_first.exists():
            try:  # a rehearsal that still hangs: the fork server did not end it
                os.kill(int(self.hang_first.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            wait_for(lambda: os.waitpid(self.pid, os.WNOHANG) != (0, 0), 10,
                     "the fork server to exit after its socket closed")
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            raise AssertionError("the fork server did not exit within 10 s of its socket closing") from None
        self.jobs.close()


@pytest.fixture
def server():
    made = Server()
    yield made
    made.close()


def test_a_request_goes_to_a_new_spare_while_the_waiting_one_still_rehearses(server):
    pid = server.fork("first")  # the spare made at once is held in its rehearsal
    assert server.job_ran() == (pid, "first", False)  # a spare made for it, not the held one

    server.release_rehearsals()  # the held spare gets ready: a later request is its

    def the_rehearsed_spare_took_one() -> bool:
        pid = server.fork("later")
        ran = server.job_ran()
        assert ran[:2] == (pid, "later")
        return ran[2]

    wait_for(the_rehearsed_spare_took_one, 5, "a start given the spare that rehearsed")


def test_a_request_goes_to_the_spare_once_it_is_ready(server):
    server.release_rehearsals()

    def a_rehearsed_spare_took_it() -> bool:
        pid = server.fork("job")
        return server.job_ran() == (pid, "job", True)

    wait_for(a_rehearsed_spare_took_it, 5, "a start given a rehearsed spare")


def test_a_spare_whose_rehearsal_hangs_is_ended_and_a_later_one_rehearses(tmp_path, capfd):
    hung = tmp_path / "hung-spare"
    server = Server(hang_first=hung, rehearsal_limit=1)
    try:
        server.release_rehearsals()  # every rehearsal after the first one passes
        wait_for(hung.exists, 5, "the first spare's rehearsal to hang")

        def a_rehearsed_spare_took_one() -> bool:
            pid = server.fork("job")
            ran = server.job_ran()
            assert ran[:2] == (pid, "job")
            return ran[2]

        # Until the limit the hung spare is only passed over (a spare made without a rehearsal
        # takes each start); after it, the server replaces it and the next one rehearses again.
        wait_for(a_rehearsed_spare_took_one, 10, "a start given a rehearsed spare", poll=0.1)
    finally:
        server.close()
    hung_pid = int(hung.read_text())
    assert f"spare process {hung_pid} ended before it was handed a request" in capfd.readouterr().err


def test_a_rehearsal_that_hangs_in_the_server_is_given_up_and_the_server_goes_on(tmp_path):
    """In a child: pytest-timeout keeps SIGALRM for itself in this process."""
    report = tmp_path / "report"
    pid = os.fork()
    if pid == 0:
        try:
            forkserver.REHEARSAL_LIMIT = 1
            forkserver.rehearse_start = lambda: time.sleep(60)
            with open(report, "w") as out, contextlib.redirect_stderr(out):
                forkserver.rehearse_in_server()
                print("went on; SIGALRM default:",
                      signal.getsignal(signal.SIGALRM) == signal.SIG_DFL, file=out)
        finally:
            os._exit(0)
    wait_for(lambda: os.waitpid(pid, os.WNOHANG)[0] == pid, 10, "the server past its rehearsal")
    assert report.read_text().splitlines() == [
        "fork server: a rehearsal failed: TimeoutError('still going after 1 s')",
        "went on; SIGALRM default: True"]
