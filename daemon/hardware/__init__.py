"""Hardware backends: the one owner of every pin, ADC and LED, living inside the daemon.

`open_backend(config.hardware, ...)` picks one (see `choose`); all implement `HardwareBackend`.
The real backends reach the HAT's ADC and LED driver over I2C (`i2c`, `hat`).
Importing this package imports nothing else: the names below load on first use (PEP 562), so
the job side can import `pioreactord.hardware.pins` cheaply, and RPi.GPIO and pigpio load only
when their backend is chosen.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import HardwareBackend, HardwareError
    from .choose import open_backend, raspberry_pi_model
    from .pins import pin_roles_from_pwm_section
    from .simulated import SimulatedBackend, SimulationParams, seed_from_section

_EXPORTS = {
    "HardwareBackend": "base",
    "HardwareError": "base",
    "open_backend": "choose",
    "raspberry_pi_model": "choose",
    "pin_roles_from_pwm_section": "pins",
    "SimulatedBackend": "simulated",
    "SimulationParams": "simulated",
    "seed_from_section": "simulated",
}
__all__ = [
    "HardwareBackend",
    "HardwareError",
    "SimulatedBackend",
    "SimulationParams",
    "open_backend",
    "pin_roles_from_pwm_section",
    "raspberry_pi_model",
    "seed_from_section",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
