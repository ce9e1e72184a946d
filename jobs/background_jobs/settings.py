"""Published settings: their metadata, and casting a `/set` payload to a setting's datatype.

Datatypes as the Pioreactor docs name them ("float", "integer", "string", "json", "boolean"), or
the Python types some examples use (`float`, `int`, `str`, `bool`, `dict`, `list`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

PYTHON_TYPES = {float: "float", int: "integer", str: "string", bool: "boolean", dict: "json",
                list: "json"}
ALIASES = {"int": "integer", "str": "string", "bool": "boolean", "dict": "json", "list": "json"}
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


class SettingRefused(Exception):
    """A `/set` that was not applied; `level` is how loudly to log it (SPEC §4)."""

    def __init__(self, message: str, code: str, level: int) -> None:
        super().__init__(message)
        self.code, self.level = code, level


def normalise_settings(declared: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The job's published_settings as plain JSON-able metadata (datatype always a string)."""
    result = {}
    for name, meta in declared.items():
        datatype = meta.get("datatype", "string")
        if isinstance(datatype, type):
            datatype = PYTHON_TYPES.get(datatype, "string")
        datatype = ALIASES.get(str(datatype).lower(), str(datatype).lower())
        result[name] = {"datatype": datatype, "settable": bool(meta.get("settable", False)),
                        "unit": meta.get("unit"), "persist": bool(meta.get("persist", False))}
    return result


def cast_value(setting: str, raw: str, meta: dict[str, dict[str, Any]]) -> Any:
    """The value `raw` means for `setting`, or SettingRefused (unknown/read-only: WARNING;
    a value that does not cast: ERROR)."""
    if setting not in meta:
        raise SettingRefused(f"{setting} is not a setting of this job (known: "
                             f"{', '.join(sorted(meta)) or 'none'}); ignored", "not_settable",
                             logging.WARNING)
    if not meta[setting]["settable"]:
        raise SettingRefused(f"{setting} is read-only; ignored", "not_settable", logging.WARNING)
    datatype = meta[setting]["datatype"]
    try:
        return _cast(raw, datatype)
    except (ValueError, TypeError) as exc:
        raise SettingRefused(f"{setting}: {raw!r} is not a valid {datatype} ({exc}); value unchanged",
                             "bad_value", logging.ERROR) from None


def _cast(raw: str, datatype: str) -> Any:
    text = raw.strip()
    if datatype == "float":
        value = float(text)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return value
    if datatype == "integer":
        return int(text)
    if datatype == "boolean":
        lowered = text.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise ValueError("use true/false, 1/0, yes/no or on/off")
    if datatype == "json":
        return json.loads(text)
    return raw


def with_unit(value: Any, unit: str | None, limit: int = 40) -> str:
    """A value as Pioreactor's `Updated ...` lines show it: `10.0%`, `500.0 RPM`, `True`; cut to
    `limit` characters with `...`."""
    text = f"{value}" if unit is None else f"{value}{unit}" if unit == "%" else f"{value} {unit}"
    return text[:limit] + ("..." if len(text) > limit else "")
