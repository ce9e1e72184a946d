"""The Pioreactor HAT's ADC (photodiodes) and LED driver, over an `I2CBus`.

Which chips a HAT has is found by probing the bus once when the backend opens (and again on the
next ADC or LED request for as long as nothing answers, e.g. until the HAT's firmware is loaded):

| HAT      | ADC                                   | LEDs A-D                | probe                       |
|----------|---------------------------------------|-------------------------|-----------------------------|
| 1.0      | TI ADS1115 at 0x48                    | TI DAC43608 at 0x49     | ADS1115 config reg. answers |
| 1.1+     | RP2040 firmware at 0x2C (0x30 before firmware 0.5), which is both ADC and LED PWM | version register answers |

`read_volts(channel)` takes the ADC channel as `pins` numbers it (0 photodiode "1", 1 photodiode
"2", 2 the HAT's version divider, 3 aux) and reads the chip input the HAT wires it to:

| channel | HAT 1.0 (ADS1115) | HAT 1.1+ (RP2040) |
|---------|-------------------|-------------------|
| 0, 1    | AIN1, AIN0        | ADC2, ADC3        |
| 2, 3    | AIN2, AIN3        | ADC0, ADC1        |

ADS1115: single-shot conversions at 128 SPS; a first conversion at +-4.096 V, then, if the value
fits in 80 % of a finer range, a second one at that range (down to +-0.256 V: 7.8 uV a step for
small OD signals). DAC43608: 8-bit code = round(255 x intensity / 100) in DACn_DATA bits 11..4; a
channel at 0 is also powered down (PDNn). RP2040 firmware: write [LED 0-3, 8-bit duty]; read 2
bytes little-endian from register 4 + input; register 8 is the firmware version (minor, major);
volts = raw / (4095 x 32) x 3.3 from firmware 0.4 on (x 16 before: less oversampling).

Written from TI's ADS1115 and DAC43608 datasheets and Pioreactor's own drivers and RP2040 firmware
source; tested against register-level emulations only, NOT yet on a real HAT. The pre-production
HAT 0.1 had photodiodes 1 and 2 on AIN0 and AIN1; it cannot be told apart from 1.0 on the bus and
is read with the 1.0 wiring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .base import HardwareError
from .i2c import I2CBus, I2CError
from .pins import LED_CHANNELS


class AdcChip(Protocol):
    def read_volts(self, chip_input: int) -> float: ...


class LedChip(Protocol):
    def set_level(self, channel: str, fraction: float) -> None: ...


def eight_bit(fraction: float) -> int:
    return round(255 * min(1.0, max(0.0, fraction)))


class ADS1115:
    ADDRESS = 0x48
    REG_CONVERSION, REG_CONFIG = 0x00, 0x01
    FULL_SCALE = {1: 4.096, 2: 2.048, 3: 1.024, 4: 0.512, 5: 0.256}  # PGA code -> volts
    COARSE_PGA = 1
    HEADROOM = 0.8  # a finer range is used if the coarse value is within 80 % of it
    DATA_RATE_CODE, DATA_RATE = 0b100, 128  # samples per second
    POLL_SECONDS, MAX_POLLS = 0.001, 50  # after the nominal conversion time

    def __init__(self, bus: I2CBus, address: int = ADDRESS, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.bus, self.address, self._sleep = bus, address, sleep

    def config_word(self, chip_input: int, pga: int) -> int:
        """Start one conversion of AINn against GND: OS | MUX | PGA | MODE=single | DR | no
        comparator (COMP_QUE = 11)."""
        return (1 << 15) | ((0b100 | chip_input) << 12) | (pga << 9) | (1 << 8) | (
            self.DATA_RATE_CODE << 5) | 0b11

    def convert(self, chip_input: int, pga: int) -> int:
        """One single-shot conversion; the signed 16-bit result."""
        self.bus.write(self.address, bytes([self.REG_CONFIG])
                       + self.config_word(chip_input, pga).to_bytes(2, "big"))
        self._sleep(1.1 / self.DATA_RATE)  # the internal oscillator is good to 10 %
        for _ in range(self.MAX_POLLS):
            status = self.bus.write_read(self.address, bytes([self.REG_CONFIG]), 2)
            if status[0] & 0x80:  # OS reads 1 once the conversion is done
                break
            self._sleep(self.POLL_SECONDS)
        else:
            raise HardwareError(f"ADS1115 at 0x{self.address:02X} on {self.bus.where} did not "
                                f"finish a conversion of AIN{chip_input}")
        raw = self.bus.write_read(self.address, bytes([self.REG_CONVERSION]), 2)
        return int.from_bytes(raw, "big", signed=True)

    def read_volts(self, chip_input: int) -> float:
        coarse = self.convert(chip_input, self.COARSE_PGA)
        volts = coarse * self.FULL_SCALE[self.COARSE_PGA] / 32768
        fine = max((pga for pga, fs in self.FULL_SCALE.items() if abs(volts) < self.HEADROOM * fs),
                   default=self.COARSE_PGA)
        if fine == self.COARSE_PGA:
            return volts
        raw = self.convert(chip_input, fine)
        if raw in (32767, -32768):  # the signal rose past the finer range meanwhile
            return volts
        return raw * self.FULL_SCALE[fine] / 32768


class DAC43608:
    ADDRESS = 0x49
    REG_DEVICE_CONFIG = 0x01
    REG_DATA = {"A": 0x08, "B": 0x09, "C": 0x0A, "D": 0x0B}  # DACA_DATA..DACD_DATA
    ALL_DOWN = 0x00FF  # PDNA..PDNH set: every output powered down (the reset state)

    def __init__(self, bus: I2CBus, address: int = ADDRESS) -> None:
        self.bus, self.address = bus, address
        self.power_down = self.ALL_DOWN

    def _write(self, register: int, value: int) -> None:
        self.bus.write(self.address, bytes([register]) + value.to_bytes(2, "big"))

    def set_level(self, channel: str, fraction: float) -> None:
        code, bit = eight_bit(fraction), 1 << (self.REG_DATA[channel] - 0x08)
        self._write(self.REG_DATA[channel], code << 4)
        self.power_down = self.power_down | bit if code == 0 else self.power_down & ~bit
        self._write(self.REG_DEVICE_CONFIG, self.power_down)


class RP2040Firmware:
    """The HAT 1.1+ microcontroller: LED PWM and ADC in one I2C device."""

    ADDRESSES = (0x2C, 0x30)
    REG_LED = {"A": 0, "B": 1, "C": 2, "D": 3}
    REG_ADC, REG_VERSION = 4, 8
    VREF, FULL_CODE = 3.3, 4095  # 12-bit ADC, oversampled

    def __init__(self, bus: I2CBus, address: int, version: tuple[int, int]) -> None:
        self.bus, self.address, self.version = bus, address, version
        self.scale = 32 if version >= (0, 4) else 16

    @classmethod
    def read_version(cls, bus: I2CBus, address: int) -> tuple[int, int] | None:
        minor, major = bus.write_read(address, bytes([cls.REG_VERSION]), 2)
        return None if (minor, major) == (0xFF, 0xFF) else (major, minor)

    def read_volts(self, chip_input: int) -> float:
        raw = self.bus.write_read(self.address, bytes([self.REG_ADC + chip_input]), 2)
        return int.from_bytes(raw, "little") / (self.FULL_CODE * self.scale) * self.VREF

    def set_level(self, channel: str, fraction: float) -> None:
        self.bus.write(self.address, bytes([self.REG_LED[channel], eight_bit(fraction)]))


ADS1115_HAT_INPUTS = (1, 0, 2, 3)  # pins' ADC channel -> ADS1115 AINn on HAT 1.0
RP2040_HAT_INPUTS = (2, 3, 0, 1)  # pins' ADC channel -> RP2040 ADC input on HAT 1.1+


@dataclass
class Hat:
    description: str
    adc: AdcChip
    inputs: tuple[int, ...]
    leds: LedChip | None
    leds_missing: str = ""


def _answers(probe: Callable[[], bytes]) -> bytes | None:
    try:
        return probe()
    except I2CError:  # nothing acknowledged: not there
        return None


def _ads1115_hat(bus: I2CBus, sleep: Callable[[float], None]) -> Hat | None:
    ads, dac = ADS1115(bus, sleep=sleep), DAC43608(bus)
    if _answers(lambda: bus.write_read(ads.ADDRESS, bytes([ads.REG_CONFIG]), 2)) is None:
        return None
    if _answers(lambda: bus.write_read(dac.ADDRESS, bytes([0x02]), 2)) is not None:  # STATUS
        return Hat(f"HAT 1.0 on {bus.where}: ADS1115 ADC at 0x48, DAC43608 LED driver at 0x49",
                   ads, ADS1115_HAT_INPUTS, dac)
    return Hat(f"HAT 1.0 on {bus.where}: ADS1115 ADC at 0x48, but no DAC43608 LED driver at 0x49",
               ads, ADS1115_HAT_INPUTS, None,
               leds_missing=f"no DAC43608 LED driver answers at 0x49 on {bus.where} (the ADS1115 "
               "ADC at 0x48 does)")


def _rp2040_hat(bus: I2CBus, address: int) -> Hat | None:
    try:
        version = RP2040Firmware.read_version(bus, address)
    except I2CError:
        return None
    if version is None:
        return None
    chip = RP2040Firmware(bus, address, version)
    return Hat(f"HAT 1.1+ on {bus.where}: RP2040 firmware {version[0]}.{version[1]} at "
               f"0x{address:02X} (ADC and LEDs)", chip, RP2040_HAT_INPUTS, chip)


def probe_hat(bus: I2CBus, *, sleep: Callable[[float], None] = time.sleep) -> Hat | None:
    """The HAT on `bus`, or None if no known ADC answers. Only reads, except for the RP2040's
    register pointer, which is written only where no ADS1115 answered."""
    hat = _ads1115_hat(bus, sleep)
    for address in RP2040Firmware.ADDRESSES:
        hat = hat or _rp2040_hat(bus, address)
    return hat


class HatLink:
    """A backend's one door to the HAT: opens the bus and probes at once, and again on demand
    while nothing usable was found. Every LED is switched off when the HAT is found and on close.
    """

    def __init__(self, backend: str, open_bus: Callable[[], I2CBus], *,
                 info: Callable[[str], None], warn: Callable[[str], None],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._backend, self._open_bus, self._info, self._sleep = backend, open_bus, info, sleep
        self._bus: I2CBus | None = None
        self.hat: Hat | None = None
        self.problem = ""
        self.leds: dict[str, float] = {}
        hat = self._connect()
        if hat is not None:
            info(f"{backend}: {hat.description}")
        else:
            warn(f"{backend}: ADC and LEDs are unavailable until the HAT answers: {self.problem}")

    def _connect(self) -> Hat | None:
        try:
            if self._bus is None:
                self._bus = self._open_bus()
            hat = probe_hat(self._bus, sleep=self._sleep)
            if hat is None:
                self.problem = (f"no Pioreactor HAT answers on {self._bus.where} (probed an "
                                "ADS1115 at 0x48 and the RP2040 firmware at 0x2C and 0x30): is "
                                "the HAT seated, and on a HAT 1.1+ is its firmware loaded?")
                return None
            if hat.leds is not None:
                for channel in LED_CHANNELS:
                    hat.leds.set_level(channel, 0.0)
                self.leds = dict.fromkeys(LED_CHANNELS, 0.0)
        except HardwareError as exc:
            self.problem = str(exc)
            return None
        self.hat = hat
        return hat

    def _require(self) -> Hat:
        if self.hat is not None:
            return self.hat
        hat = self._connect()
        if hat is None:
            raise HardwareError(self.problem)
        self._info(f"{self._backend}: {hat.description}")
        return hat

    def read_volts(self, channel: int) -> float:
        try:
            hat = self._require()
        except HardwareError as exc:
            raise HardwareError(f"{self._backend}: ADC read of channel {channel}: {exc}") from exc
        return hat.adc.read_volts(hat.inputs[channel])

    def set_led(self, channel: str, intensity: float) -> None:
        try:
            hat = self._require()
            if hat.leds is None:
                raise HardwareError(hat.leds_missing)
        except HardwareError as exc:
            raise HardwareError(f"{self._backend}: LED {channel}: {exc}") from exc
        hat.leds.set_level(channel, intensity / 100.0)
        self.leds[channel] = intensity

    def describe(self) -> str:
        return self.hat.description if self.hat is not None else f"not found: {self.problem}"

    def close(self) -> None:
        """LEDs off and the bus closed, best effort (the bus may already be gone)."""
        if self.hat is not None and self.hat.leds is not None:
            try:
                for channel in LED_CHANNELS:
                    self.hat.leds.set_level(channel, 0.0)
            except HardwareError:
                pass
        self.leds = {}
        if self._bus is not None:
            self._bus.close()
            self._bus = None
