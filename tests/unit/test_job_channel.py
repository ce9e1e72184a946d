"""The job's end of the channel against a real ROUTER socket standing in for the daemon's."""

from __future__ import annotations

import threading

import pytest
import zmq

from pioreactor.channel import HEARTBEAT_SECONDS, Channel
from pioreactord.protocol import decode, encode
from tests.support.waiting import wait_for


@pytest.fixture
def router(tmp_path):
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    path = tmp_path / "jobs.sock"
    socket.bind(f"ipc://{path}")
    yield socket, str(path)
    socket.close(linger=0)
    context.term()


def receive(socket, timeout: float) -> tuple[bytes, dict]:
    assert socket.poll(int(timeout * 1000)), f"nothing from the job within {timeout:g} s"
    identity, *frames = socket.recv_multipart()
    return identity, decode(frames)[0]


def test_the_registration_is_heard_before_any_heartbeat(router):
    """A ping from an identity the daemon does not know yet is answered with `who`; a job that
    pinged before registering was made to register twice (and re-published its settings)."""
    socket, path = router
    events: list[dict] = []
    channel = Channel(path, "job:1:abc", lambda header, payload: events.append(header))
    answered: list[dict] = []
    asker = threading.Thread(target=lambda: answered.append(channel.request({"t": "register"})))
    try:
        asker.start()
        identity, first = receive(socket, 5)
        assert first["t"] == "register"
        socket.send_multipart([identity, *encode({"t": "reply", "id": first["id"], "ok": True,
                                                  "result": {"job_id": 1}})])
        asker.join(5)
        assert answered == [{"job_id": 1}]
        channel.start_heartbeat()
        _, second = receive(socket, HEARTBEAT_SECONDS + 3)
        assert second["t"] == "ping"
    finally:
        channel.close()


def test_a_full_socket_never_kills_the_channel(tmp_path):
    """The daemon stops reading (SIGSTOP): the job floods, heartbeats meet a full queue. Once
    the daemon reads again it gets the held lines in order, the drop said, and requests work."""
    context = zmq.Context()
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.RCVHWM, 10)
    path = tmp_path / "jobs.sock"
    socket.bind(f"ipc://{path}")
    channel = Channel(str(path), "flood:1:abc", lambda header, payload: None)
    try:
        channel.start_heartbeat()
        channel._held.confirmed(0)  # a daemon that confirms: a full hold drops new lines
        for i in range(30_000):
            channel.send({"t": "log", "level": "INFO", "message": f"line {i}", "task": "flood"})
            # Between lines, so that each is a message of its own (lines back to back go as one
            # `logs` message) and the socket fills.
            channel.send({"t": "state", "state": "ready"})
        wait_for(lambda: channel.pings_skipped >= 1, HEARTBEAT_SECONDS * 3,
                 "a heartbeat meeting the full socket")
        assert channel._io.is_alive()
        seqs, warnings, identity = [], [], b""
        # The drop is said at a heartbeat once the daemon has taken lines again.
        while socket.poll(int(HEARTBEAT_SECONDS * 3000)):
            identity, *frames = socket.recv_multipart()
            header = decode(frames)[0]
            if header.get("seq"):
                seqs.append(header["seq"])
                socket.send_multipart([identity, *encode({"t": "ack", "seq": header["seq"]})])
            if header.get("level") == "WARNING":
                warnings.append(header["message"])
            if warnings:
                break
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 20_000
        assert warnings and warnings[0].startswith("10000 messages to pioreactord were dropped")
        asker = threading.Thread(target=lambda: channel.request({"t": "whoami"}, timeout=5))
        asker.start()
        while socket.poll(2000):
            identity, *frames = socket.recv_multipart()
            header = decode(frames)[0]
            if header["t"] == "whoami":
                socket.send_multipart([identity, *encode({"t": "reply", "id": header["id"],
                                                          "ok": True, "result": {}})])
                break
        asker.join(5)
        assert not asker.is_alive()
    finally:
        channel.close()
        socket.close(linger=0)
        context.term()


def test_a_burst_of_sends_arrives_whole_and_in_order_with_few_wakes(router, monkeypatch):
    """One wake byte per burst, not per message: a send while a wake is pending writes none,
    lines waiting back to back go as one `logs` message, and nothing sent is left behind."""
    socket, path = router
    writes: list[int] = []
    real_wake = Channel._wake
    monkeypatch.setattr(Channel, "_wake", lambda self: (writes.append(1), real_wake(self)))
    channel = Channel(path, "job:1:abc", lambda header, payload: None)
    lines = 5000
    try:
        for i in range(lines):
            channel.send({"t": "log", "message": f"line {i}"})
        received, messages = [], 0
        while len(received) < lines:
            header = receive(socket, 5)[1]
            messages += 1
            records = header["records"] if header["t"] == "logs" else [header]
            received += [record["message"] for record in records]
        assert received == [f"line {i}" for i in range(lines)]
        assert [r["seq"] for r in records] == list(range(lines - len(records) + 1, lines + 1))
        assert len(writes) < lines / 10
        assert messages < lines / 10  # lines waiting back to back went as `logs` messages
        channel.send({"t": "log", "message": "after the burst"})  # a wake is written again
        assert receive(socket, 5)[1]["message"] == "after the burst"
    finally:
        channel.close()


def test_a_spares_channel_is_connected_ahead_and_forgets_what_it_heard_while_waiting(tmp_path):
    """The fork server's spare connects its job's channel while it waits. The daemon restarts
    meanwhile (the ROUTER goes and comes back): the job that takes the channel must not be told
    that its daemon is gone (it would reroute its output), and it registers over it at once."""
    from pioreactor import channel as channel_module

    path = str(tmp_path / "jobs.sock")
    context = zmq.Context()
    first = context.socket(zmq.ROUTER)
    first.bind(f"ipc://{path}")
    channel_module.prepare_spare_channel(path)
    spare = channel_module._spare_channels[0]
    second = None
    try:
        wait_for(lambda: spare.connected, 5, "the spare's channel connected")
        first.close(linger=0)
        wait_for(lambda: not spare.connected, 5, "the spare seeing its daemon go")
        second = context.socket(zmq.ROUTER)
        second.bind(f"ipc://{path}")
        wait_for(lambda: spare.connected, 5, "the spare's channel connected again")
        taken = channel_module.take_spare_channel(path)
        assert taken is spare and not channel_module._spare_channels
        events: list[dict] = []
        taken.claim("job", lambda header, payload: events.append(header))
        answered: list[dict] = []
        asker = threading.Thread(target=lambda: answered.append(taken.request({"t": "register"})))
        asker.start()
        identity, header = receive(second, 5)
        second.send_multipart([identity, *encode({"t": "message", "topic": "x"})])
        second.send_multipart([identity, *encode({"t": "reply", "id": header["id"], "ok": True,
                                                  "result": {"job_id": 1}})])
        asker.join(5)
        assert answered == [{"job_id": 1}]
        wait_for(lambda: events, 5, "the daemon's message handed to the job")
        assert [e["t"] for e in events] == ["message"]  # not the `daemon_gone` of before
        taken.close()
        channel_module.prepare_spare_channel(path)  # a job for another daemon makes its own
        assert channel_module.take_spare_channel(str(tmp_path / "other.sock")) is None
        assert not channel_module._spare_channels
    finally:
        channel_module._close_spare_channels()
        if second is not None:
            second.close(linger=0)
        context.term()
