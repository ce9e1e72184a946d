"""The only MQTT client: one network thread, callbacks that only enqueue, a bounded outbound queue.

Threads. The bridge's own thread ("mqtt") connects, runs paho's `loop()` and reconnects with
backoff; it is the only thread that touches the socket (`on_socket_register_write` is set, so a
`publish` from the main thread only queues the packet and wakes it). paho's callbacks run there
and only append to `_inbox` and wake the main loop. Everything else runs on the main thread:
`publish` puts the message in the `Outbox` (outbox.py: bounds, current values coalesced) and
`_pump` hands paho at most `WINDOW` QoS 1/2 messages not yet acknowledged (PUBACK, PUBCOMP) and
`WINDOW_QOS0` QoS 0 ones not yet written (a run of QoS 0 ones goes packed, as one write:
packed.py; `PACKED_WINDOW` such runs), refilled from `on_publish`. So paho's store never outgrows the window,
its 16-bit message ids never wrap onto a message still in flight, and a broker outage fills the
Outbox's bounded queue instead of RAM.

The connection. A failed attempt (no such host, refused, bad credentials, TLS) or a lost
connection is logged at WARNING with its cause at once, then again at growing intervals
(`WARN_FIRST` s doubling to `WARN_MAX`) while it lasts, and at once when the cause changes; the
connection coming up is logged at INFO, with what the outage cost. On every (re)connect the
subscriptions are sent again and every retained value the daemon holds is published again (a
broker restarted without persistence has none), `$state` topics last. `state()` is for
`pioctl status`.

The daemon's socket has TCP_NODELAY: state changes are small writes that must not wait for the
broker's delayed ACK (SPEC §7). It also acknowledges what it reads at once (TCP_QUICKACK, which
Linux drops again by itself: set after every network-loop pass). A stock mosquitto has Nagle on,
so its next message to us (a `$state/set`, the PUBREC of our next QoS-2 publish) waited for our
ACK of the last one that needed no answer (a PUBCOMP): 3.8-4.5 ms in 3 of 16 commands traced.

Works with paho-mqtt 1.6 (Debian bookworm) and 2.x (PyPI); the differences stay in this module.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import structlog

from .names import BadName, check_filter, check_topic
from .outbox import Outbox, Outgoing
from .packed import PackedSender, publish_packet
from .protocol import utc_timestamp

log = structlog.get_logger("pioreactord.bridge")

# Messages handed to paho and not acknowledged yet. QoS 1/2: mosquitto (2.0) takes at most its
# `max_inflight_messages` (default 20) unfinished QoS 2 handshakes from a client and beyond that
# completes the handshake but DISCARDS the message, neither retained nor forwarded (measured: a
# window of 100 lost 80 % of a 20,000-message burst, the last value included). QoS 0 is not
# acknowledged by the broker: written to the socket is done.
WINDOW = 20
WINDOW_QOS0 = 200
# Runs of QoS-0 messages (log lines) go to paho packed, a packet of at most PACK_BYTES each
# (packed.py), at most PACKED_WINDOW of them not yet written: 2 MiB waiting in paho at most, more
# than one loop pass reads from jobs (jobchannel.MAX_PASS_BYTES), so a pass never waits for acks.
PACK_BYTES = 32 * 1024
PACKED_WINDOW = 64
RETRY_MIN, RETRY_MAX = 0.25, 10.0  # seconds between connection attempts (doubling)
WARN_FIRST, WARN_MAX = 10.0, 1800.0  # seconds between repeated warnings of one outage (doubling)
MAX_INBOX = 10_000  # broker messages waiting for the main loop; beyond it new ones are dropped
KEEPALIVE = 15
DROPS_SAID_EVERY = 60.0  # s: drops while connected (a flood faster than the broker) said at most this often
CONNACK_REFUSALS = {1: "unacceptable protocol version", 2: "client identifier rejected",
                    3: "broker unavailable", 4: "bad user name or password", 5: "not authorized"}


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool
    qos: int


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes


@dataclass(frozen=True)
class _Link:
    """The network thread's news: the connection is up, or an attempt/connection ended."""

    up: bool
    cause: str = ""
    was_up: bool = False


def _new_client(client_id: str) -> mqtt.Client:
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2.x
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                           protocol=mqtt.MQTTv311, clean_session=True)
    return mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True)


