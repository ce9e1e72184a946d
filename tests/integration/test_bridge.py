"""The bridge in-process against a real mosquitto: the connection reported, TCP_NODELAY, the
outbound bound through an outage, the republish on reconnect, and the last value of a burst."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from pioreactord.bridge import Bridge, Will
from pioreactord.outbox import MAX_STREAM
from tests.support.broker import Broker, Watcher, free_port
from tests.support.waiting import wait_for


class Running:
    """A bridge driven the way the daemon's main loop drives it: take_events on every wake."""

    def __init__(self, host: str, port: int, **kwargs) -> None:
        self.woken = threading.Event()
        self.bridge = Bridge(client_id=f"test-{free_port()}", host=host, port=port,
                             will=Will("t/bridge/$state", b"lost"), wake=self.woken.set, **kwargs)
        self.bridge.start()

    def until(self, condition, timeout: float, what: str):
        def check():
            self.woken.clear()
            self.bridge.take_events()
            return condition()
        return wait_for(check, timeout, what)

    def seen(self, watcher: Watcher, topic: str, payload: str, timeout: float = 10) -> None:
        """Drive the bridge until `watcher` has seen `payload` on `topic`."""
        self.until(lambda: watcher.find(topic, lambda m: m.text == payload), timeout,
                   f"{topic} = {payload}")

    def close(self) -> None:
        self.bridge.stop()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    made: list[Running] = []
    yield made
    for r in made:
        r.close()


def warnings(logs: list[dict]) -> list[str]:
    return [entry["event"] for entry in logs if entry["log_level"] == "warning"]


def test_an_unresolvable_broker_is_said_with_its_cause_and_in_state(running) -> None:
    with capture_logs() as logs:
        r = Running("nonexistent.invalid", 1883)
        running.append(r)
        r.until(lambda: warnings(logs), 20, "a warning")
    text = warnings(logs)[0]
    assert text.startswith("cannot connect to the broker at nonexistent.invalid:1883: ")
    assert re.search("Name or service not known|Temporary failure in name resolution|"
                     "No address associated", text), text
    state = r.bridge.state()
    assert state["connected"] is False and state["reason"] in text and state["since"].endswith("Z")


def test_a_closed_port_is_refused_then_connected_when_the_broker_comes(running) -> None:
    broker = Broker(start=False)
    try:
        with capture_logs() as logs:
            r = Running("127.0.0.1", broker.port)
            running.append(r)
            r.bridge.publish("t/bridge/$state", b"ready", retain=True)
            r.until(lambda: warnings(logs), 10, "a warning")
            assert warnings(logs) == [f"cannot connect to the broker at 127.0.0.1:{broker.port}: "
                                      "Connection refused; retrying"]
            assert r.bridge.state()["reason"] == "Connection refused"
            broker.start()
            watcher = Watcher(broker.port, "t/bridge/#")
            r.until(lambda: r.bridge.connected, 15, "connected")
            r.seen(watcher, "t/bridge/$state", "ready")
            watcher.close()
        infos = [e["event"] for e in logs if e["log_level"] == "info"]
        assert infos and infos[0].startswith("connected to the broker after ")
        assert r.bridge.state()["reason"] is None
    finally:
        broker.stop()


def test_bad_credentials_are_said(running) -> None:
    broker = Broker(users={"pio": "right"})
    try:
        with capture_logs() as logs:
            r = Running("127.0.0.1", broker.port, username="pio", password="wrong")
            running.append(r)
            r.until(lambda: warnings(logs), 10, "a warning")
        assert "bad user name or password" in warnings(logs)[0] or "not authorized" in warnings(logs)[0]
        assert logs[0]["hint"] == "check [mqtt] username and password"
        good = Running("127.0.0.1", broker.port, username="pio", password="right")
        running.append(good)
        good.until(lambda: good.bridge.connected, 10, "connected with the right password")
    finally:
        broker.stop()


