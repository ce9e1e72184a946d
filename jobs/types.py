"""`pioreactor.types`: the type names plugins annotate with (`import pioreactor.types as pt`).

`MQTTMessage` is what a `subscribe_and_callback` callback receives: the fields of paho's
MQTTMessage a job reads (`topic`, `payload` as bytes, `retain`, `qos`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

Unit = str
Experiment = str
JobState = Literal["init", "ready", "sleeping", "disconnected", "lost"]
PdChannel = Literal["1", "2"]
PwmChannel = Literal["1", "2", "3", "4", "5"]
LedChannel = Literal["A", "B", "C", "D"]
LedIntensityValue = float
GpioPin = int
FloatBetween0and100 = float
PublishableSettingDataType = str | float | int | bool | dict | list | None


class PublishableSetting(TypedDict, total=False):
    datatype: str
    settable: bool
    unit: str
    persist: bool


@dataclass(frozen=True)
class MQTTMessage:
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0
    mid: int = 0
    timestamp: float = 0.0
