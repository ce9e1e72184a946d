"""A stand-in for pigpiod that speaks pigpio's socket protocol, for tests without a Pi.

Protocol (pigpio's "socket interface"): each command is 16 bytes, four little-endian uint32
`cmd, p1, p2, p3`; p3 is 0 unless the command carries an extension, in which case it is the
extension's length and the extension follows. The reply echoes `cmd, p1, p2` with the result
(negative = pigpio error code) in the fourth field. `NOIB` turns a connection into a
notification stream: after its reply, the daemon writes 12-byte reports `seq:u16 flags:u16
tick:u32 level:u32` (level = bits of GPIO 0-31) for GPIOs selected with `NB` on the command
connection; `NC` on either connection ends it.

Implemented: MODES MODEG PUD READ WRITE PWM PRS PFS BR1 TICK HWVER NB NP NC PRG PFG PRRG PIGPV
GDC HP NOIB I2CO I2CC I2CRD I2CWD. Anything else answers PI_UNKNOWN_COMMAND. `pulse(gpio, n)`
sends n rising+falling edges to every notification stream watching gpio. State is in `gpios`;
every command is logged in `log` as (name, p1, p2, extension-bytes).

I2C: bus 1 holds `i2c_devices` ({address: device}, the register-level chips of
tests/support/i2c_devices.py). I2CO p1=bus p2=address, extension = flags (u32) -> a handle;
I2CWD p1=handle, extension = the bytes; I2CRD p1=handle p2=count -> count, and the bytes follow
the reply; I2CC p1=handle. A device that is not there fails like a NACK (PI_I2C_WRITE_FAILED /
PI_I2C_READ_FAILED); with `i2c_enabled = False` I2CO fails as when pigpiod cannot open
/dev/i2c-1 (PI_I2C_OPEN_FAILED).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

NAMES = {
    0: "MODES",
    1: "MODEG",
    2: "PUD",
    3: "READ",
    4: "WRITE",
    5: "PWM",
    6: "PRS",
    7: "PFS",
    10: "BR1",
    16: "TICK",
    17: "HWVER",
    19: "NB",
    20: "NP",
    21: "NC",
    22: "PRG",
    23: "PFG",
    24: "PRRG",
    26: "PIGPV",
    83: "GDC",
    86: "HP",
    99: "NOIB",
    54: "I2CO",
    55: "I2CC",
    56: "I2CRD",
    57: "I2CWD",
}
# pigpio error codes used here
PI_BAD_GPIO, PI_BAD_MODE, PI_BAD_LEVEL, PI_BAD_PUD = -3, -4, -5, -6
PI_BAD_DUTYCYCLE, PI_BAD_DUTYRANGE, PI_BAD_HANDLE = -8, -21, -24
PI_NOT_PWM_GPIO, PI_NOT_HPWM_GPIO, PI_BAD_HPWM_DUTY = -92, -95, -97
PI_I2C_OPEN_FAILED, PI_BAD_I2C_BUS, PI_BAD_I2C_ADDR = -71, -74, -75
PI_I2C_WRITE_FAILED, PI_I2C_READ_FAILED = -82, -83
PI_UNKNOWN_COMMAND = -123
# DMA PWM frequencies available at pigpiod's default 5 us sample rate
PWM_FREQUENCIES = (
    8000,
    4000,
    2000,
    1600,
    1000,
    800,
    500,
    400,
    320,
    250,
    200,
    160,
    100,
    80,
    50,
    40,
    20,
    10,
)
HW_PWM_GPIOS = (12, 13, 18, 19)
INPUT, OUTPUT = 0, 1


@dataclass
class Gpio:
    mode: int = INPUT
    pud: int = 0
    level: int = 0
    frequency: int = 800  # pigpiod's default DMA PWM frequency
    range: int = 255
    dutycycle: int = 0
    hw_frequency: int = 0
    hw_dutycycle: int = 0


class FakePigpiod:
    """Listens on 127.0.0.1:<free port>. Use as a context manager, or call start()/stop()."""

    def __init__(self) -> None:
        self.gpios = {n: Gpio() for n in range(54)}
        self.log: list[tuple[str, int, int, bytes]] = []
        self.lock = threading.Lock()
        self.notify: dict[int, dict] = {}  # handle -> {"sock", "bits", "seq"}
        self._next_handle = 0
        self.i2c_devices: dict[int, Any] = {}
        self.i2c_enabled = True
        self.i2c_handles: dict[int, int] = {}  # handle -> address
        self._next_i2c_handle = 0
        self._reply_data = b""  # bytes that follow the current reply (I2CRD)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="fake-pigpiod", daemon=True)

    def start(self) -> FakePigpiod:
        self._thread.start()
        return self

    def stop(self) -> None:
        _close(self._listener)  # shutdown() wakes the blocked accept(); close() alone does not
        with self.lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            _close(conn)
        self._thread.join(timeout=2)

    def __enter__(self) -> FakePigpiod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers -------------------------------------------------------------------

    def commands(self, name: str, gpio: int | None = None) -> list[tuple[str, int, int, bytes]]:
        with self.lock:
            return [c for c in self.log if c[0] == name and (gpio is None or c[1] == gpio)]

    def pulse(self, gpio: int, count: int = 1) -> None:
        """`count` pulses (high then low) on gpio, reported to every stream watching it."""
        with self.lock:
            for _ in range(count):
                for level in (1, 0):
                    self.gpios[gpio].level = level
                    self._report_locked(1 << gpio)

    # -- server ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                header = _recv_exactly(conn, 16)
                if header is None:
                    return
                cmd, p1, p2, p3 = struct.unpack("<IIII", header)
                ext = _recv_exactly(conn, p3) if p3 else b""
                if ext is None:
                    return
                with self.lock:
                    if cmd == 21 and any(n["sock"] is conn for n in self.notify.values()):
                        self.log.append(("NC", p1, p2, ext))
                        self._close_notify(p1)  # NC on the stream itself: no reply, it ends
                        return
                    self.log.append((NAMES.get(cmd, str(cmd)), p1, p2, ext))
                    result = self._run_locked(conn, cmd, p1, p2, ext)
                    data, self._reply_data = self._reply_data, b""
                    conn.sendall(struct.pack("<IIIi", cmd, p1, p2, result) + data)
                    if cmd == 99 and result >= 0:  # reports may only follow NOIB's reply
                        self.notify[result] = {"sock": conn, "bits": 0, "seq": 0}
        except OSError:
            return
        finally:
            _close(conn)

    def _run_locked(self, conn: socket.socket, cmd: int, p1: int, p2: int, ext: bytes) -> int:
        name = NAMES.get(cmd)
        if name is None:
            return PI_UNKNOWN_COMMAND
        if name.startswith("I2C"):
            return self._i2c_locked(name, p1, p2, ext)
        if name in ("BR1", "TICK", "HWVER", "PIGPV", "NOIB"):
            return self._global_locked(name)
        if name in ("NB", "NP", "NC"):
            if p1 not in self.notify:
                return PI_BAD_HANDLE
            if name == "NC":
                self._close_notify(p1)
            else:
                self.notify[p1]["bits"] = p2 if name == "NB" else 0
            return 0
        if p1 > 53 or (p1 > 31 and name in ("PWM", "PRS", "PFS", "PRG", "PFG", "PRRG", "GDC")):
            return PI_BAD_GPIO
        return self._gpio_locked(name, self.gpios[p1], p1, p2, ext)

    def _global_locked(self, name: str) -> int:
        if name == "BR1":
            return sum(g.level << n for n, g in self.gpios.items() if n < 32)
        if name == "TICK":
            return int(time.monotonic() * 1e6) & 0x7FFFFFFF
        if name == "HWVER":
            return 0xC03111  # a Pi 4 B
        if name == "PIGPV":
            return 79
        self._next_handle += 1  # NOIB
        return self._next_handle - 1

    def _gpio_locked(self, name: str, g: Gpio, n: int, value: int, ext: bytes) -> int:
        if name == "MODES":
            if value > 7:
                return PI_BAD_MODE
            g.mode = value
        elif name == "MODEG":
            return g.mode
        elif name == "PUD":
            if value > 2:
                return PI_BAD_PUD
            g.pud = value
        elif name == "READ":
            return g.level
        elif name == "WRITE":  # like pigpiod: stops any PWM and makes the GPIO an output
            if value > 1:
                return PI_BAD_LEVEL
            g.mode, g.level, g.dutycycle, g.hw_frequency, g.hw_dutycycle = OUTPUT, value, 0, 0, 0
        elif name == "PWM":
            if value > g.range:
                return PI_BAD_DUTYCYCLE
            g.mode, g.dutycycle, g.hw_frequency, g.hw_dutycycle = OUTPUT, value, 0, 0
        elif name == "PRS":
            if not 25 <= value <= 40000:
                return PI_BAD_DUTYRANGE
            g.range = value
            return 200_000 // g.frequency  # the real range at this frequency
        elif name == "PFS":
            g.frequency = min(PWM_FREQUENCIES, key=lambda f: abs(f - value))
            return g.frequency
        elif name in ("PRG", "PFG", "GDC"):
            return {"PRG": g.range, "PFG": g.frequency, "GDC": g.dutycycle}[name]
        elif name == "PRRG":
            return 200_000 // g.frequency
        elif name == "HP":
            return self._hardware_pwm_locked(g, n, value, ext)
        return 0

    def _hardware_pwm_locked(self, g: Gpio, n: int, frequency: int, ext: bytes) -> int:
        if n not in HW_PWM_GPIOS:
            return PI_NOT_HPWM_GPIO
        (duty,) = struct.unpack("<I", ext)
        if duty > 1_000_000:
            return PI_BAD_HPWM_DUTY
        g.hw_frequency, g.hw_dutycycle, g.dutycycle = frequency, duty, 0
        if frequency:
            g.mode = 4 if n in (12, 13) else 2  # ALT0 on 12/13, ALT5 on 18/19
        return 0

    def _i2c_locked(self, name: str, p1: int, p2: int, ext: bytes) -> int:
        if name == "I2CO":
            if p1 != 1:
                return PI_BAD_I2C_BUS
            if p2 > 0x7F:
                return PI_BAD_I2C_ADDR
            if not self.i2c_enabled:
                return PI_I2C_OPEN_FAILED
            self._next_i2c_handle += 1
            self.i2c_handles[self._next_i2c_handle - 1] = p2
            return self._next_i2c_handle - 1
        if p1 not in self.i2c_handles:
            return PI_BAD_HANDLE
        if name == "I2CC":
            del self.i2c_handles[p1]
            return 0
        device = self.i2c_devices.get(self.i2c_handles[p1])
        if name == "I2CWD":
            if device is None:
                return PI_I2C_WRITE_FAILED
            device.write(ext)
            return 0
        if device is None:  # I2CRD
            return PI_I2C_READ_FAILED
        self._reply_data = bytes(device.read(p2))
        return len(self._reply_data)

    def _report_locked(self, changed_bits: int) -> None:
        level = sum(g.level << n for n, g in self.gpios.items() if n < 32)
        tick = int(time.monotonic() * 1e6) & 0xFFFFFFFF
        for stream in self.notify.values():
            if stream["bits"] & changed_bits:
                stream["seq"] = (stream["seq"] + 1) & 0xFFFF
                try:
                    stream["sock"].sendall(struct.pack("<HHII", stream["seq"], 0, tick, level))
                except OSError:
                    pass

    def _close_notify(self, handle: int) -> None:
        stream = self.notify.pop(handle, None)
        if stream is not None:
            _close(stream["sock"])


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
