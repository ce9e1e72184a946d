"""The HAT's chip drivers against register-level emulations on an in-memory I2C bus."""

from __future__ import annotations

import pytest

from pioreactord.hardware.base import HardwareError
from pioreactord.hardware.hat import ADS1115, DAC43608, HatLink, RP2040Firmware, probe_hat
from pioreactord.hardware.i2c import I2CUnavailable
from tests.support.i2c_devices import Ads1115, Dac43608, MemoryBus, Rp2040Firmware


def test_ads1115_config_word_follows_the_datasheet_bit_layout() -> None:
    ads = ADS1115(MemoryBus({}))
    # OS=1 | MUX=101 (AIN1 vs GND) | PGA=001 (+-4.096 V) | MODE=1 | DR=100 (128 SPS) | COMP_QUE=11
    assert ads.config_word(1, 1) == 0b1_101_001_1_100_0_0_0_11 == 0xD383
    assert ads.config_word(3, 5) == 0b1_111_101_1_100_0_0_0_11


def test_a_large_signal_is_one_conversion_at_4_volts_full_scale() -> None:
    chip, sleeps = Ads1115(volts=(0.0, 2.5, 0.0, 0.0)), []
    volts = ADS1115(MemoryBus({0x48: chip}), sleep=sleeps.append).read_volts(1)
    assert volts == pytest.approx(2.5, abs=4.096 / 32768)
    assert chip.conversions == [(1, 1, 0b100)]
    assert sleeps[0] == pytest.approx(1.1 / 128)  # the conversion time is waited out first


def test_a_small_signal_is_read_again_at_the_finest_range_that_fits() -> None:
    chip = Ads1115(volts=(0.0, 0.0, 0.05, 0.0))
    volts = ADS1115(MemoryBus({0x48: chip}), sleep=lambda s: None).read_volts(2)
    assert chip.conversions == [(2, 1, 0b100), (2, 5, 0b100)]  # then +-0.256 V
    assert volts == pytest.approx(0.05, abs=0.256 / 32768)
    assert abs(volts - 0.05) < 4.096 / 32768 / 4  # finer than one coarse step


def test_a_busy_conversion_is_polled_until_done_never_read_stale() -> None:
    chip, sleeps = Ads1115(volts=(3.0, 0.0, 0.0, 0.0)), []
    chip.busy_polls = 4
    assert ADS1115(MemoryBus({0x48: chip}), sleep=sleeps.append).read_volts(0) == pytest.approx(
        3.0, abs=0.001)
    assert sleeps.count(ADS1115.POLL_SECONDS) == 4


def test_a_conversion_that_never_finishes_is_a_hardware_error() -> None:
    chip = Ads1115()
    chip.busy_polls = 10_000
    with pytest.raises(HardwareError, match="ADS1115 at 0x48 on memory-i2c did not finish.*AIN3"):
        ADS1115(MemoryBus({0x48: chip}), sleep=lambda s: None).read_volts(3)


def test_a_signal_that_saturates_the_finer_range_keeps_the_coarse_value() -> None:
    class Rising(Ads1115):
        def _configure(self, value: int) -> None:
            super()._configure(value)
            self.volts[0] = 1.0  # between the two conversions

    chip = Rising(volts=(0.1, 0.0, 0.0, 0.0))
    volts = ADS1115(MemoryBus({0x48: chip}), sleep=lambda s: None).read_volts(0)
    assert [pga for _, pga, _ in chip.conversions] == [1, 5]  # +-0.256 V saturated at 1 V
    assert volts == pytest.approx(0.1, abs=4.096 / 32768)


def test_dac43608_writes_the_8_bit_code_left_aligned_and_powers_channels_up_and_down() -> None:
    chip = Dac43608()
    dac = DAC43608(MemoryBus({0x49: chip}))
    dac.set_level("B", 0.5)
    assert chip.registers[0x09] == 128 << 4
    assert chip.level("B") == pytest.approx(128 / 255)
    assert [c for c in "ABCDEFGH" if chip.powered(c)] == ["B"]
    dac.set_level("D", 1.0)
    assert chip.registers[0x0B] == 0xFF0
    dac.set_level("B", 0.0)
    assert chip.registers[0x09] == 0
    assert [c for c in "ABCDEFGH" if chip.powered(c)] == ["D"]
    assert chip.registers[1] == 0x00F7  # only PDND cleared; E-H stay powered down


def test_rp2040_firmware_volts_leds_and_version() -> None:
    chip = Rp2040Firmware(version=(0, 5))
    chip.set_volts(2, 1.2)
    bus = MemoryBus({0x2C: chip})
    assert RP2040Firmware.read_version(bus, 0x2C) == (0, 5)
    firmware = RP2040Firmware(bus, 0x2C, (0, 5))
    assert firmware.read_volts(2) == pytest.approx(1.2, abs=3.3 / 4095 / 32)
    firmware.set_level("C", 0.75)
    assert chip.duty == [0, 0, 191, 0]
    assert bus.log[-1] == ("write", 0x2C, bytes([2, 191]))


def test_rp2040_firmware_before_0_4_oversamples_less() -> None:
    chip = Rp2040Firmware(version=(0, 3))
    chip.set_volts(0, 2.0)
    assert chip.raw[0] < 4095 * 16  # 16x, not 32x
    firmware = RP2040Firmware(MemoryBus({0x30: chip}), 0x30, (0, 3))
    assert firmware.read_volts(0) == pytest.approx(2.0, abs=3.3 / 4095 / 16)


