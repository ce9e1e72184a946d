"""The only MQTT client: paho's network thread, callbacks that only enqueue, ref-counted subscriptions.

paho runs in its own thread (`loop_start`). Its callbacks never block and never call back into the
daemon: they put an event on `events` and poke `wake` (a callable that wakes the main loop). The
main loop drains `events`. `publish` and `subscribe` are called from the main loop; paho queues
them internally and its thread sends them, so nobody waits for the broker.

Works with paho-mqtt 1.6 (Debian bookworm) and 2.x (PyPI); the differences stay in this module.
"""

from __future__ import annotations

import queue
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from .names import check_filter, check_topic


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool
    qos: int


@dataclass(frozen=True)
class ConnectionChange:
    connected: bool
    reason: str


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes


def _new_client(client_id: str) -> mqtt.Client:
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2.x
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                           protocol=mqtt.MQTTv311, clean_session=True)
    return mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True)


class Bridge:
    def __init__(self, *, client_id: str, host: str, port: int, will: Will,
                 wake: Callable[[], None], username: str = "", password: str = "",
                 use_tls: bool = False) -> None:
        self.events: queue.SimpleQueue[Incoming | ConnectionChange] = queue.SimpleQueue()
        self.connected = False
        self._wake = wake
        self._host, self._port = host, port
        self._subscriptions: Counter[str] = Counter()
        self._client = _new_client(client_id)
        self._client.max_queued_messages_set(0)  # unbounded: a slow broker must not drop state
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.will_set(will.topic, will.payload, qos=2, retain=True)
        if username:
            self._client.username_pw_set(username, password or None)
        if use_tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # --- lifecycle (main thread) -------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; paho retries until the broker answers."""
        self._client.connect_async(self._host, self._port, keepalive=15)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # --- main thread API ---------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes | str, *, qos: int = 2, retain: bool = False):
        """Queue a message. Returns paho's MessageInfo (wait_for_publish only at shutdown).
        BadName for a topic the broker would answer by dropping our connection."""
        return self._client.publish(check_topic(topic), payload, qos=qos, retain=retain)

    def subscribe(self, pattern: str, *, resend_retained: bool = False) -> None:
        """Count one more subscriber of `pattern`; the broker is told on the first one.

        `resend_retained` re-sends SUBSCRIBE anyway, which makes the broker deliver its retained
        messages again (MQTT 3.1.1 §3.8.4): a job that subscribes late still gets current values.
        BadName for a filter the broker would answer by dropping our connection.
        """
        self._subscriptions[check_filter(pattern)] += 1
        if (self._subscriptions[pattern] == 1 or resend_retained) and self.connected:
            self._client.subscribe(pattern, qos=2)

    def unsubscribe(self, pattern: str) -> None:
        if self._subscriptions[pattern] <= 0:
            return
        self._subscriptions[pattern] -= 1
        if self._subscriptions[pattern] == 0:
            del self._subscriptions[pattern]
            if self.connected:
                self._client.unsubscribe(pattern)

    def resubscribe_all(self) -> None:
        """After a (re)connect: the broker forgot us (clean session)."""
        for pattern in self._subscriptions:
            self._client.subscribe(pattern, qos=2)

    # --- paho thread: enqueue only -----------------------------------------------------------
    def _on_connect(self, client, userdata, flags, rc, properties=None) -> None:
        ok = (rc == 0) if isinstance(rc, int) else not rc.is_failure
        self.connected = ok
        self.events.put(ConnectionChange(ok, str(rc)))
        self._wake()

    def _on_disconnect(self, client, userdata, *args) -> None:
        self.connected = False
        reason = args[1] if len(args) >= 2 else (args[0] if args else "?")
        self.events.put(ConnectionChange(False, str(reason)))
        self._wake()

    def _on_message(self, client, userdata, message) -> None:
        self.events.put(Incoming(message.topic, message.payload, bool(message.retain), message.qos))
        self._wake()
