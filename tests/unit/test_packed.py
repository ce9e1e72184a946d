"""The MQTT PUBLISH packets the bridge writes packed (pure logic; the broker side is in
tests/integration/test_bridge.py)."""

from __future__ import annotations

import pytest

from pioreactord.packed import publish_packet, remaining_length


def parse(data: bytes) -> list[tuple[bytes, bytes]]:
    """A reader written from MQTT 3.1.1 §2.2 and §3.3, independent of the encoder."""
    out = []
    while data:
        assert data[0] == 0x30  # PUBLISH, QoS 0, not retained
        length, shift, i = 0, 0, 1
        while True:
            length |= (data[i] & 0x7F) << shift
            shift += 7
            i += 1
            if not data[i - 1] & 0x80:
                break
        body, data = data[i:i + length], data[i + length:]
        topic_length = int.from_bytes(body[:2], "big")
        out.append((body[2:2 + topic_length], body[2 + topic_length:]))
    return out


@pytest.mark.parametrize("value, encoded", [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f")])
def test_remaining_length_is_the_specs_variable_length_integer(value: int, encoded: bytes) -> None:
    assert remaining_length(value) == encoded  # the examples of MQTT 3.1.1 table 2.4


def test_packets_written_back_to_back_read_as_the_messages_in_order() -> None:
    messages = [(b"a/b", b""), (b"pioreactor/u/exp/logs/app/info", b'{"m":"\xc3\xa9"}'),
                (b"t", b"x" * 200_000)]
    assert parse(b"".join(publish_packet(t, p) for t, p in messages)) == messages


@pytest.mark.parametrize("remaining", [3, 127, 128, 16_383, 16_384, 16_385])
def test_a_packet_at_each_length_boundary_carries_its_length_and_parses_back(remaining: int) -> None:
    packet = publish_packet(b"t", b"x" * (remaining - 3))  # 2 length bytes + 1 topic byte
    size = remaining_length(remaining)
    assert packet[1:1 + len(size)] == size and len(packet) == 1 + len(size) + remaining
    assert parse(packet) == [(b"t", b"x" * (remaining - 3))]


def test_a_topic_or_message_mqtt_cannot_carry_is_refused_by_size() -> None:
    with pytest.raises(ValueError, match="topic is 65536 bytes"):
        publish_packet(b"t" * 65_536, b"")
    with pytest.raises(ValueError, match="message is 268435457 bytes"):
        publish_packet(b"t", b"x" * 268_435_454)
