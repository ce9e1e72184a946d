"""The i2c-dev bus: transfers go through smbus2's I2C_RDWR to a stand-in for the kernel's ioctl
that reads the `struct i2c_msg`s from memory, as the kernel does, and serves them from the
emulated chips."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest
import smbus2.smbus2

from pioreactord.hardware import i2c
from pioreactord.hardware.hat import ADS1115, DAC43608
from pioreactord.hardware.i2c import I2CError, I2CUnavailable, LinuxI2CBus
from tests.support.i2c_devices import Ads1115, Dac43608

I2C_FUNCS, I2C_RDWR, I2C_M_RD = 0x0705, 0x0707, 0x0001  # <uapi/linux/i2c-dev.h>, <uapi/linux/i2c.h>


class KernelI2cMsg(ctypes.Structure):  # <uapi/linux/i2c.h>
    _fields_ = [("addr", ctypes.c_uint16), ("flags", ctypes.c_uint16),
                ("len", ctypes.c_uint16), ("buf", ctypes.c_void_p)]


class KernelRdwrData(ctypes.Structure):  # <uapi/linux/i2c-dev.h>
    _fields_ = [("msgs", ctypes.c_void_p), ("nmsgs", ctypes.c_uint32)]


class FakeKernel:
    """fcntl.ioctl for an i2c-dev file: decodes I2C_RDWR from memory, runs it on `devices`."""

    def __init__(self, devices: dict) -> None:
        self.devices = devices
        self.calls: list[list[tuple[int, int, bytes | int]]] = []  # per ioctl: (addr, flags, ..)
        self.fail_with: int | None = None

    def __call__(self, fd: int, request: int, arg) -> int:
        if request == I2C_FUNCS:  # smbus2 asks what the adapter can do when it opens the bus
            arg.value = 0x0EFF0001
            return 0
        assert request == I2C_RDWR
        data = KernelRdwrData.from_buffer_copy(bytes(arg))
        size = ctypes.sizeof(KernelI2cMsg)
        table = ctypes.string_at(data.msgs, data.nmsgs * size)
        messages = [KernelI2cMsg.from_buffer_copy(table, n * size) for n in range(data.nmsgs)]
        self.calls.append([])
        if self.fail_with is not None:
            raise OSError(self.fail_with, os.strerror(self.fail_with))
        for msg in messages:
            device = self.devices.get(msg.addr)
            if device is None:
                raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))  # bcm2835 on a NACK
            if msg.flags & I2C_M_RD:
                reply = device.read(msg.len)
                ctypes.memmove(msg.buf, reply, len(reply))
                self.calls[-1].append((msg.addr, msg.flags, msg.len))
            else:
                written = ctypes.string_at(msg.buf, msg.len)
                device.write(written)
                self.calls[-1].append((msg.addr, msg.flags, written))
        return len(messages)


@pytest.fixture
def kernel(monkeypatch):
    """Install a FakeKernel (its `devices` filled in by the test) as smbus2's ioctl."""
    fake = FakeKernel({})
    monkeypatch.setattr(smbus2.smbus2, "ioctl", fake)
    return fake


@pytest.fixture
def device_file(tmp_path: Path) -> Path:
    path = tmp_path / "i2c-1"
    path.write_bytes(b"")  # opened for real; only the ioctl is a stand-in
    return path


def test_write_then_read_is_one_combined_transfer(device_file: Path, kernel: FakeKernel) -> None:
    chip = Ads1115()
    kernel.devices[0x48] = chip
    bus = LinuxI2CBus(device_file)
    assert bus.write_read(0x48, b"\x01", 2) == b"\x85\x83"  # the config register's reset value
    assert kernel.calls == [[(0x48, 0, b"\x01"), (0x48, 1, 2)]]
    bus.write(0x48, b"\x02\x12\x34")
    assert chip.registers[2] == 0x1234
    assert bus.read(0x48, 2) == b"\x12\x34"
    bus.close()
    bus.close()


def test_the_chip_drivers_work_through_the_kernels_structs(device_file: Path,
                                                         kernel: FakeKernel) -> None:
    ads, dac = Ads1115(volts=(0.0, 0.0, 0.0, 0.04)), Dac43608()
    kernel.devices.update({0x48: ads, 0x49: dac})
    bus = LinuxI2CBus(device_file)
    assert ADS1115(bus, sleep=lambda s: None).read_volts(3) == pytest.approx(0.04, abs=1e-5)
    DAC43608(bus).set_level("A", 0.2)
    assert dac.level("A") == pytest.approx(51 / 255)


def test_a_missing_device_is_an_i2c_error_naming_the_address(device_file: Path,
                                                           kernel: FakeKernel) -> None:
    bus = LinuxI2CBus(device_file)
    with pytest.raises(I2CError, match=f"{device_file}: no I2C device answered at 0x2C"):
        bus.write_read(0x2C, b"\x08", 2)


def test_other_bus_errors_say_what_the_kernel_said(device_file: Path, kernel: FakeKernel) -> None:
    kernel.devices[0x48] = Ads1115()
    kernel.fail_with = errno.ETIMEDOUT
    with pytest.raises(I2CError, match="transfer with 0x48 failed: Connection timed out"):
        LinuxI2CBus(device_file).read(0x48, 2)


def test_addresses_outside_7_bit_device_range_are_refused_before_any_transfer(
    device_file: Path, kernel: FakeKernel,
) -> None:
    bus = LinuxI2CBus(device_file)
    with pytest.raises(ValueError, match="0x03..0x77"):
        bus.write(0x78, b"\x00")
    assert kernel.calls == []


def test_a_missing_bus_device_says_how_to_enable_i2c(tmp_path: Path) -> None:
    with pytest.raises(I2CUnavailable) as caught:
        LinuxI2CBus(tmp_path / "i2c-1")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'i2c-1'} does not exist")
    assert "sudo raspi-config nonint do_i2c 0" in message and "reboot" in message


def test_permission_denied_says_to_join_group_i2c(device_file: Path, monkeypatch) -> None:
    def refuse(path, flags, *args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(smbus2.smbus2.os, "open", refuse)
    with pytest.raises(I2CUnavailable, match=f"permission denied opening {device_file}: add the "
                                             "daemon's user to group i2c"):
        LinuxI2CBus(device_file)


def test_the_default_device_is_dev_i2c_1() -> None:
    assert i2c.DEFAULT_DEVICE == Path("/dev/i2c-1")
