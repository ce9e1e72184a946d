"""Every job-channel message is bound to the registered job of its connection (issue 12 item 2):
a client that has not registered may only set LEDs (logged with its uid) and ask whoami; a
registered job logs under its own name only."""

from __future__ import annotations

import json
import os

import pytest
import zmq

from pioreactord.limits import MAX_LOG_LINE
from pioreactord.protocol import decode, encode
from tests.support.plugins import SETTINGS_JOB
from tests.support.raw_job import run_raw_job
from tests.support.waiting import wait_for


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon()
    d.add_plugin("tester", SETTINGS_JOB)
    return d.start()


class RawClient:
    """A DEALER on jobs.sock speaking the protocol by hand, as any local process could."""

    def __init__(self, d) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(f"ipc://{d.root / 'run' / 'jobs.sock'}")

    def send(self, header: dict, payload: bytes | None = None) -> None:
        self.socket.send_multipart(encode(header, payload))

    def reply_to(self, request_id: str, timeout: float = 5) -> dict:
        def answered():
            while self.socket.poll(50):
                header, _ = decode(self.socket.recv_multipart())
                if header.get("t") == "reply" and header.get("id") == request_id:
                    return header
            return None

        return wait_for(answered, timeout, f"the reply to {request_id}")

    def close(self) -> None:
        self.socket.close()


def logged(d, where: str, params: tuple) -> list[tuple]:
    return d.query(f"SELECT level, task, message FROM logs WHERE {where}", params)


def test_an_unregistered_client_cannot_speak_for_a_running_job(daemon, watcher):
    daemon.pioctl("start", "tester")
    state = f"pioreactor/{daemon.unit}/exp1/tester/$state"
    client = RawClient(daemon)
    try:
        client.send({"t": "publish", "topic": state, "qos": 2, "retain": True}, b"lost")
        client.send({"t": "log", "level": "CRITICAL", "message": "forged-critical",
                     "task": "tester"})
        client.send({"t": "state", "state": "lost"})
        client.send({"t": "hw", "op": "led", "args": {"intensities": {"C": 7}}, "id": "led1"})
        assert client.reply_to("led1")["ok"] is True  # LEDs are open to anyone on the socket
        leds = f"pioreactor/{daemon.unit}/exp1/leds/intensity"
        watcher.wait(leds, predicate=lambda m: json.loads(m.payload)["C"] == 7.0)
        assert [m.text for m in watcher.find(state)] == ["init", "ready"]  # published before the LEDs
        client.send({"t": "register", "job_name": "tester", "pid": 1, "id": "reg1",
                     "experiment": "exp1", "source": "app", "settings": {}})
        assert client.reply_to("reg1")["code"] == "refused"
        dropped = "dropped 2 message(s) from a client of the job socket that is not a registered job"
        wait_for(lambda: logged(daemon, "message LIKE ?", (f"{dropped} (uid {os.getuid()}, "
                                                           f"pid {os.getpid()})",)), 5, "the drop")
        assert logged(daemon, "message = ?", ("forged-critical",)) == []
        assert logged(daemon, "message LIKE ?", (f"led request from a process that is not a job "
                                                 f"(uid {os.getuid()}, pid {os.getpid()})%",))
        assert daemon.status()["tester"]["state"] == "ready"
    finally:
        client.close()


BY_HAND = """
s.send_multipart(encode({"t": "log", "level": "INFO", "message": "from byhand", "task": "tester",
                         "experiment": "elsewhere", "source": "forged"}))
s.send_multipart(encode({"t": "log", "level": "INFO", "message": "x" * 1_000_000}))
assert ask({"t": "bye", "id": "b"})["ok"]
"""


def test_a_registered_job_logs_under_its_own_name_and_long_lines_are_cut(daemon):
    run_raw_job(daemon, BY_HAND)
    rows = wait_for(lambda: logged(daemon, "message = ?", ("from byhand",)), 5, "the line")
    assert rows == [("INFO", "byhand", "from byhand")]
    assert daemon.query("SELECT experiment, source FROM logs WHERE message = 'from byhand'") == \
        [("exp1", "app")]
    long = wait_for(lambda: logged(daemon, "task = 'byhand' AND message LIKE 'xxx%'", ()), 5,
                    "the long line")
    assert long[0][2].endswith("[... cut: the line was 976.6 KiB]")
    assert len(long[0][2]) <= MAX_LOG_LINE
