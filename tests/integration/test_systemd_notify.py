"""sd_notify against a fake NOTIFY_SOCKET: READY only once serving, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.plugins import SETTINGS_JOB
from tests.support.waiting import wait_for


class FakeSystemd:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.lines: list[tuple[float, str]] = []

    def collect(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return [line for _, line in self.lines]
            now = time.monotonic()
            self.lines.extend((now, line) for line in data.decode().splitlines())


@pytest.fixture
def notified(make_daemon):
    daemon = make_daemon()
    daemon.add_plugin("tester", SETTINGS_JOB)
    fake = FakeSystemd(str(daemon.root / "notify.sock"))
    daemon.start(env={"NOTIFY_SOCKET": str(daemon.root / "notify.sock"), "WATCHDOG_USEC": "600000"})
    yield daemon, fake
    fake.sock.close()


def test_ready_status_watchdog_and_stopping(notified):
    daemon, fake = notified
    lines = wait_for(lambda: "READY=1" in fake.collect() and fake.collect(), 5, "READY=1")
    assert (daemon.root / "run" / "control.sock").exists() and (daemon.root / "run" / "jobs.sock").exists()
    assert "STATUS=0 jobs" in lines
    daemon.pioctl("start", "tester")
    wait_for(lambda: "STATUS=1 job: tester" in fake.collect(), 5, "STATUS naming the job")
    began = time.monotonic()
    wait_for(lambda: fake.collect() and sum(
        1 for at, line in fake.lines if line == "WATCHDOG=1" and at > began) >= 4, 5, "four pings")
    pings = [at for at, line in fake.lines if line == "WATCHDOG=1" and at > began]
    assert max(b - a for a, b in zip(pings, pings[1:], strict=False)) < 0.6  # within WATCHDOG_USEC
    assert daemon.stop() == 0
    lines = fake.collect()
    assert "STOPPING=1" in lines
    assert any(line.startswith("EXTEND_TIMEOUT_USEC=") for line in lines)


def test_no_notify_socket_is_a_no_op(make_daemon):
    daemon = make_daemon().start()  # no NOTIFY_SOCKET: nothing to send, nothing breaks
    assert daemon.pioctl("status").returncode == 0
