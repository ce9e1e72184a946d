"""`pioreactor.hardware`: the HAT's wiring as Pioreactor's plugins read it.

    PWM_TO_PIN = get_pwm_to_pin_map()            # {"1": 17, "2": 13, ...}: str channel -> BCM pin
    pin = PWM_TO_PIN[config.get("PWM_reverse", "air_bubbler")]

Channels are strings, as in Pioreactor (the `[PWM_reverse]` values are strings too); the module
attribute `PWM_TO_PIN` also takes int keys. An optional `[PWM_pins]` config section overrides
single channels (`pioreactor.hardware_mappings`). The I2C pins are the Raspberry Pi's (BCM 2, 3).
A job never drives any of these itself: PWM goes through `pioreactor.utils.pwm.PWM` (the daemon).
"""

from __future__ import annotations

from pioreactord.hardware.pins import TACHOMETER_PIN

from .hardware_mappings import PWM_TO_PIN

__all__ = ["PWM_TO_PIN", "SCL", "SDA", "HEATER_PWM_TO_PIN", "get_pwm_to_pin_map", "get_scl_pin",
           "get_sda_pin", "get_heater_pwm_channel", "get_hall_sensor_pin", "get_pcb_led_pin",
           "determine_gpiochip", "is_HAT_present", "uses_photodiodes"]

SDA = 2
SCL = 3
HEATER_PWM_TO_PIN = "5"  # the HAT's heater channel
PCB_LED_PIN = 23
GPIOCHIP = 0


def get_pwm_to_pin_map() -> dict[str, int]:
    """PWM channel (str) -> BCM pin, the config's `[PWM_pins]` applied."""
    return {str(channel): pin for channel, pin in PWM_TO_PIN.items()}


def get_sda_pin() -> int:
    return SDA


def get_scl_pin() -> int:
    return SCL


def get_heater_pwm_channel() -> str:
    return HEATER_PWM_TO_PIN


def get_hall_sensor_pin() -> int:
    """The stirring motor's tachometer input."""
    return TACHOMETER_PIN


def get_pcb_led_pin() -> int:
    return PCB_LED_PIN


def determine_gpiochip() -> int:
    return GPIOCHIP


def is_HAT_present() -> bool:
    """Whether the Raspberry Pi's device tree names Pioreactor's HAT (Pioreactor's own test)."""
    try:
        with open("/proc/device-tree/hat/vendor", encoding="ascii", errors="replace") as f:
            vendor = f.readline().strip("\x00")
        with open("/proc/device-tree/hat/product_id", encoding="ascii", errors="replace") as f:
            product_id = f.readline().strip("\x00")
    except OSError:
        return False
    return vendor == "Pioreactor Inc." and product_id == "0x0001"


def uses_photodiodes() -> bool:
    """od_reading reads the HAT's photodiodes (the OD-dodging classes dodge those readings)."""
    return True
