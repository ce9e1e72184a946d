"""Many QoS-0 messages handed to paho as one write.

Why: paho's cost per message (`publish()`, one `send()` per packet, and on paho 2 a ReasonCode and
a Properties object built for every `on_publish`) is about 30 µs here. At one message per log
line that capped the daemon's log lines below paho's own ~30,000 msg/s and took 40 % of the
daemon's time at 6,000 lines/s (issue 14). MQTT is a byte stream: N PUBLISH packets written back
to back are N messages to the broker, so a run of QoS-0 messages is encoded here and queued in
paho as one packet, written with as few `send()`s as the socket allows, and reported by one
`on_publish`.

That queue is paho's private `_packet_queue` (the same in paho-mqtt 1.6.1 and 2.x, and the path
its own `publish()` takes for QoS 0). `PackedSender.for_client` checks that it is there and
returns None otherwise; the bridge then publishes one message at a time, as before.
"""

from __future__ import annotations

import inspect
from typing import Any

import paho.mqtt.client as mqtt

PUBLISH_QOS0 = 0x30  # PUBLISH, QoS 0, not a duplicate, not retained
MAX_TOPIC = 65_535  # a topic's length is a 16-bit field
MAX_REMAINING = 268_435_455  # what MQTT's variable-length "remaining length" can say


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """The bytes of one MQTT 3.1.1 PUBLISH at QoS 0 (§3.3): header, remaining length, topic."""
    if len(topic) > MAX_TOPIC:
        raise ValueError(f"topic is {len(topic)} bytes (at most {MAX_TOPIC})")
    remaining = 2 + len(topic) + len(payload)
    if remaining > MAX_REMAINING:
        raise ValueError(f"message is {remaining} bytes (at most {MAX_REMAINING})")
    return b"".join((_PUBLISH_QOS0_BYTE, remaining_length(remaining),
                     len(topic).to_bytes(2, "big"), topic, payload))


_PUBLISH_QOS0_BYTE = bytes((PUBLISH_QOS0,))


def remaining_length(value: int) -> bytes:
    """MQTT's variable-length integer: 7 bits a byte, the high bit says another follows."""
    if value < 16_384:  # a log line's: one or two bytes, spelled out (2x faster than the loop)
        return bytes((value,)) if value < 128 else bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(out)


class PackedSender:
    """Queues a run of encoded QoS-0 PUBLISH packets in one paho client as one packet."""

    def __init__(self, client: mqtt.Client) -> None:
        self._client = client

    @classmethod
    def for_client(cls, client: mqtt.Client) -> PackedSender | None:
        """A sender, or None if this paho does not have the packet queue this relies on."""
        queue = getattr(client, "_packet_queue", None)
        if not (callable(queue) and callable(getattr(client, "_mid_generate", None))
                and hasattr(client, "_sock") and hasattr(mqtt, "MQTTMessageInfo")):
            return None
        try:
            parameters = list(inspect.signature(queue).parameters)
        except (TypeError, ValueError):
            return None
        if parameters[:5] != ["command", "packet", "mid", "qos", "info"]:
            return None
        return cls(client)

    def send(self, packets: list[bytes]) -> Any:
        """Queue `packets` (from `publish_packet`) to be written in order. Returns the paho
        message id its `on_publish` will report once all are written, or None when there is no
        connection (what paho's `publish()` answers with MQTT_ERR_NO_CONN: nothing is queued)."""
        client = self._client
        if client._sock is None:
            return None
        mid = client._mid_generate()
        client._packet_queue(PUBLISH_QOS0, b"".join(packets), mid, 0, mqtt.MQTTMessageInfo(mid))
        return mid
