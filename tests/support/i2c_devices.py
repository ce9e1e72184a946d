"""Register-level stand-ins for the HAT's I2C chips, and an in-memory bus that holds them.

Each device sees what the chip sees: a master write (`write(data)`, the bytes after the address)
or a master read (`read(count)`). They follow the datasheets (TI ADS1115, TI DAC43608) and
Pioreactor's RP2040 firmware (pico-build main.c, 0.5) closely enough that a driver which gets a
register, a byte order or a bit wrong reads or sets the wrong value here too. Anything a driver
should never send (a write of the wrong length, a differential input) is an AssertionError.

`MemoryBus` implements pioreactord's `I2CBus` over a dict of such devices; an address without a
device fails like a NACK. The fake pigpiod routes its I2C commands to the same devices.
"""

from __future__ import annotations

from pioreactord.hardware.i2c import I2CError

ADS1115_FULL_SCALE = {0: 6.144, 1: 4.096, 2: 2.048, 3: 1.024, 4: 0.512, 5: 0.256, 6: 0.256,
                      7: 0.256}


class Ads1115:
    """Single-shot conversions of AIN0..3 against GND from `volts`. A started conversion keeps OS
    at 0 for `busy_polls` reads of the config register; only then is the conversion register
    updated (so reading it early gives the previous result)."""

    def __init__(self, volts: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)) -> None:
        self.volts = list(volts)
        self.registers = {0: 0x0000, 1: 0x8583, 2: 0x8000, 3: 0x7FFF}
        self.pointer = 0
        self.busy_polls = 1
        self._busy = 0
        self._pending: int | None = None
        self.conversions: list[tuple[int, int, int]] = []  # (AIN, PGA code, data-rate code)

    def write(self, data: bytes) -> None:
        assert len(data) in (1, 3), f"ADS1115: a write is a pointer, or pointer + 2 bytes: {data!r}"
        assert data[0] <= 3, f"ADS1115 has no register {data[0]}"
        self.pointer = data[0]
        if len(data) == 3 and self.pointer == 1:
            self._configure(int.from_bytes(data[1:], "big"))
        elif len(data) == 3 and self.pointer in (2, 3):
            self.registers[self.pointer] = int.from_bytes(data[1:], "big")

    def _configure(self, value: int) -> None:
        self.registers[1] = value & 0x7FFF
        mux, pga, single = (value >> 12) & 0b111, (value >> 9) & 0b111, value & 0x0100
        if value & 0x8000 and single:
            assert mux >= 0b100, f"ADS1115: MUX {mux:03b} is differential, the HAT is single-ended"
            ain = mux - 0b100
            self.conversions.append((ain, pga, (value >> 5) & 0b111))
            code = round(self.volts[ain] / ADS1115_FULL_SCALE[pga] * 32768)
            self._pending = max(-32768, min(32767, code))
            self._busy = self.busy_polls

    def read(self, count: int) -> bytes:
        value = self.registers[self.pointer]
        if self.pointer == 1:
            if self._busy > 0:
                self._busy -= 1
            else:
                if self._pending is not None:
                    self.registers[0] = self._pending & 0xFFFF
                    self._pending = None
                value |= 0x8000  # OS: no conversion in progress
        return value.to_bytes(2, "big")[:count]


class Dac43608:
    """DEVICE_CONFIG (01h, PDN bits), STATUS (02h), BRDCAST (03h), DACA..H_DATA (08h-0Fh)."""

    def __init__(self) -> None:
        self.registers = {1: 0x00FF, 2: 0x0500, 3: 0x0000} | {r: 0 for r in range(8, 16)}
        self.pointer = 1
        self.writes: list[tuple[int, int]] = []

    def write(self, data: bytes) -> None:
        assert len(data) in (1, 3), f"DAC43608: a write is a command byte + 2 bytes: {data!r}"
        assert data[0] in self.registers, f"DAC43608 has no register {data[0]:#x}"
        self.pointer = data[0]
        if len(data) == 3:
            value = int.from_bytes(data[1:], "big")
            self.writes.append((self.pointer, value))
            targets = range(8, 16) if self.pointer == 3 else [self.pointer]
            for register in targets:
                self.registers[register] = value

    def read(self, count: int) -> bytes:
        return self.registers[self.pointer].to_bytes(2, "big")[:count]

    def powered(self, channel: str) -> bool:
        config = self.registers[1]
        return not (config & 0x100 or config & (1 << "ABCDEFGH".index(channel)))

    def level(self, channel: str) -> float:
        """The output as a fraction of full scale; 0 if powered down."""
        if not self.powered(channel):
            return 0.0
        return ((self.registers[8 + "ABCDEFGH".index(channel)] >> 4) & 0xFF) / 255


class Rp2040Firmware:
    """Registers 0-3: LED A-D duty (write [reg, byte]); 4-7: ADC 0-3 (2 bytes, little-endian);
    8: version (minor, major); any other pointer reads 0xFFFF."""

    def __init__(self, version: tuple[int, int] = (0, 5)) -> None:
        self.version = version
        self.duty = [0, 0, 0, 0]
        self.raw = [0, 0, 0, 0]
        self.pointer = 0

    @property
    def scale(self) -> int:
        return 32 if self.version >= (0, 4) else 16

    def set_volts(self, adc: int, volts: float) -> None:
        self.raw[adc] = round(volts / 3.3 * 4095 * self.scale)

    def write(self, data: bytes) -> None:
        assert data, "RP2040: an empty write"
        self.pointer = data[0] if data[0] <= 8 else 0xFF
        for byte in data[1:]:
            assert self.pointer <= 3, f"RP2040: register {self.pointer} is read-only"
            self.duty[self.pointer] = byte

    def read(self, count: int) -> bytes:
        if 4 <= self.pointer <= 7:
            data = self.raw[self.pointer - 4].to_bytes(2, "little")
        elif self.pointer == 8:
            data = bytes([self.version[1], self.version[0]])
        else:
            data = b"\xff\xff"
        return data[:count]


class MemoryBus:
    """pioreactord's I2CBus over a dict of devices; `log` keeps every transaction."""

    def __init__(self, devices: dict, where: str = "memory-i2c") -> None:
        self.devices, self.where = devices, where
        self.log: list[tuple[str, int, bytes | int]] = []
        self.closed = False

    def _device(self, address: int):
        assert not self.closed, "the bus was closed"
        device = self.devices.get(address)
        if device is None:
            raise I2CError(f"{self.where}: no I2C device answered at 0x{address:02X}")
        return device

    def write(self, address: int, data: bytes) -> None:
        self.log.append(("write", address, bytes(data)))
        self._device(address).write(bytes(data))

    def read(self, address: int, count: int) -> bytes:
        self.log.append(("read", address, count))
        return self._device(address).read(count)

    def write_read(self, address: int, data: bytes, count: int) -> bytes:
        self.write(address, data)
        return self.read(address, count)

    def close(self) -> None:
        self.closed = True