def describe_failure(exc: BaseException) -> str:
    """The cause of a failed connection attempt, as the OS says it ("Name or service not known",
    "Connection refused", "timed out", a TLS error)."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def describe_refusal(rc: Any) -> str:
    """A CONNACK refusal: an int in paho 1.6, a ReasonCode in 2.x."""
    if isinstance(rc, int) and not hasattr(rc, "getName"):
        return CONNACK_REFUSALS.get(rc, f"refused (code {rc})")
    return str(rc).lower()


def _hint(cause: str) -> str:
    if "user name" in cause or "authori" in cause:
        return "check [mqtt] username and password"
    if cause.startswith("TLS"):
        return "check [mqtt] use_tls and the broker's certificate"
    return "check [mqtt] broker_address and broker_port, and that the broker is running"


class Bridge:
    def __init__(self, *, client_id: str, host: str, port: int, will: Will,
                 wake: Callable[[], None], username: str = "", password: str = "",
                 use_tls: bool = False,
                 defer: Callable[[Callable[[], None]], None] | None = None) -> None:
        """`defer(fn)`: run fn at the end of the main loop's pass (loop.at_end_of_pass), so a
        pass's publishes wake the network thread once; without it each publish is sent at once."""
        self.connected = False  # the main thread's view (it learns through _inbox)
        self.address = f"{host}:{port}"
        self._wake = wake
        self._defer = defer
        self._pump_deferred = False
        self._host, self._port = host, port
        self._subscriptions: Counter[str] = Counter()
        self._outbox = Outbox()
        self._in_flight: dict[int, tuple[str, bool, int]] = {}  # mid -> (topic, retain, qos)
        self._reliable_in_flight = 0  # of which QoS 1/2
        self._packed_in_flight: set[int] = set()  # of which packed runs (their topic is "")
        self._inbox: deque[Incoming | _Link] = deque()
        self._acks: deque[int] = deque()
        self._acked = threading.Event()  # for flush() at shutdown
        self._woken = False
        self._inbox_dropped = 0
        self._outage = _Outage()
        self._next_drops_warning = 0.0
        self._stopping = threading.Event()
        self._refusal: str | None = None  # the network thread's: why the broker refused us
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._client = self._make_client(client_id, will, username, password, use_tls)
        self._packed = PackedSender.for_client(self._client)

    def _make_client(self, client_id: str, will: Will, username: str, password: str,
                     use_tls: bool) -> mqtt.Client:
        client = _new_client(client_id)
        client.max_inflight_messages_set(WINDOW)
        client.max_queued_messages_set(0)  # never reached: the Outbox holds what waits
        client.will_set(will.topic, will.payload, qos=2, retain=True)
        if username:
            client.username_pw_set(username, password or None)
        if use_tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_socket_open = _no_delay
        # Set, so that publish() from the main thread never writes the socket itself: paho then
        # only queues the packet and wakes loop() in our thread through its socketpair.
        client.on_socket_register_write = lambda *args: None
        return client

    # --- lifecycle (main thread) -------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; the network thread retries until the broker answers."""
        self._client.connect_async(self._host, self._port, keepalive=KEEPALIVE)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._client.disconnect()
        if self._thread.ident is not None:
            self._thread.join(5)

    def flush(self, timeout: float) -> bool:
        """Shutdown: wait (bounded) until everything queued is acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while self.connected and (self._outbox or self._in_flight):
            self._acked.clear()
            self.take_events()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._acked.wait(min(remaining, 0.1))
        return not self._outbox and not self._in_flight

    # --- main thread API ---------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes | str, *, qos: int = 2, retain: bool = False) -> None:
        """Queue a message (retained ones are current values: see outbox.py) and send what the
        window allows now. BadName for a topic the broker would answer by dropping our
        connection."""
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        topic = check_topic(topic)
        if retain and self._pump_deferred and self._outbox.is_waiting(topic):
            # Deferring is only to gather a pass's wake-ups: it must not make a value overtaken
            # (a job's `init` by its `ready` in the same pass). Only an unacknowledged one may be.
            self._pump()
        self._outbox.put(topic, data, qos, retain)
        if self._defer is None:
            self._pump()
        elif not self._pump_deferred:
            self._pump_deferred = True
            self._defer(self._deferred_pump)

    def _deferred_pump(self) -> None:
        self._pump_deferred = False
        self._pump()

    def publish_many(self, messages: list[tuple[str, bytes]], *, qos: int = 0) -> None:
        """Queue many non-retained messages (a loop pass's log lines) and send once. A topic the
        broker would refuse is skipped (such a name is refused where it enters; a log line
        still reaches SQLite and the file)."""
        for topic, payload in messages:
            try:
                self._outbox.put(check_topic(topic), payload, qos, False)
            except BadName:
                continue
        self._pump()

    def take_events(self) -> list[Incoming]:
        """Called by the main loop on every wake: takes the network thread's news (logging
        connection changes, counting acknowledgements), refills paho, returns broker messages."""
        self._woken = False
        incoming: list[Incoming] = []
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, Incoming):
                incoming.append(item)
            else:
                self._link_changed(item)
        while self._acks:
            mid = self._acks.popleft()
            entry = self._in_flight.pop(mid, None)
            self._packed_in_flight.discard(mid)
            if entry is not None:
                self._reliable_in_flight -= entry[2] > 0
                self._outbox.done(entry[0], entry[1])
        self._pump()
        if self.connected and self._outbox.dropped > self._outage.dropped_before:
            self._said_drops_while_connected()
        return incoming

    def state(self) -> dict[str, Any]:
        """For `pioctl status`: connected, since, reason, and counters."""
        return {"connected": self.connected, "since": utc_timestamp(self._outage.changed_at),
                "reason": None if self.connected else (self._outage.cause or "connecting"),
                "address": self.address, "queued": len(self._outbox),
                "in_flight": len(self._in_flight), "dropped": self._outbox.dropped,
                "dropped_incoming": self._inbox_dropped}

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

    # --- main thread internals ---------------------------------------------------------------
    def _pump(self) -> None:
        while self.connected:
            if self._packed is not None and self._outbox.stream_qos0_is_next():
                if len(self._packed_in_flight) >= PACKED_WINDOW:
                    return  # a run's on_publish calls us again (not one by one: that is slow)
                if not self._send_packed(self._outbox.take_run(PACK_BYTES)):
                    return
                continue
            message = self._outbox.take()
            if message is None:
                return
            if (self._reliable_in_flight >= WINDOW if message.qos
                    else len(self._in_flight) - self._reliable_in_flight >= WINDOW_QOS0):
                self._outbox.put_back(message)  # an acknowledgement will call us again
                return
            info = self._client.publish(message.topic, message.payload, qos=message.qos,
                                        retain=message.retain)
            if info.rc == mqtt.MQTT_ERR_NO_CONN and message.qos == 0:
                self._outbox.put_back(message)  # the connection just went: its news is coming
                return
            # QoS 1/2 refused for want of a connection stay in paho's store and go out on the
            # next connect: they are in flight all the same.
            self._in_flight[info.mid] = (message.topic, message.retain, message.qos)
            self._reliable_in_flight += message.qos > 0

    def _send_packed(self, run: list[Outgoing]) -> bool:
        """Hand a run of QoS-0 messages to paho as one packet; False if there is no connection
        after all (they go back to the front: the connection's news is coming)."""
        assert self._packed is not None
        mid = self._packed.send([publish_packet(m.topic.encode(), m.payload) for m in run])
        if mid is None:
            for message in reversed(run):
                self._outbox.put_back(message)
            return False
        self._in_flight[mid] = ("", False, 0)
        self._packed_in_flight.add(mid)
        return True

    def _said_drops_while_connected(self) -> None:
        now = time.monotonic()
        if now < self._next_drops_warning:
            return
        self._next_drops_warning = now + DROPS_SAID_EVERY
        dropped = self._outbox.dropped - self._outage.dropped_before
        self._outage.dropped_before = self._outbox.dropped
        log.warning(f"{dropped} messages for the broker were dropped, oldest first: they came "
                    "faster than the broker took them (the queue holds "
                    f"{self._outbox.max_stream} messages or "
                    f"{self._outbox.max_stream_bytes >> 20} MiB); log lines are all in SQLite "
                    "and the log file")

    def _link_changed(self, link: _Link) -> None:
        if not link.up:
            self.connected = False
            message = self._outage.failed(link.cause, link.was_up, time.monotonic())
            if message:
                log.warning(message.format(address=self.address, queued=len(self._outbox)),
                            hint=_hint(link.cause))
            return
        self.connected = True
        for mid, (topic, retain, qos) in list(self._in_flight.items()):
            if qos == 0:  # paho drops unsent QoS 0 packets on reconnect: they never get on_publish
                del self._in_flight[mid]
                self._outbox.done(topic, retain)
        self._packed_in_flight.clear()
        if self._subscriptions:
            self._client.subscribe([(pattern, 2) for pattern in self._subscriptions])
        self._outbox.new_session()
        log.info(self._outage.recovered(time.monotonic()), broker=self.address)
        dropped = self._outbox.dropped - self._outage.dropped_before
        if dropped:
            log.warning(f"{dropped} messages for the broker were dropped while it was away, oldest "
                        f"first (the queue holds {self._outbox.max_stream} messages or "
                        f"{self._outbox.max_stream_bytes >> 20} MiB); log lines are all in "
                        "SQLite and the log file")
        self._outage.dropped_before = self._outbox.dropped

    # --- the network thread ------------------------------------------------------------------
    def _run(self) -> None:
        delay = RETRY_MIN
        while not self._stopping.is_set():
            cause, was_up = self._connection()
            if self._stopping.is_set():
                return
            self._post(_Link(False, cause, was_up))
            delay = RETRY_MIN if was_up else min(delay * 2, RETRY_MAX)
            self._stopping.wait(delay)

    def _connection(self) -> tuple[str, bool]:
        """One attempt and, if it connects, the connection's life: (why it ended, was it up)."""
        self._refusal, self._up = None, False
        try:
            self._client.reconnect()
        except (OSError, ValueError) as exc:  # gaierror, refused, timeout, TLS; a bad host name
            return describe_failure(exc), False
        except Exception as exc:  # noqa: BLE001 - this thread must outlive whatever paho raises
            return f"unexpected error: {exc!r}", False
        while not self._stopping.is_set():
            try:
                rc = self._client.loop(timeout=1.0)
            except Exception as exc:  # noqa: BLE001 - as above; paho closes the socket next try
                return f"unexpected error: {exc!r}", self._up
            ack_at_once(self._client.socket())
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return self._refusal or mqtt.error_string(rc).rstrip("."), self._up
        return "stopping", self._up

    def _post(self, item: Incoming | _Link) -> None:
        self._inbox.append(item)
        if not self._woken:
            self._woken = True
            self._wake()

    # --- paho callbacks (network thread): enqueue only --------------------------------------
    def _on_connect(self, client, userdata, flags, rc, properties=None) -> None:
        ok = (rc == 0) if isinstance(rc, int) else not rc.is_failure
        if ok:
            self._up = True
            self._post(_Link(True))
        else:
            self._refusal = describe_refusal(rc)

    def _on_message(self, client, userdata, message) -> None:
        if len(self._inbox) >= MAX_INBOX:  # the main loop is stuck: drop, count, say so in state()
            self._inbox_dropped += 1
            return
        self._post(Incoming(message.topic, message.payload, bool(message.retain), message.qos))

    def _on_publish(self, client, userdata, mid, *args) -> None:
        self._acks.append(mid)
        self._acked.set()
        if not self._woken:
            self._woken = True
            self._wake()


def _no_delay(client, userdata, sock) -> None:
    """Nagle off on the broker socket (TCP, plain or TLS)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # not a TCP socket (a websocket wrapper): nothing to tune


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def ack_at_once(sock: Any) -> None:
    """Send the ACK of what was just read now, not after the delayed-ACK timer."""
    if sock is None or _QUICKACK is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    except (OSError, AttributeError):
        pass  # closed meanwhile, or not a TCP socket (a websocket wrapper)


class _Outage:
    """When the broker connection went away, why, and when to say so again (main thread)."""

    def __init__(self) -> None:
        self.changed_at = datetime.now(UTC)  # connected since / not connected since
        self.cause = ""
        self.dropped_before = 0  # Outbox.dropped when the last outage was reported
        self._since: float | None = None  # monotonic start of the current outage
        self._attempts = 0
        self._next_warning = 0.0
        self._interval = WARN_FIRST

    def failed(self, cause: str, was_up: bool, now: float) -> str | None:
        """A failed attempt or a lost connection: the warning to log now, or None. The first
        failure of an outage is said at once, the next ones at doubling intervals."""
        first = self._since is None or was_up
        if first:
            self._since, self._attempts, self._interval = now, 0, WARN_FIRST
            if was_up:
                self.changed_at = datetime.now(UTC)
        self._attempts += 1
        self.cause = cause
        if not first and now < self._next_warning:
            return None
        self._next_warning = now + self._interval
        if not first:
            self._interval = min(self._interval * 2, WARN_MAX)
            return (f"still cannot connect to the broker at {{address}} after "
                    f"{now - (self._since or now):.0f} s ({self._attempts} attempts): {cause}; "
                    "{queued} messages wait")
        if was_up:
            return f"lost the broker connection at {{address}}: {cause}; reconnecting"
        return f"cannot connect to the broker at {{address}}: {cause}; retrying"

    def recovered(self, now: float) -> str:
        since, self._since = self._since, None
        self.cause = ""
        self.changed_at = datetime.now(UTC)
        if since is None:
            return "connected to the broker"
        return f"connected to the broker after {now - since:.1f} s without it"