def test_the_broker_socket_has_tcp_nodelay(broker, running) -> None:
    r = Running("127.0.0.1", broker.port)
    running.append(r)
    r.until(lambda: r.bridge.connected, 10, "connected")
    sock = r.bridge._client.socket()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_an_outage_keeps_the_newest_stream_and_every_current_value(running) -> None:
    broker = Broker(start=False)
    try:
        with capture_logs() as logs:
            r = Running("127.0.0.1", broker.port)
            running.append(r)
            total = MAX_STREAM + 5_000
            for i in range(total):
                r.bridge.publish("t/bridge/logs", str(i).encode(), qos=0)
                if i % 1000 == 0:
                    r.bridge.publish("t/bridge/setting", str(i).encode(), retain=True)
            r.bridge.publish("t/bridge/$state", b"ready", retain=True)
            assert r.bridge.state()["queued"] == MAX_STREAM + 2
            broker.start()
            watcher = Watcher(broker.port, "t/bridge/#")
            r.until(lambda: r.bridge.connected, 15, "connected")
            r.seen(watcher, "t/bridge/logs", str(total - 1), timeout=30)
            lines = [int(m.text) for m in watcher.find("t/bridge/logs")]
            watcher.close()
        assert lines == list(range(total - MAX_STREAM, total))  # the newest, all, in order
        assert watcher.last("t/bridge/setting").text == "24000"
        assert watcher.last("t/bridge/$state").text == "ready"
        dropped = [w for w in warnings(logs) if "dropped while it was away" in w]
        assert dropped and dropped[0].startswith("5000 messages for the broker were dropped")
    finally:
        broker.stop()


def test_a_restarted_broker_gets_every_current_value_back_state_last(running) -> None:
    broker = Broker()
    try:
        r = Running("127.0.0.1", broker.port)
        running.append(r)
        r.until(lambda: r.bridge.connected, 10, "connected")
        for job in ("a", "b"):
            r.bridge.publish(f"t/bridge/{job}/$state", b"ready", retain=True)
            r.bridge.publish(f"t/bridge/{job}/speed", b"5", retain=True)
        r.bridge.publish("t/bridge/a/gone", b"", retain=True)  # a cleared value is not re-sent
        r.until(lambda: not r.bridge.state()["in_flight"], 10, "acknowledged")
        broker.kill()
        r.until(lambda: not r.bridge.connected, 10, "the loss noticed")
        broker.start()
        # The watcher is subscribed before the bridge's main thread hears of the new
        # connection: the republish it then sees is live, in the order the bridge sent it.
        watcher = Watcher(broker.port, "t/bridge/#")
        r.until(lambda: r.bridge.connected, 15, "reconnected")
        for job in ("a", "b"):
            r.seen(watcher, f"t/bridge/{job}/$state", "ready", timeout=2)
            r.seen(watcher, f"t/bridge/{job}/speed", "5", timeout=2)
        topics = [m.topic for m in watcher.messages]
        watcher.close()
        assert "t/bridge/a/gone" not in topics
        for job in ("a", "b"):
            assert topics.index(f"t/bridge/{job}/speed") < topics.index(f"t/bridge/{job}/$state")
    finally:
        broker.stop()


def test_a_pass_gathered_for_one_wake_overtakes_no_value(broker, running) -> None:
    """With publishes deferred to the end of a loop pass (the daemon's way), a job's start burst
    (`init`, its settings, `ready`, all in one pass) still reaches the broker whole: gathering
    wake-ups must not coalesce a state nobody has been sent."""
    pass_end: list = []
    r = Running("127.0.0.1", broker.port, defer=pass_end.append)
    running.append(r)
    watcher = Watcher(broker.port, "t/pass/#")
    r.until(lambda: r.bridge.connected, 10, "connected")
    r.bridge.publish("t/pass/$state", b"init", retain=True)
    for i in range(8):
        r.bridge.publish(f"t/pass/setting{i}", str(i).encode(), retain=True)
    r.bridge.publish("t/pass/$state", b"ready", retain=True)
    while pass_end:
        pass_end.pop(0)()
    r.seen(watcher, "t/pass/$state", "ready")
    r.seen(watcher, "t/pass/setting7", "7")
    assert [m.text for m in watcher.find("t/pass/$state")] == ["init", "ready"]
    watcher.close()


