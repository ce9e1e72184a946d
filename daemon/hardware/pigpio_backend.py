"""pigpio backend: hardware-timed PWM through the pigpio daemon (pigpiod) and its client library.

PWM: a pin on one of the SoC's two PWM channels (12/18 share channel 0, 13/19 channel 1) gets
true hardware PWM (`hardware_PWM`, any frequency, duty in millionths) unless another pin of the
same channel already has it, since both would then share one frequency and duty cycle (the HAT's
defaults put pins 12 and 18 on channel 0). Every other pin gets pigpio's DMA-timed PWM
(`set_PWM_frequency`, `set_PWM_range(1000)`, `set_PWM_dutycycle`), whose frequency pigpiod rounds
to its nearest supported value (reported as `actual_hz` in the snapshot).

pigpiod keeps PWM running after its client dies, so on open every [PWM] pin is driven low.

ADC and LEDs: the HAT's chips on I2C bus 1 through pigpiod (`i2c.PigpioI2CBus`, drivers in
`hat`), probed when the backend opens. Without I2C or a HAT the backend still opens (PWM works)
with a warning, and `read_adc` / `led_set` raise a HardwareError that says what is missing. The
I2C path is tested against a fake pigpiod with emulated chips only, not yet on a real HAT.
"""

from __future__ import annotations

import importlib
import os
import socket
import struct
from collections.abc import Callable, Mapping
from typing import Any

from .base import (
    HardwareError,
    check_adc_channel,
    check_led,
    check_pin,
    check_pwm,
    empty_snapshot,
)
from .hat import HatLink
from .i2c import PigpioI2CBus

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8888
PROBE_TIMEOUT = 0.5  # seconds; pigpiod answers a local command in well under a millisecond
HW_PWM_CHANNEL = {12: 0, 18: 0, 13: 1, 19: 1}
DMA_RANGE = 1000  # duty steps for DMA PWM: 0.1 % resolution
HW_DUTY_SCALE = 1_000_000
_CMD_PIGPV = (
    26  # "pigpio version": a harmless command to check that pigpiod, not something else, answers
)


def pigpio_address() -> tuple[str, int]:
    """pigpiod's address: $PIGPIO_ADDR / $PIGPIO_PORT, as the pigpio tools use them."""
    host = os.environ.get("PIGPIO_ADDR") or DEFAULT_HOST
    port_text = os.environ.get("PIGPIO_PORT") or str(DEFAULT_PORT)
    try:
        return host, int(port_text)
    except ValueError:
        raise HardwareError(f"PIGPIO_PORT={port_text!r} is not a port number") from None


def probe_pigpiod(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None if pigpiod answers at host:port, else why not (one line)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("<IIII", _CMD_PIGPV, 0, 0, 0))
            reply = b""
            while len(reply) < 16:
                chunk = sock.recv(16 - len(reply))
                if not chunk:
                    return "the connection closed without an answer"
                reply += chunk
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    if struct.unpack("<IIII", reply)[0] != _CMD_PIGPV:
        return "something answers there, but it does not speak pigpio's protocol"
    return None


def unreachable_error(host: str, port: int, reason: str) -> HardwareError:
    return HardwareError(
        f"pigpiod is not reachable at {host}:{port} ({reason}): start it with "
        "`sudo systemctl start pigpiod`, or set PIGPIO_ADDR/PIGPIO_PORT"
    )


def _ignore(message: str) -> None:
    pass


def _whole_hz(hz: float) -> int:
    # pigpio takes whole hertz, and 0 would mean "off" to hardware_PWM
    return max(1, round(hz))


def import_pigpio() -> Any:
    try:
        return importlib.import_module("pigpio")
    except ImportError as exc:
        raise HardwareError(
            "the pigpio Python library is not installed: `sudo apt install python3-pigpio`"
        ) from exc