def hat_1_0(volts=(0.11, 0.22, 0.33, 0.44)) -> tuple[Ads1115, Dac43608, MemoryBus]:
    ads, dac = Ads1115(volts=volts), Dac43608()
    return ads, dac, MemoryBus({0x48: ads, 0x49: dac})


def test_probe_finds_hat_1_0_and_maps_photodiode_1_to_ain1() -> None:
    _, _, bus = hat_1_0()
    hat = probe_hat(bus, sleep=lambda s: None)
    assert hat is not None and "ADS1115 ADC at 0x48, DAC43608 LED driver at 0x49" in hat.description
    # pins' channel 0 is photodiode "1", which HAT 1.0 wires to AIN1 (0.22 V here)
    readings = [hat.adc.read_volts(hat.inputs[c]) for c in range(4)]
    assert readings == pytest.approx([0.22, 0.11, 0.33, 0.44], abs=1e-4)
    assert not any(address in (0x2C, 0x30) for _, address, _ in bus.log)  # never written to


@pytest.mark.parametrize("address", [0x2C, 0x30])
def test_probe_finds_the_rp2040_at_either_address_and_maps_photodiode_1_to_adc2(address) -> None:
    chip = Rp2040Firmware()
    for adc, volts in enumerate((0.5, 0.6, 0.7, 0.8)):
        chip.set_volts(adc, volts)
    hat = probe_hat(MemoryBus({address: chip}))
    assert hat is not None and f"RP2040 firmware 0.5 at 0x{address:02X}" in hat.description
    readings = [hat.adc.read_volts(hat.inputs[c]) for c in range(4)]
    assert readings == pytest.approx([0.7, 0.8, 0.5, 0.6], abs=1e-4)


def test_probe_finds_nothing_on_an_empty_bus_or_an_rp2040_without_valid_firmware() -> None:
    assert probe_hat(MemoryBus({})) is None
    chip = Rp2040Firmware()
    chip.read = lambda count: b"\xff\xff"  # type: ignore[method-assign]
    assert probe_hat(MemoryBus({0x2C: chip})) is None


def link(bus_factory, messages: list[tuple[str, str]]) -> HatLink:
    return HatLink("rpi_gpio", bus_factory, sleep=lambda s: None,
                   info=lambda m: messages.append(("info", m)),
                   warn=lambda m: messages.append(("warn", m)))


def test_link_reports_the_hat_and_switches_every_led_off_at_open_and_close() -> None:
    _, dac, bus = hat_1_0()
    dac.registers.update({1: 0x0000, 8: 0xFF0, 9: 0x800})  # left on by an earlier daemon
    messages: list[tuple[str, str]] = []
    hat = link(lambda: bus, messages)
    assert messages == [("info", "rpi_gpio: HAT 1.0 on memory-i2c: ADS1115 ADC at 0x48, "
                                 "DAC43608 LED driver at 0x49")]
    assert [dac.level(c) for c in "ABCD"] == [0.0] * 4
    hat.set_led("A", 100)
    assert dac.level("A") == 1.0 and hat.leds == {"A": 100, "B": 0.0, "C": 0.0, "D": 0.0}
    assert hat.read_volts(0) == pytest.approx(0.22, abs=1e-4)
    hat.close()
    assert dac.level("A") == 0.0 and bus.closed and hat.leds == {}


def test_link_without_a_hat_warns_then_finds_it_once_it_answers() -> None:
    bus, messages = MemoryBus({}), []
    hat = link(lambda: bus, messages)
    assert messages[0][0] == "warn"
    assert "no Pioreactor HAT answers on memory-i2c" in messages[0][1]
    with pytest.raises(HardwareError, match="rpi_gpio: ADC read of channel 1: no Pioreactor HAT"):
        hat.read_volts(1)
    with pytest.raises(HardwareError, match="rpi_gpio: LED A: no Pioreactor HAT"):
        hat.set_led("A", 5)
    chip = Rp2040Firmware()  # e.g. its firmware was loaded after the daemon started
    chip.set_volts(3, 0.9)
    bus.devices[0x2C] = chip
    assert hat.read_volts(1) == pytest.approx(0.9, abs=1e-4)
    assert messages[-1][0] == "info" and "RP2040 firmware 0.5 at 0x2C" in messages[-1][1]


def test_link_with_an_adc_but_no_led_driver_reads_and_says_what_is_missing_for_leds() -> None:
    ads = Ads1115(volts=(0.0, 1.0, 0.0, 0.0))
    hat = link(lambda: MemoryBus({0x48: ads}), [])
    assert hat.read_volts(0) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(HardwareError, match="LED B: no DAC43608 LED driver answers at 0x49"):
        hat.set_led("B", 10)


def test_link_whose_bus_cannot_open_warns_with_the_reason_and_raises_it_on_use() -> None:
    def no_bus() -> MemoryBus:
        raise I2CUnavailable("/dev/i2c-7 does not exist, so the HAT cannot be reached: enable I2C")

    messages: list[tuple[str, str]] = []
    hat = link(no_bus, messages)
    assert messages == [("warn", "rpi_gpio: ADC and LEDs are unavailable until the HAT answers: "
                                 "/dev/i2c-7 does not exist, so the HAT cannot be reached: "
                                 "enable I2C")]
    with pytest.raises(HardwareError, match="ADC read of channel 0: /dev/i2c-7 does not exist"):
        hat.read_volts(0)
