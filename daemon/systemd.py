"""sd_notify for Type=notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING. A no-op without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import time


class Notifier:
    def __init__(self) -> None:
        self._notifier = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC", "")
        # systemd wants a ping well within WatchdogSec; a third of it leaves room for a slow tick.
        self.watchdog_interval = int(usec) / 1e6 / 3 if usec.isdigit() and int(usec) > 0 else None

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """Before a re-exec; READY=1 from the new image ends it. MONOTONIC_USEC: systemd 253+
        matches it against its own reload request (Type=notify-reload); older ones ignore it."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
                  "STATUS=re-executing in place")

    def stopping(self, extend_seconds: float) -> None:
        self.send("STOPPING=1", f"EXTEND_TIMEOUT_USEC={int(extend_seconds * 1e6)}",
                  "STATUS=stopping jobs")