class _HangupGuard:
    """Wraps the socket of pigpio's notification thread so a pigpiod that goes away ends it.

    pigpio 1.78's thread loops on `recv()` while its `go` flag is set; once pigpiod closes the
    connection, recv returns b"" at once and the thread spins a whole CPU until `pi.stop()`.
    The thread looks its socket up on every pass, so this wrapper sees the hang-up on the next
    one and clears the flag.
    """

    def __init__(self, notify: Any, on_hangup: Callable[[], None]) -> None:
        self._notify, self._sock, self._on_hangup = notify, notify.sl.s, on_hangup

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        if not data:
            self._notify.go = False
            self._on_hangup()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class PigpioBackend:
    name = "pigpio"

    def __init__(
        self, *, pin_roles: Mapping[int, str], host: str | None = None, port: int | None = None,
        info: Callable[[str], None] = _ignore, warn: Callable[[str], None] = _ignore,
    ) -> None:
        """`info`/`warn` hear what the probe of the HAT's I2C bus found."""
        env_host, env_port = pigpio_address()
        self.host, self.port = host or env_host, port or env_port
        self._lib = import_pigpio()
        reason = probe_pigpiod(self.host, self.port)
        if reason is not None:
            raise unreachable_error(self.host, self.port, reason)
        # Explicit host/port: pigpio.pi()'s defaults read the environment at *its* import time.
        self._pi = self._lib.pi(self.host, self.port, show_errors=False)
        if not self._pi.connected:
            raise unreachable_error(self.host, self.port, "the pigpio client could not connect")
        self._lost: str | None = None
        notify = getattr(self._pi, "_notify", None)
        if notify is not None and hasattr(notify, "sl"):
            notify.sl.s = _HangupGuard(
                notify, lambda: self._mark_lost("pigpiod closed the connection")
            )
        self._roles = dict(pin_roles)
        self._pwm: dict[int, dict[str, Any]] = {}
        self._callbacks: dict[int, Any] = {}
        self._closed = False
        try:
            for pin in self._roles:  # a daemon that died may have left a heater on
                self._call("write", self._pi.write, pin, 0)
            self._hat = HatLink(self.name, self._open_i2c, info=info, warn=warn)
        except HardwareError:
            self.close()  # no half-open backend keeps a connection and a thread
            raise

    def _open_i2c(self) -> PigpioI2CBus:
        return PigpioI2CBus(self._pi, self._lib, self._call, where=f"pigpiod {self.host}:{self.port}")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any,
              refused: type[HardwareError] = HardwareError) -> Any:
        """Run one pigpio call; its failures become HardwareErrors that name the operation (of
        type `refused` when pigpiod refuses the command)."""
        if self._closed:
            raise HardwareError("the pigpio backend is closed")
        if self._lost is not None:
            raise HardwareError(
                f"lost the connection to pigpiod at {self.host}:{self.port} ({self._lost}); "
                "PWM state there is unknown: restart pioreactord once pigpiod runs again"
            )
        try:
            return fn(*args)
        except self._lib.error as exc:  # pigpiod refused the command
            raise refused(
                f"pigpiod at {self.host}:{self.port}: {what}{tuple(args)} failed: {exc}"
            ) from exc
        # The connection broke; a short reply surfaces as a struct.error.
        except (OSError, struct.error) as exc:
            self._mark_lost(f"{what}{tuple(args)} failed: {exc or type(exc).__name__}")
            raise HardwareError(
                f"lost the connection to pigpiod at {self.host}:{self.port} ({self._lost}); "
                "restart pioreactord once pigpiod runs again"
            ) from exc

    def _mark_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason

    def _hardware_capable(self, pin: int) -> bool:
        channel = HW_PWM_CHANNEL.get(pin)
        if channel is None:
            return False
        return not any(
            other != pin and state["mode"] == "hardware" and HW_PWM_CHANNEL[other] == channel
            for other, state in self._pwm.items()
        )

    def pwm_set(self, pin: int, hz: float, duty_cycle: float) -> None:
        pin, hz, duty_cycle = check_pwm(pin, hz, duty_cycle)
        if pin in self._callbacks:
            raise HardwareError(f"pin {pin} is a tachometer input; it cannot also drive PWM")
        state = self._pwm.get(pin) or {
            "mode": "hardware" if self._hardware_capable(pin) else "dma",
            "hz": None,
        }
        if state["mode"] == "hardware":
            duty = round(duty_cycle / 100.0 * HW_DUTY_SCALE)
            self._call("hardware_PWM", self._pi.hardware_PWM, pin, _whole_hz(hz), duty)
            state["actual_hz"] = float(_whole_hz(hz))
        else:
            if state["hz"] != hz:
                state["actual_hz"] = float(
                    self._call("set_PWM_frequency", self._pi.set_PWM_frequency, pin, _whole_hz(hz))
                )
                self._call("set_PWM_range", self._pi.set_PWM_range, pin, DMA_RANGE)
            duty = round(duty_cycle / 100.0 * DMA_RANGE)
            self._call("set_PWM_dutycycle", self._pi.set_PWM_dutycycle, pin, duty)
        state.update(hz=hz, duty_cycle=duty_cycle)
        self._pwm[pin] = state

    def pwm_off(self, pin: int) -> None:
        state = self._pwm.pop(pin, None)
        if self._closed or (state is None and pin not in self._roles):
            return
        if state is not None and state["mode"] == "hardware":
            self._call("hardware_PWM", self._pi.hardware_PWM, pin, 0, 0)
        # write() also stops DMA PWM; the pin stays an output driven low, never floating.
        self._call("write", self._pi.write, pin, 0)

    def count_edges(self, pin: int) -> int:
        check_pin(pin)
        callback = self._callbacks.get(pin)
        if callback is None:
            if pin in self._pwm:
                raise HardwareError(f"pin {pin} drives PWM; it cannot also count edges")
            self._call("set_mode", self._pi.set_mode, pin, self._lib.INPUT)
            self._call("set_pull_up_down", self._pi.set_pull_up_down, pin, self._lib.PUD_UP)
            callback = self._call("callback", self._pi.callback, pin, self._lib.RISING_EDGE)
            self._callbacks[pin] = callback
        return int(callback.tally())

    def read_adc(self, channel: int) -> float:
        return self._hat.read_volts(check_adc_channel(channel))

    def led_set(self, channel: str, intensity: float) -> None:
        self._hat.set_led(*check_led(channel, intensity))

    def snapshot(self) -> dict:
        snap = empty_snapshot(self.name)
        snap["pigpiod"] = f"{self.host}:{self.port}"
        for pin, state in sorted(self._pwm.items()):
            snap["pwm"][str(pin)] = {
                "hz": state["hz"],
                "duty_cycle": state["duty_cycle"],
                "role": self._roles.get(pin, ""),
                "mode": state["mode"],
                "actual_hz": state["actual_hz"],
            }
        for pin, callback in sorted(self._callbacks.items()):
            snap["edge_counters"][str(pin)] = int(callback.tally())
        snap["leds"] = dict(self._hat.leds)
        snap["hat"] = self._hat.describe()
        return snap

    def close(self) -> None:
        """Best effort: a pigpiod that already went away must not stop the daemon's shutdown."""
        if self._closed:
            return
        if self._lost is None:  # a lost pigpiod gets no more commands: they could block
            for pin in list(self._pwm):
                try:
                    self.pwm_off(pin)
                except HardwareError:
                    pass
            for callback in self._callbacks.values():
                try:
                    callback.cancel()
                except (self._lib.error, OSError, struct.error):
                    pass
        hat = self.__dict__.get("_hat")  # absent if opening failed before the probe
        if hat is not None and self._lost is None:
            hat.close()
        self._closed = True
        try:
            self._pi.stop()
        except OSError:
            pass  # the notification socket may already be gone
