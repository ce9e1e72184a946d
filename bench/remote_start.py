"""Latency of a remote start: publish `$state/set ready` -> the job's `$state = ready` on the broker.

A real Mosquitto, a real pioreactord and the test plugin `tester` (tests/support). Each run starts
the job over MQTT, then stops it over MQTT and waits for `disconnected` before the next run.

    .venv/bin/python bench/remote_start.py [runs]      (default 10)
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.yardsticks import timed_round  # noqa: E402
from pioreactord.bridge import ack_at_once  # noqa: E402
from tests.support.broker import Broker, Watcher  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402
from tests.support.plugins import SETTINGS_JOB  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402


def measure(runs: int, broker: Broker | None = None, *, ack_at_once: bool = False) -> list[float]:
    """Seconds per remote start; on `broker` if given (left running), else on one of its own.
    `ack_at_once`: the watcher acknowledges what it reads at once, as the daemon does."""
    own_broker = broker is None
    broker = broker or Broker()
    watcher = Watcher(broker.port, "pioreactor/#")
    # Nagle off on the watcher too, as on the daemon: paho leaves it on, and the watcher's own
    # PUBREC/PUBCOMP of the QoS-2 `$state` then wait for the broker's delayed ACK (+40 ms in
    # most runs, measured): the watcher's lag, not the start's.
    watcher.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ack_at_once:
        _acknowledge_at_once(watcher)
    daemon = Daemon(broker.port)
    daemon.add_plugin("tester", SETTINGS_JOB)
    try:
        daemon.start()
        state = f"pioreactor/{daemon.unit}/exp1/tester/$state"
        latencies = []
        for _ in range(runs):
            with timed_round():
                began = time.monotonic()
                watcher.publish(state + "/set", "ready")
                latencies.append(watcher.wait(state, "ready", since=began).at - began)
            since = time.monotonic()
            watcher.publish(state + "/set", "disconnected")
            watcher.wait(state, "disconnected", since=since)
            wait_for(lambda: daemon.status() == {}, 10, "tester gone")
        return latencies
    finally:
        daemon.cleanup()
        watcher.close()
        if own_broker:
            broker.stop()


def _acknowledge_at_once(watcher: Watcher) -> None:
    """TCP_QUICKACK after each packet paho hands over (Linux drops it again by itself). With a
    stock mosquitto (Nagle on) everything for the watcher otherwise waits for the watcher's
    delayed ACK of the PUBCOMP of its own `$state/set` (~40 ms): a packet trace has the daemon's
    `$state ready` on the wire at 11.2 ms and at the watcher at 47.9 ms."""
    sock = watcher.client.socket()

    def ack(*_: object) -> None:
        ack_at_once(sock)

    on_message = watcher.client.on_message
    watcher.client.on_message = lambda client, userdata, message: (ack(), on_message(client, userdata, message))
    watcher.client.on_publish = ack


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    latencies = sorted(measure(runs))
    p90 = latencies[min(len(latencies) - 1, round(0.9 * (len(latencies) - 1)))]
    print(f"remote start ($state/set ready -> $state ready), {runs} runs: "
          f"median {statistics.median(latencies) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
          f"min {latencies[0] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
