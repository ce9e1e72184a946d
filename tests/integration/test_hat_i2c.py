"""od_reading on "real" hardware: the daemon with `hardware = pigpio`, talking to a fake pigpiod
whose I2C bus 1 holds register-level emulations of HAT 1.0's ADS1115 and DAC43608."""

from __future__ import annotations

import json
import time

import pytest

from tests.support import fake_pigpiod
from tests.support.i2c_devices import Ads1115, Dac43608

VOLTS_WITH_IR_ON = 0.062  # what photodiode 1 (AIN1) sees with the IR LED at full intensity


class LitPhotodiode(Ads1115):
    """AIN1 sees the culture only as brightly as the DAC drives IR LED A."""

    def __init__(self, dac: Dac43608) -> None:
        super().__init__()
        self.dac = dac

    def _configure(self, value: int) -> None:
        self.volts[1] = VOLTS_WITH_IR_ON * self.dac.level("A")
        super()._configure(value)


@pytest.fixture
def pigpiod():
    with fake_pigpiod.FakePigpiod() as fake:
        dac = Dac43608()
        fake.i2c_devices.update({0x48: LitPhotodiode(dac), 0x49: dac})
        yield fake


def test_od_reading_reads_the_photodiode_over_i2c_with_the_ir_led_on(make_daemon, pigpiod,
                                                                      watcher):
    daemon = make_daemon(extra_ini="[od_reading]\nchannels = 1\n")
    daemon.config.write_text(daemon.config.read_text().replace("hardware = simulated",
                                                               "hardware = pigpio"))
    daemon.start(env={"PIGPIO_ADDR": "127.0.0.1", "PIGPIO_PORT": str(pigpiod.port)})
    assert "HAT 1.0 on pigpiod 127.0.0.1" in daemon.log_text()
    dac = pigpiod.i2c_devices[0x49]
    od1 = f"pioreactor/{daemon.unit}/exp1/od_reading/od1"
    started = time.monotonic()
    daemon.pioctl("start", "od_reading", "--interval", "0.2")
    reading = json.loads(watcher.wait(od1, since=started, timeout=15).payload)
    assert reading["od"] == pytest.approx(VOLTS_WITH_IR_ON, abs=1e-4)  # so the LED was on
    assert dac.level("A") == 1.0
    daemon.pioctl("stop", "od_reading")
    assert dac.level("A") == 0.0 and not dac.powered("A")
