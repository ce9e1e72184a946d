"""`led_intensity`: set the HAT's LED channels A-D (0..100 %) through pioreactord.

Both call shapes of the Pioreactor docs work:

    led_intensity(channels="A", intensities=10)            # one channel, one number
    led_intensity(channels=["A", "B"], intensities=[10, 0])
    led_intensity({"A": 10, "B": 0})                        # a dict of channel -> intensity

The daemon drives the LEDs and publishes the retained `pioreactor/{unit}/{exp}/leds/intensity`
JSON of all four channels. Inside a job the request goes over the job's channel; from a process
without a job (a script, `pioctl start led_intensity --A 10`) it is a one-shot request on the job
socket. Returns True once the daemon applied it; a bad channel or value raises ValueError.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import click

CHANNELS = ("A", "B", "C", "D")


def led_intensity(channels: Any = None, intensities: Any = None, *, unit: str | None = None,
                  experiment: str | None = None, **_: Any) -> bool:
    """Set the given channels; the others keep their intensity. True on success."""
    wanted = _desired_state(channels, intensities)
    if not wanted:
        raise ValueError("led_intensity: no channel given")
    from pioreactor.background_jobs import running

    job = running.any_job()
    if job is not None:
        job.hardware_request("led", {"intensities": wanted})
    else:
        _one_shot(wanted)
    return True


def _desired_state(channels: Any, intensities: Any) -> dict[str, float]:
    if isinstance(channels, Mapping):
        pairs = list(channels.items())
    elif isinstance(channels, (list, tuple)):
        values = intensities if isinstance(intensities, (list, tuple)) else [intensities] * len(channels)
        if len(values) != len(channels):
            raise ValueError(f"led_intensity: {len(channels)} channels but {len(values)} intensities")
        pairs = list(zip(channels, values, strict=True))
    else:
        pairs = [(channels, intensities)]
    wanted = {}
    for channel, value in pairs:
        name = str(channel).upper()
        if name not in CHANNELS:
            raise ValueError(f"LED channel {channel!r} is not one of A, B, C, D")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"LED intensity {value!r} for channel {name} is not a number") from None
        if not 0 <= number <= 100:
            raise ValueError(f"LED intensity {number:g} for channel {name} is outside 0..100")
        wanted[name] = number
    return wanted


def _one_shot(wanted: dict[str, float]) -> None:
    from pioreactor.channel import check_daemon_listening
    from pioreactor.config import job_socket_path
    from pioreactord.client import Unreachable, call
    from pioreactord.protocol import JOB_SOCKET_ENV

    path = os.environ.get(JOB_SOCKET_ENV) or job_socket_path()
    check_daemon_listening(path)
    try:
        reply = call(path, {"t": "hw", "op": "led", "args": {"intensities": wanted}}, timeout=10)
    except Unreachable as exc:
        raise ConnectionError(f"pioreactord did not answer the LED request: {exc}") from None
    if not reply.get("ok"):
        raise RuntimeError(f"pioreactord refused the LED request: {reply.get('error')}")


@click.command(name="led_intensity")
@click.option("--A", "a", type=click.FloatRange(0, 100), help="intensity of channel A (%)")
@click.option("--B", "b", type=click.FloatRange(0, 100), help="intensity of channel B (%)")
@click.option("--C", "c", type=click.FloatRange(0, 100), help="intensity of channel C (%)")
@click.option("--D", "d", type=click.FloatRange(0, 100), help="intensity of channel D (%)")
def click_led_intensity(a: float | None, b: float | None, c: float | None, d: float | None) -> None:
    """Set LED intensities (channels not given keep theirs)."""
    wanted = {ch: v for ch, v in zip(CHANNELS, (a, b, c, d), strict=True) if v is not None}
    if not wanted:
        raise click.UsageError("give at least one of --A --B --C --D")
    led_intensity(wanted)
