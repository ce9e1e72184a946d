"""`pioreactor.hardware_mappings.PWM_TO_PIN`: HAT PWM channel -> BCM pin, as the seeds import it.

Keys may be ints or strings (`PWM_TO_PIN[1]`, `PWM_TO_PIN["1"]`). Defaults are the Pioreactor
HAT's wiring (`pioreactord.hardware.pins`); an optional `[PWM_pins]` section of the config
(`channel = BCM pin`) overrides single channels, by the same rule the daemon uses for its pins.
The config is read on first lookup, not at import.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pioreactord.hardware.pins import DEFAULT_PWM_TO_PIN, pwm_to_pin_from_section

CONFIG_SECTION = "PWM_pins"


def _channel(key: int | str) -> int:
    try:
        return int(str(key).strip())
    except ValueError:
        raise KeyError(f"PWM channel {key!r} is not a number (channels: "
                       f"{', '.join(map(str, sorted(DEFAULT_PWM_TO_PIN)))})") from None


class PwmToPin(Mapping[int, int]):
    """Channel -> pin; `reload()` forgets the config overrides (tests, long-lived scripts)."""

    def __init__(self) -> None:
        self._pins: dict[int, int] | None = None

    def reload(self) -> None:
        self._pins = None

    def _load(self) -> dict[int, int]:
        if self._pins is None:
            from pioreactor.config import config

            section = config[CONFIG_SECTION] if config.has_section(CONFIG_SECTION) else {}
            self._pins = pwm_to_pin_from_section(section)
        return self._pins

    def __getitem__(self, key: int | str) -> int:
        pins = self._load()
        channel = _channel(key)
        if channel not in pins:
            raise KeyError(f"no PWM channel {channel} (channels: {', '.join(map(str, sorted(pins)))})")
        return pins[channel]

    def __iter__(self) -> Iterator[int]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"PWM_TO_PIN({self._load()!r})"


PWM_TO_PIN = PwmToPin()
