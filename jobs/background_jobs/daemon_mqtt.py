"""What `job.pub_client` / `job.sub_client` are under pioreactord: not paho clients.

Only the daemon holds a broker connection, so these offer the paho calls plugins make on a job's
clients, routed through the job: `publish`, `subscribe`, `message_callback_add` and `on_message`.
Subscribed messages go to the callback added for a matching pattern (`callback(client, userdata,
message)`, like paho), else to `on_message`. Anything else raises AttributeError saying what to
use instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pioreactord.protocol import topic_matches

if TYPE_CHECKING:
    from .base import BackgroundJob

PahoCallback = Callable[..., Any]


class PublishInfo:
    """What paho's publish returns, for plugins that wait on it: the daemon has the message."""

    rc = 0
    mid = 0

    def is_published(self) -> bool:
        return True

    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None


class DaemonMqtt:
    def __init__(self, job: BackgroundJob, name: str, callbacks: dict[str, PahoCallback]) -> None:
        # Through __dict__: __setattr__ below refuses every attribute a paho client would have.
        self.__dict__.update(_job=job, _name=name, _callbacks=callbacks, on_message=None)

    def publish(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False,
                **_: Any) -> PublishInfo:
        self._job.publish(topic, b"" if payload is None else payload, qos=qos, retain=retain)
        return PublishInfo()

    def subscribe(self, topic: str | list, qos: int = 0, **_: Any) -> tuple[int, int]:
        topics = [topic] if isinstance(topic, str) else [t[0] if isinstance(t, tuple) else t for t in topic]
        self._job.subscribe_and_callback(self._deliver, topics)
        return 0, 0

    def message_callback_add(self, pattern: str, callback: PahoCallback) -> None:
        self._callbacks[pattern] = callback

    def message_callback_remove(self, pattern: str) -> None:
        self._callbacks.pop(pattern, None)

    def _deliver(self, message: Any) -> None:
        for pattern, callback in list(self._callbacks.items()):
            if topic_matches(pattern, message.topic):
                return callback(self, None, message)
        if callable(self.__dict__.get("on_message")):
            self.__dict__["on_message"](self, None, message)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"job.{self._name}.{name}: under pioreactord jobs have no paho client; "
            f"{self._name} supports publish() and subscribe() only (or use self.publish / "
            f"self.subscribe_and_callback)")

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "on_message":
            self.__getattr__(name)
        self.__dict__[name] = value
