"""Hardware requests from jobs, served by the daemon's one hardware backend.

Jobs never touch GPIO themselves: `PWM.start()` in a job is an `hw` request handled here. That is
what lets the daemon switch off every pin of a job that died, by any path (`release`). A pin
locked by another job cannot be driven or locked; an unlocked pin may be driven (Pioreactor
allows it), and is still switched off when its driver ends. LEDs set by a long-running job that
then crashes are switched off too: its own clean-up (`on_disconnected`, where the seeds turn their
LED off) never ran. After a clean stop the job's clean-up is trusted, and a short action's LEDs
(`pioctl start led_intensity`) are meant to stay.

Ops (request args -> result):
  lock {pin}            -> {pin, job_name, pid, since}      PinBusy names the holder
  unlock {pin}          -> {released: bool}
  pwm {pin, hz, dc}     -> {pin, dc}                        dc in 0..100, else ValueError
  pwm_off {pin}         -> {pin}
  led {intensities: {channel: 0..100}} -> {A, B, C, D}   also from unregistered callers (job None)
  adc {channel}         -> {volts}
  edges {pin}           -> {count}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import structlog

from .hardware.base import HardwareBackend
from .registry import Job, PinBusy, Registry

log = structlog.get_logger("pioreactord.gpio")

LED_CHANNELS = ("A", "B", "C", "D")


class GpioService:
    def __init__(self, *, registry: Registry, backend: HardwareBackend, unit: str,
                 experiment: Callable[[], str], publish: Callable[..., Any]) -> None:
        self.registry, self.backend = registry, backend
        self._unit, self._experiment, self._publish = unit, experiment, publish
        self._state_held = False  # see hold_state
        self._duty: dict[int, float] = {}  # pin -> duty cycle, for pins that are on
        self._driver: dict[int, str] = {}  # pin -> name of the job that last drove it
        self._leds: dict[str, float] = {c: 0.0 for c in LED_CHANNELS}
        self._led_setter: dict[str, int] = {}  # channel -> job id of the long-running job that set it
        self._ops: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
            "lock": self._lock, "unlock": self._unlock, "pwm": self._pwm, "pwm_off": self._pwm_off,
            "led": self._led, "adc": self._adc, "edges": self._edges,
        }

    def handle(self, job: Job | None, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op not in self._ops:
            raise ValueError(f"unknown hardware op {op!r} (known: {', '.join(self._ops)})")
        return self._ops[op](job, args)

    def publish_state(self) -> None:
        """The retained pwms/dc and leds/intensity, e.g. after (re)connecting to the broker."""
        self._publish_pwms()
        self._publish_leds()

    def hold_state(self) -> None:
        """After a restart, until the jobs from before it have re-registered (or ended): publish
        no pwms/dc or leds/intensity, which would show their pins off for a moment."""
        self._state_held = True

    def release_state(self) -> None:
        if self._state_held:
            self._state_held = False
            self.publish_state()

    # --- ops -----------------------------------------------------------------------------------
    def _lock(self, job: Job, args: dict[str, Any]) -> dict[str, Any]:
        return asdict(self.registry.lock(int(args["pin"]), job))

    def _unlock(self, job: Job, args: dict[str, Any]) -> dict[str, Any]:
        return {"released": self.registry.unlock(int(args["pin"]), job)}

    def _pwm(self, job: Job, args: dict[str, Any]) -> dict[str, Any]:
        pin, dc, hz = int(args["pin"]), float(args["dc"]), float(args.get("hz") or 0)
        if not 0 <= dc <= 100:
            raise ValueError(f"duty cycle {dc:g} is outside 0..100")
        self.registry.check_pin(pin, job)
        self.backend.pwm_set(pin, hz, dc)
        self._driver[pin] = job.name
        if dc > 0:
            self._duty[pin] = dc
        else:
            self._duty.pop(pin, None)
        self._publish_pwms()
        return {"pin": pin, "dc": dc}

    def _pwm_off(self, job: Job, args: dict[str, Any]) -> dict[str, Any]:
        pin = int(args["pin"])
        self.registry.check_pin(pin, job)
        self._switch_off(pin)
        self._publish_pwms()
        return {"pin": pin}

    def _led(self, job: Job | None, args: dict[str, Any]) -> dict[str, Any]:
        wanted = {str(k).upper(): float(v) for k, v in dict(args["intensities"]).items()}
        for channel, value in wanted.items():
            if channel not in LED_CHANNELS:
                raise ValueError(f"LED channel {channel!r} is not one of A, B, C, D")
            if not 0 <= value <= 100:
                raise ValueError(f"LED intensity {value:g} for channel {channel} is outside 0..100")
        for channel, value in wanted.items():
            self.backend.led_set(channel, value)
            self._leds[channel] = value
            if job is not None and value > 0:  # a job's LEDs (not a short action's) die with it
                self._led_setter[channel] = job.job_id
            else:
                self._led_setter.pop(channel, None)
        self._publish_leds()
        return dict(self._leds)

    def _adc(self, job: Job, args: dict[str, Any]) -> dict[str, Any]:
        return {"volts": float(self.backend.read_adc(int(args["channel"])))}

    def _edges(self, job: Job, args: dict[str, Any]) -> dict[str, Any]:
        return {"count": int(self.backend.count_edges(int(args["pin"])))}

    # --- what dies with a job ------------------------------------------------------------------
    def release(self, job: Job, freed_pins: list[int], *, crashed: bool) -> None:
        """Drive to 0 every pin the job locked or drove, and if it crashed, the LEDs it left on.
        Called once, when the job has ended."""
        pins = set(freed_pins) | {pin for pin, name in self._driver.items() if name == job.name}
        for pin in sorted(pins):
            self._switch_off(pin)
            log.info("pin switched off after its job ended", pin=pin, job=job.name)
        leds = sorted(c for c, job_id in self._led_setter.items() if job_id == job.job_id)
        for channel in leds:
            del self._led_setter[channel]
        if crashed and leds:
            self._leds_off(leds, job)
        if pins:
            self._publish_pwms()  # last: the pins and LEDs are off whatever publishing does

    def _leds_off(self, channels: list[str], job: Job) -> None:
        for channel in channels:
            try:
                self.backend.led_set(channel, 0.0)
                self._leds[channel] = 0.0
                log.info("LED switched off after its job crashed", channel=channel, job=job.name)
            except Exception as exc:  # noqa: BLE001 - keep switching the others off
                log.error("could not switch LED off", channel=channel, job=job.name, error=repr(exc))
        self._publish_leds()

    def adopt(self, job: Job, pins: list[int], driven: list[dict[str, Any]]) -> None:
        """A job re-registering after a daemon restart takes its locks back, and the pins it
        drives ({pin, hz, dc}) are driven again: this daemon's backend may have started with
        every pin off (the simulated culture is new). On real GPIO a pin kept its level across
        the restart, so setting the same duty cycle again changes nothing."""
        for pin in pins:
            try:
                self.registry.lock(int(pin), job)
            except PinBusy as exc:
                log.error("an adopted job's pin is held by another job", job=job.name, error=str(exc))
        for entry in driven:
            try:
                self._pwm(job, entry)
            except (PinBusy, KeyError, TypeError, ValueError) as exc:
                log.error("could not drive an adopted job's pin again", job=job.name,
                          pin=entry.get("pin"), error=str(exc))

    def _switch_off(self, pin: int) -> None:
        try:
            self.backend.pwm_off(pin)
        except Exception as exc:  # noqa: BLE001 - keep switching the others off
            log.error("could not switch pin off", pin=pin, error=repr(exc))
        self._duty.pop(pin, None)
        self._driver.pop(pin, None)

    def close(self) -> None:
        for pin in list(self._driver):
            self._switch_off(pin)
        self.backend.close()

    # --- retained state on the broker -----------------------------------------------------------
    def _publish_pwms(self) -> None:
        if self._state_held:
            return
        payload = {str(pin): dc for pin, dc in sorted(self._duty.items())}
        self._publish(f"pioreactor/{self._unit}/{self._experiment()}/pwms/dc",
                      json.dumps(payload, separators=(",", ":")).encode(), qos=2, retain=True)

    def _publish_leds(self) -> None:
        if self._state_held:
            return
        self._publish(f"pioreactor/{self._unit}/{self._experiment()}/leds/intensity",
                      json.dumps(self._leds, separators=(",", ":")).encode(), qos=2, retain=True)
