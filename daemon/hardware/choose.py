"""`[pioreactord] hardware` -> a backend. The one place the choice is made.

| choice      | result                                                                        |
|-------------|-------------------------------------------------------------------------------|
| simulated   | the simulated culture                                                         |
| pigpio      | pigpiod at $PIGPIO_ADDR:$PIGPIO_PORT (localhost:8888), else HardwareError     |
| rpi_gpio    | RPi.GPIO, else HardwareError                                                  |
| auto        | pigpio if pigpiod answers; else RPi.GPIO on a Raspberry Pi; else simulated,   |
|             | with a warning that says why (never silently pretend on real hardware)        |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from .base import HardwareBackend, HardwareError
from .simulated import SimulatedBackend, SimulationParams

CHOICES = ("auto", "simulated", "rpi_gpio", "pigpio")
# The device tree names the board; /proc/cpuinfo's "Model" line is the fallback on old kernels.
MODEL_FILES = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))
CPUINFO = Path("/proc/cpuinfo")


def raspberry_pi_model() -> str | None:
    """The board's model string if this is a Raspberry Pi, else None."""
    for path in MODEL_FILES:
        try:
            model = path.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
        except OSError:
            continue
        return model if model.startswith("Raspberry Pi") else None
    try:
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("Model") and "Raspberry Pi" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def open_backend(
    choice: str,
    *,
    pin_roles: Mapping[int, str],
    seed: int | None,
    warn: Callable[[str], None],
    simulation: SimulationParams | None = None,
    info: Callable[[str], None] = lambda message: None,
) -> HardwareBackend:
    """Open the backend `choice` names. Raises HardwareError if an explicit choice cannot work.
    `warn` and `info` hear what a real backend found on the HAT's I2C bus."""
    choice = choice.strip().lower()
    if choice == "simulated":
        return SimulatedBackend(pin_roles=pin_roles, seed=seed, params=simulation)
    if choice == "pigpio":
        from .pigpio_backend import PigpioBackend

        return PigpioBackend(pin_roles=pin_roles, info=info, warn=warn)
    if choice == "rpi_gpio":
        from .rpi_gpio import RpiGpioBackend

        return RpiGpioBackend(pin_roles=pin_roles, info=info, warn=warn)
    if choice == "auto":
        return _auto(pin_roles, seed, warn, info, simulation)
    raise HardwareError(f"hardware = {choice!r} is not one of {', '.join(CHOICES)}")


def _auto(
    pin_roles: Mapping[int, str],
    seed: int | None,
    warn: Callable[[str], None],
    info: Callable[[str], None],
    simulation: SimulationParams | None,
) -> HardwareBackend:
    from .pigpio_backend import PigpioBackend, pigpio_address, probe_pigpiod

    host, port = pigpio_address()
    unreachable = probe_pigpiod(host, port)
    if unreachable is None:
        try:
            return PigpioBackend(pin_roles=pin_roles, host=host, port=port, info=info, warn=warn)
        except HardwareError as exc:  # e.g. pigpiod answers but the client library is missing
            pigpio_reason = f"pigpiod answers at {host}:{port} but cannot be used: {exc}"
            warn(f"hardware = auto: {pigpio_reason}")
    else:
        pigpio_reason = f"no pigpiod at {host}:{port} ({unreachable})"
    model = raspberry_pi_model()
    if model is not None:
        from .rpi_gpio import RpiGpioBackend

        try:
            return RpiGpioBackend(pin_roles=pin_roles, info=info, warn=warn)
        except HardwareError as exc:
            rpi_reason = f"this is a {model} but {exc}"
    else:
        rpi_reason = "this is not a Raspberry Pi"
    warn(
        "hardware = auto: using the simulated culture because no GPIO backend is available "
        f"(pigpio: {pigpio_reason}; rpi_gpio: {rpi_reason})"
    )
    return SimulatedBackend(pin_roles=pin_roles, seed=seed, params=simulation)
