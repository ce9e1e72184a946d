"""The daemon's event loop: one zmq.Poller over sockets and file descriptors, plus monotonic timers.

Nothing in the daemon blocks: every wait is a registered fd (job channel, control channel, pidfds,
job output pipes, the wake pipe) or a timer. Other threads (paho, workers) hand work to the loop
with `post`, which writes one byte to the wake pipe; signal handlers use the same pipe through
`signal.set_wakeup_fd`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    callback: Callable[[], Any] = field(compare=False)


class Loop:
    def __init__(self) -> None:
        self.poller = zmq.Poller()
        self._handlers: dict[Any, Callable[[], Any]] = {}
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._posted: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        self._at_end: list[Callable[[], Any]] = []  # this pass's, see at_end_of_pass
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.watch(self.wake_r, self._drain_wake)
        self.on_wake: Callable[[], Any] = lambda: None  # signal handling hooks in here
        # A handler's bug must never take the daemon down: it is reported and the loop goes on.
        self.on_error: Callable[[BaseException, Callable[[], Any]], Any] = lambda exc, fn: None

    # --- registration --------------------------------------------------------------------------
    def watch(self, source: Any, handler: Callable[[], Any]) -> None:
        """Call `handler()` whenever `source` (zmq socket or fd) is readable."""
        self._handlers[source] = handler
        self.poller.register(source, zmq.POLLIN)

    def unwatch(self, source: Any) -> None:
        if self._handlers.pop(source, None) is not None:
            self.poller.unregister(source)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        """Run `callback` once after `delay` s. There is no cancelling: a callback checks that
        it still applies when it runs (e.g. its job is still the registered one)."""
        timer = Timer(time.monotonic() + delay, next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def post(self, callback: Callable[[], Any]) -> None:
        """Thread-safe: run `callback` on the loop soon."""
        self._posted.put(callback)
        self.wake()

    def at_end_of_pass(self, callback: Callable[[], Any]) -> None:
        """Main thread only: run `callback` once this pass's handlers are done (no wake-up).
        What a pass gathered goes out in one step: e.g. a job's start burst to the broker's
        thread in one wake instead of one per setting."""
        self._at_end.append(callback)

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    # --- running -------------------------------------------------------------------------------
    def run_once(self, max_wait: float) -> None:
        timeout_ms = self._timeout_ms(max_wait)
        try:
            ready = dict(self.poller.poll(timeout_ms))
        except zmq.ZMQError:
            ready = {}  # EINTR: a signal; its byte is in the wake pipe
        for source in list(ready):
            handler = self._handlers.get(source)
            if handler is not None:
                self._guarded(handler)
        self._run_posted()
        self._run_due_timers()
        while self._at_end:
            self._guarded(self._at_end.pop(0))

    def _timeout_ms(self, max_wait: float) -> int:
        wait = max_wait
        if self._timers:
            wait = min(wait, max(0.0, self._timers[0].when - time.monotonic()))
        return int(wait * 1000)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0].when <= now:
            timer = heapq.heappop(self._timers)
            self._guarded(timer.callback)

    def _run_posted(self) -> None:
        while True:
            try:
                callback = self._posted.get_nowait()
            except queue.Empty:
                return
            self._guarded(callback)

    def _guarded(self, callback: Callable[[], Any]) -> None:
        try:
            callback()
        except Exception as exc:  # noqa: BLE001 - reported through on_error
            self.on_error(exc, callback)

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        self.on_wake()
