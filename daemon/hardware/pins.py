"""The Pioreactor HAT's wiring: which BCM pin and ADC channel does what.

Plain constants and one pure helper, no imports beyond typing, so the job side
(`pioreactor.hardware_mappings`) can import this module without pulling in the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping

# PWM channel on the HAT (the numbers in the config's [PWM] section) -> BCM pin.
DEFAULT_PWM_TO_PIN: dict[int, int] = {1: 17, 2: 13, 3: 16, 4: 12, 5: 18}

# Hall-effect sensor of the stirring motor: digital input, two pulses per revolution.
TACHOMETER_PIN = 25
TACHOMETER_PULSES_PER_REV = 2

# Photodiode channel (as Pioreactor's od_reading names them) -> ADC channel.
# "1" is the 90-degree sensor that sees the culture, "2" the reference photodiode that
# sees only the IR LED (used to cancel LED drift).
PD_CHANNEL_TO_ADC: dict[str, int] = {"1": 0, "2": 1}
# pioreactord's ADC channels: 0 photodiode "1", 1 photodiode "2", 2 the HAT's version divider,
# 3 aux. Which chip input each is differs between HAT revisions; `hat` maps them.
ADC_CHANNELS = (0, 1, 2, 3)

# LED channels driven by the HAT's DAC.
LED_CHANNELS = ("A", "B", "C", "D")

# BCM numbers of the 40-pin header's GPIOs.
BCM_PINS = range(0, 28)


def pwm_to_pin_from_section(pins_section: Mapping[str, str]) -> dict[int, int]:
    """The HAT defaults with the config's optional `[PWM_pins]` (`channel = BCM pin`) applied.
    ValueError names a channel or pin that is not a number. The job side uses the same rule."""
    pwm_to_pin = dict(DEFAULT_PWM_TO_PIN)
    for channel, pin in pins_section.items():
        try:
            pwm_to_pin[int(channel)] = int(pin)
        except ValueError:
            raise ValueError(f"[PWM_pins] {channel} = {pin}: channel and pin must be numbers") from None
    return pwm_to_pin


def pin_roles_from_pwm_section(
    pwm_section: Mapping[str, str],
    pwm_to_pin: Mapping[int, int] = DEFAULT_PWM_TO_PIN,
) -> dict[int, str]:
    """[PWM] `channel = name` entries -> {BCM pin: name}, the `pin_roles` of `open_backend`.

    Empty names and channels the HAT does not have are skipped: they drive nothing.
    """
    roles: dict[int, str] = {}
    for channel, name in pwm_section.items():
        name = name.strip()
        if name and channel.strip().isdigit() and int(channel) in pwm_to_pin:
            roles[pwm_to_pin[int(channel)]] = name
    return roles
