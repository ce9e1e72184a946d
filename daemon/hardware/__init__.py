"""Hardware backends: the one owner of every pin, ADC and LED, living inside the daemon.

`open_backend(config.hardware, ...)` picks one (see `choose`); all implement `HardwareBackend`.
Importing this package imports no GPIO library: RPi.GPIO and pigpio load only when chosen.
"""

from __future__ import annotations

from .base import HardwareBackend, HardwareError
from .choose import open_backend, raspberry_pi_model
from .pins import pin_roles_from_pwm_section
from .simulated import SimulatedBackend, SimulationParams, seed_from_section

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
