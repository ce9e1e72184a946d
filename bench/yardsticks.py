"""What every figure of bench/run_all.py is compared with, measured in the same run.

The machine is shared and noisy (the same micro-benchmark drifts up to 2x within an hour), so a
figure alone says little: its ratio to a yardstick measured minutes apart does.
- `python -c pass`: a bare interpreter start of the interpreter that runs the bench (a regular,
  not editable, install: an editable one adds a .pth finder that costs every start ~12 ms).
- a bare interpreter that imported paho, zmq and psutil (what a job needs at least): its RSS/USS.
- one paho client publishing QoS-0 messages to the same broker, counted by the same subscriber
  the log figure uses: the MQTT ceiling a log line has to pass.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import psutil

from bench.mqtt_counter import Counter

# A figure's timed round and a `python -c pass` sample never run at once: on 2 cores a sample
# beside a start took a core from it (control call -> ready 6.86 -> 7.30 ms, medians of 32
# starts, blocks in alternation), and the start inflated the sample.
_ROUND = threading.Lock()


@contextmanager
def timed_round() -> Iterator[None]:
    """Around one timed round of a figure: the sampler waits for it to end."""
    with _ROUND:
        yield


@dataclass
class Figure:
    """Samples of one figure and how to print them."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def text(self) -> str:
        if not self.samples:
            return "n/a"
        decimals = 0 if self.median >= 1000 else 1 if self.median >= 10 else 2
        return (f"{self.median:,.{decimals}f} {self.unit} "
                f"({min(self.samples):,.{decimals}f}–{max(self.samples):,.{decimals}f}, "
                f"n={len(self.samples)})")


class StartSampler:
    """`python -c pass`, timed over and over in a thread while the figures are measured, so that
    each figure gets the yardstick of its own minutes (`during`): on a machine whose load changes
    within minutes, a yardstick from the start of the run says little about its end."""

    def __init__(self, pause: float = 0.2, python: str = sys.executable) -> None:
        self._samples: list[tuple[float, float]] = []  # (monotonic time, ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pause, python), daemon=True)
        self._thread.start()

    def _run(self, pause: float, python: str) -> None:
        while not self._stop.wait(pause):
            with _ROUND:
                began = time.perf_counter()
                subprocess.run([python, "-c", "pass"], check=True)
                self._samples.append((time.monotonic(), (time.perf_counter() - began) * 1000))

    def during(self, began: float, ended: float, at_least: int = 10) -> Figure:
        """The samples taken between `began` and `ended`, or the `at_least` nearest its middle."""
        inside = [ms for at, ms in list(self._samples) if began <= at <= ended]
        if len(inside) < at_least:
            middle = (began + ended) / 2
            nearest = sorted(list(self._samples), key=lambda sample: abs(sample[0] - middle))
            inside = [ms for _, ms in nearest[:at_least]]
        return Figure("python -c pass", "ms", inside)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def interpreter_start(rounds: int, python: str = sys.executable) -> Figure:
    figure = Figure("python -c pass", "ms")
    for _ in range(rounds):
        began = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        figure.samples.append((time.perf_counter() - began) * 1000)
    return figure


BARE_JOB = "import paho.mqtt.client, zmq, psutil, sys; print('up', flush=True); sys.stdin.read()"


def bare_interpreter_memory(rounds: int) -> tuple[Figure, Figure]:
    """RSS and USS of a bare interpreter that imported paho, zmq and psutil, idle."""
    rss, uss = Figure("bare python + paho, zmq, psutil: RSS", "MiB"), \
        Figure("bare python + paho, zmq, psutil: USS", "MiB")
    for _ in range(rounds):
        process = subprocess.Popen([sys.executable, "-c", BARE_JOB], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None and process.stdout.readline() == "up\n"
            info = psutil.Process(process.pid).memory_full_info()
            rss.samples.append(info.rss / 2**20)
            uss.samples.append(info.uss / 2**20)
        finally:
            process.kill()
            process.wait()
    return rss, uss


def mqtt_ceiling(port: int, rounds: int, lines: int) -> Figure:
    """Messages/s from one paho publisher (QoS 0) to one subscriber through this broker."""
    figure = Figure("one paho client, QoS 0, to the same counter", "msg/s")
    topic = f"bench/ceiling/{time.monotonic_ns()}"
    counter = Counter(port, topic)
    kwargs = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2} \
        if hasattr(mqtt, "CallbackAPIVersion") else {}
    publisher = mqtt.Client(**kwargs)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    payload = b'{"message": "line 00000 of a burst", "level": "INFO", "task": "flood"}'
    try:
        for _ in range(rounds):
            with timed_round():
                counter.expect(lines)
                began = time.monotonic()
                for _ in range(lines):
                    publisher.publish(topic, payload, qos=0)
                if not counter.reached.wait(60):
                    raise TimeoutError(f"only {counter.count} of {counter.target} arrived")
                figure.samples.append(lines / (counter.last_at - began))
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        counter.close()
    return figure
