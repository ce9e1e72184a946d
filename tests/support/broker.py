"""A real Mosquitto on a free port in a temporary folder, and a paho client that records what the
broker delivers so tests can wait on a condition with a deadline."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from .waiting import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """`stock=True`: mosquitto's own defaults (max_queued_messages 1000 per client), else a queue
    big enough for tests that flood a subscriber. `users`: {name: password}, anonymous refused.
    `start=False`: the port is chosen (nothing listens on it) and `start()` comes later.
    `extra_conf`: more mosquitto.conf lines."""

    def __init__(self, extra_conf: str = "", *, port: int | None = None, stock: bool = False,
                 users: dict[str, str] | None = None, start: bool = True) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.dir = Path(tempfile.mkdtemp(prefix="mq", dir="/tmp"))
        self.port = port or free_port()
        conf = self.dir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        lines += [] if stock else ["max_queued_messages 100000"]
        if users:
            passwords = self.dir / "passwords"
            passwords.write_text("".join(f"{user}:{pw}\n" for user, pw in users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True)
            # mosquitto started as root reads it as the `mosquitto` user it drops to.
            passwords.chmod(0o644)
            self.dir.chmod(0o755)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines += ["allow_anonymous true"]
        conf.write_text("\n".join(lines) + "\n" + extra_conf)
        self.conf = conf
        self.process: subprocess.Popen | None = None
        if start:
            self.start()

    def start(self) -> Broker:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for(self._listening, 10, "mosquitto listening")
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        """Stop this mosquitto (persistence off: it forgets every retained message)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool
    at: float

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


class Watcher:
    """Subscribes to `pattern` and keeps every message; `wait` blocks until one matches."""

    def __init__(self, port: int, pattern: str = "#") -> None:
        self.messages: list[Seen] = []
        self._lock = threading.Lock()
        kwargs = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2} if hasattr(mqtt, "CallbackAPIVersion") else {}
        self.client = mqtt.Client(**kwargs)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(pattern, qos=2)
        self.client.loop_start()
        if not subscribed.wait(5):
            raise TimeoutError("watcher could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Seen(message.topic, message.payload, bool(message.retain),
                                      time.monotonic()))

    def find(self, topic: str, predicate: Callable[[Seen], bool] = lambda m: True,
             since: float = 0.0) -> list[Seen]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic and m.at >= since and predicate(m)]

    def wait(self, topic: str, payload: str | None = None, timeout: float = 10.0,
             since: float = 0.0, predicate: Callable[[Seen], bool] | None = None) -> Seen:
        def match(m: Seen) -> bool:
            return (payload is None or m.text == payload) and (predicate is None or predicate(m))

        found: list[Seen] = []

        def seen() -> bool:
            found[:] = self.find(topic, match, since)
            return bool(found)

        wait_for(seen, timeout, f"{topic} = {payload!r}")
        return found[0]

    def last(self, topic: str) -> Seen | None:
        found = self.find(topic)
        return found[-1] if found else None

    def publish(self, topic: str, payload: str | bytes, retain: bool = False, qos: int = 2) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