@pytest.mark.parametrize("topics", [1, 50])
def test_a_burst_ends_with_its_last_value_retained_and_seen(running, topics: int) -> None:
    """20,000 QoS 2 retained values on a stock mosquitto (max_queued_messages 1000, 20 QoS 2 in
    flight per client): the subscriber may miss the middle, never the last value of a topic."""
    broker = Broker(stock=True)
    try:
        r = Running("127.0.0.1", broker.port)
        running.append(r)
        watcher = Watcher(broker.port, "t/burst/#")
        r.until(lambda: r.bridge.connected, 10, "connected")
        count = 20_000
        for i in range(count):
            r.bridge.publish(f"t/burst/{i % topics}", str(i).encode(), qos=2, retain=True)
        last = {f"t/burst/{t}": str(count - topics + t) for t in range(topics)}
        r.until(lambda: not r.bridge.state()["queued"] and not r.bridge.state()["in_flight"], 60,
                "everything acknowledged")
        for topic, value in last.items():
            r.seen(watcher, topic, value, timeout=20)
            assert watcher.last(topic).text == value
        watcher.close()
        fresh = Watcher(broker.port, "t/burst/#")
        for topic, value in last.items():
            assert fresh.wait(topic, timeout=5).text == value  # retained: the last value
        fresh.close()
    finally:
        broker.stop()


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "one-by-one"])
def test_stream_messages_arrive_whole_and_in_order_beside_current_values(broker, running,
                                                                         packed: bool) -> None:
    """Runs of QoS-0 messages (a loop pass's log lines, `publish_many`) go to paho packed
    (packed.py) on both paho versions, or one by one without it: either way every message
    arrives, whole and in order, and the current values published between runs arrive too."""
    r = Running("127.0.0.1", broker.port)
    running.append(r)
    assert r.bridge._packed is not None  # paho 1.6.1 and 2.x have the packet queue it uses
    if not packed:
        r.bridge._packed = None
    watcher = Watcher(broker.port, "t/run/#")
    r.until(lambda: r.bridge.connected, 10, "connected")
    sent: list[tuple[str, bytes]] = []
    for run in range(8):
        # Sizes whose remaining length takes 1, 2 and 3 bytes, and runs past PACK_BYTES.
        messages = [(f"t/run/logs/{i % 3}",
                     f"{run}.{i} {'x' * (70_000 if i == 7 else 16_400 if i == 9 else i % 130)}"
                     .encode()) for i in range(700)]
        r.bridge.publish_many(messages)
        r.bridge.publish("t/run/setting", str(run).encode(), retain=True)
        sent += messages
        r.seen(watcher, messages[-1][0], messages[-1][1].decode(), timeout=20)
        r.seen(watcher, "t/run/setting", str(run), timeout=5)
    got = [(m.topic, m.payload) for m in watcher.messages if "/logs/" in m.topic]
    watcher.close()
    assert len(got) == len(sent) and got == sent


def test_stream_messages_dropped_while_connected_are_said(broker, running) -> None:
    """More stream messages at once than the queue holds, the broker up: the oldest are dropped,
    and a WARNING says how many (a flood must not cost MQTT copies in silence)."""
    with capture_logs() as logs:
        r = Running("127.0.0.1", broker.port)
        running.append(r)
        r.until(lambda: r.bridge.connected, 10, "connected")
        r.bridge.publish_many([("t/flood/logs", str(i).encode()) for i in range(MAX_STREAM + 3_000)])
        r.until(lambda: [w for w in warnings(logs) if "faster than the broker" in w], 5,
                "the drop said")
    said = [w for w in warnings(logs) if "faster than the broker" in w]
    assert said[0].startswith("3000 messages for the broker were dropped, oldest first")
    assert r.bridge.state()["dropped"] == 3000
