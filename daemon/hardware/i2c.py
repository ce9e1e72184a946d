"""An I2C bus as the HAT drivers need it: write, read, write-then-read, by 7-bit address.

Two implementations of `I2CBus`:

- `LinuxI2CBus`: the kernel's i2c-dev (`/dev/i2c-1`, the header's SDA/SCL on every Pi), used by
  the rpi_gpio backend, through smbus2 (python3-smbus2). Every transfer is one `I2C_RDWR` ioctl
  (`SMBus.i2c_rdwr` with `i2c_msg`s), so write-then-read is a single combined transaction
  (repeated start) and no `I2C_SLAVE` address is bound to the file (that would fail with EBUSY
  where a kernel driver owns the chip).
- `PigpioI2CBus`: pigpiod's i2c_open / i2c_write_device / i2c_read_device over the pigpio backend's
  connection; write-then-read is a write and a read (a stop between), which both HAT chips accept.

Errors: `I2CUnavailable` when the bus cannot be opened at all (the message says how to enable it);
`I2CError` when a transfer fails, e.g. no device acknowledges the address. Both are HardwareErrors.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from smbus2 import SMBus, i2c_msg

from .base import HardwareError

DEFAULT_DEVICE = Path("/dev/i2c-1")
DEFAULT_BUS = 1

ENABLE_I2C = (
    "enable I2C with `sudo raspi-config nonint do_i2c 0` (or raspi-config -> Interface Options "
    "-> I2C) and reboot"
)


class I2CError(HardwareError):
    """A transfer failed: no device acknowledged the address, or the bus reported an error."""


class I2CUnavailable(HardwareError):
    """The bus itself cannot be used; the message says what to do."""


class I2CBus(Protocol):
    where: str  # for messages: "/dev/i2c-1", "pigpiod localhost:8888 bus 1"

    def write(self, address: int, data: bytes) -> None: ...

    def read(self, address: int, count: int) -> bytes: ...

    def write_read(self, address: int, data: bytes, count: int) -> bytes: ...

    def close(self) -> None: ...


def check_address(address: int) -> int:
    if isinstance(address, bool) or not isinstance(address, int) or not 0x03 <= address <= 0x77:
        raise ValueError(f"I2C address {address!r} is not a 7-bit device address (0x03..0x77)")
    return address


def open_failure(device: Path, exc: OSError) -> I2CUnavailable:
    if isinstance(exc, FileNotFoundError):
        return I2CUnavailable(f"{device} does not exist, so the HAT cannot be reached: {ENABLE_I2C}")
    if isinstance(exc, PermissionError):
        return I2CUnavailable(
            f"permission denied opening {device}: add the daemon's user to group i2c "
            "(`sudo usermod -aG i2c pioreactor`, then restart pioreactord)"
        )
    return I2CUnavailable(f"cannot open {device}: {exc.strerror or exc}")


class LinuxI2CBus:
    """i2c-dev on `device` (default DEFAULT_DEVICE), through smbus2."""

    def __init__(self, device: Path | None = None) -> None:
        self.device = Path(device or DEFAULT_DEVICE)
        self.where = str(self.device)
        try:
            self._bus: SMBus | None = SMBus(str(self.device))
        except OSError as exc:
            raise open_failure(self.device, exc) from exc

    def write(self, address: int, data: bytes) -> None:
        self._transfer(address, [bytes(data)])

    def read(self, address: int, count: int) -> bytes:
        return self._transfer(address, [count])[0]

    def write_read(self, address: int, data: bytes, count: int) -> bytes:
        return self._transfer(address, [bytes(data), count])[0]

    def _transfer(self, address: int, segments: list[bytes | int]) -> list[bytes]:
        """One I2C_RDWR: bytes are written, an int is a read of that many bytes."""
        check_address(address)
        if self._bus is None:
            raise I2CUnavailable(f"{self.where} is closed")
        messages = [i2c_msg.read(address, s) if isinstance(s, int) else i2c_msg.write(address, s)
                    for s in segments]
        try:
            self._bus.i2c_rdwr(*messages)
        except OSError as exc:
            raise transfer_failure(self.where, address, exc) from exc
        return [bytes(m) for m, s in zip(messages, segments, strict=True) if isinstance(s, int)]

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None


def transfer_failure(where: str, address: int, exc: OSError) -> I2CError:
    if exc.errno in (errno.ENXIO, errno.EREMOTEIO):
        return I2CError(f"{where}: no I2C device answered at 0x{address:02X}")
    return I2CError(f"{where}: I2C transfer with 0x{address:02X} failed: {exc.strerror or exc}")


class PigpioI2CBus:
    """I2C through pigpiod. `call(what, fn, *args, refused=...)` is the pigpio backend's guard:
    it raises `refused` when pigpiod refuses a command and handles a lost connection."""

    def __init__(self, pi: Any, lib: Any, call: Callable[..., Any], *, where: str,
                 bus: int = DEFAULT_BUS) -> None:
        self._pi, self._lib, self._call, self._bus = pi, lib, call, bus
        self.where = f"{where} bus {bus}"
        self._handles: dict[int, int] = {}

    def _handle(self, address: int) -> int:
        check_address(address)
        handle = self._handles.get(address)
        if handle is None:
            try:
                handle = int(self._call("i2c_open", self._pi.i2c_open, self._bus, address,
                                        refused=I2CUnavailable))
            except I2CUnavailable as exc:
                raise I2CUnavailable(f"{exc}; is I2C enabled on the Pi that runs pigpiod? "
                                     f"{ENABLE_I2C[0].upper()}{ENABLE_I2C[1:]}") from exc
            self._handles[address] = handle
        return handle

    def write(self, address: int, data: bytes) -> None:
        handle = self._handle(address)
        self._call("i2c_write_device", self._pi.i2c_write_device, handle, bytes(data),
                   refused=I2CError)

    def read(self, address: int, count: int) -> bytes:
        handle = self._handle(address)
        got, data = self._call("i2c_read_device", self._pi.i2c_read_device, handle, count,
                               refused=I2CError)
        if got < 0:  # this call reports failure in its result instead of raising
            raise I2CError(f"{self.where}: reading 0x{address:02X} failed: "
                           f"{self._lib.error_text(got)}")
        if got != count:
            raise I2CError(f"{self.where}: 0x{address:02X} sent {got} bytes, not {count}")
        return bytes(data)

    def write_read(self, address: int, data: bytes, count: int) -> bytes:
        self.write(address, data)
        return self.read(address, count)

    def close(self) -> None:
        """Best effort, like the backend's close: pigpiod may already be gone."""
        handles, self._handles = self._handles, {}
        for handle in handles.values():
            try:
                self._call("i2c_close", self._pi.i2c_close, handle)
            except HardwareError:
                pass
