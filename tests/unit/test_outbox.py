"""The bridge's outbound queue (pure logic) and its outage warnings' schedule."""

from __future__ import annotations

from pioreactord.bridge import _Outage
from pioreactord.outbox import Outbox


def drain(box: Outbox) -> list[tuple[str, bytes]]:
    out = []
    while (message := box.take()) is not None:
        out.append((message.topic, message.payload))
        box.done(message.topic, message.retain)
    return out


def test_a_current_value_waits_once_and_moves_back_when_it_changes() -> None:
    box = Outbox()
    box.put("j/x", b"1", 2, True)
    box.put("logs", b"a", 0, False)
    box.put("j/x", b"2", 2, True)
    assert drain(box) == [("logs", b"a"), ("j/x", b"2")]


def test_a_topic_in_flight_holds_the_queue_until_acknowledged() -> None:
    box = Outbox()
    box.put("j/x", b"1", 2, True)
    first = box.take()
    box.put("j/x", b"2", 2, True)
    box.put("logs", b"a", 0, False)
    assert box.take() is None  # j/x=2 is at the head and j/x=1 is not acknowledged
    box.done(first.topic, True)
    assert drain(box) == [("j/x", b"2"), ("logs", b"a")]


def test_the_stream_drops_its_oldest_beyond_the_count_or_the_bytes() -> None:
    box = Outbox(max_stream=3, max_stream_bytes=1000)
    for i in range(5):
        box.put("l", str(i).encode(), 0, False)
    assert drain(box) == [("l", b"2"), ("l", b"3"), ("l", b"4")] and box.dropped == 2
    box = Outbox(max_stream=100, max_stream_bytes=10)
    for _ in range(5):
        box.put("l", b"1234", 0, False)  # 5 bytes each with the topic
    assert len(drain(box)) == 2 and box.dropped == 3


def test_a_new_session_sends_every_current_value_first_state_last() -> None:
    box = Outbox()
    box.put("j/$state", b"ready", 2, True)
    box.put("j/speed", b"5", 2, True)
    box.put("j/gone", b"", 2, True)
    drain(box)
    box.put("logs", b"a", 0, False)
    box.new_session()
    assert drain(box) == [("j/speed", b"5"), ("j/$state", b"ready"), ("logs", b"a")]


def test_a_value_paho_did_not_take_goes_first_next_time() -> None:
    box = Outbox()
    box.put("l", b"1", 0, False)
    box.put("l", b"2", 0, False)
    box.put_back(box.take())
    assert drain(box) == [("l", b"1"), ("l", b"2")]


def test_current_values_are_bounded_oldest_forgotten() -> None:
    box = Outbox(max_topics=2)
    for topic in ("a", "b", "c"):
        box.put(topic, b"1", 2, True)
    assert list(box.current) == ["b", "c"] and box.evicted == 1


def test_outage_warnings_slow_down() -> None:
    outage = _Outage()
    said = [t for t in range(0, 400) if outage.failed("Connection refused", False, float(t))]
    assert said == [0, 10, 20, 40, 80, 160, 320]
    assert outage.failed("The connection was lost", True, 400.0).startswith("lost the broker")
    assert outage.recovered(401.0) == "connected to the broker after 1.0 s without it"
