"""Small helpers the Pioreactor docs import from `pioreactor.utils`."""

from __future__ import annotations


def clamp(minimum: float, x: float, maximum: float) -> float:
    """`x` limited to [minimum, maximum]."""
    return max(minimum, min(x, maximum))
