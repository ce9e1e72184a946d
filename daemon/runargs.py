"""The payload of `pioreactor/{unit}/{exp}/run/{job}` as a job's command line (SPEC §4).

    {"options": {"initial_dc": 10, "dry_run": null, "fast": true, "slow": false, "pin": [1, 2]},
     "args": ["x"]}
    -> ["--initial-dc", "10", "--dry-run", "--fast", "--no-slow", "--pin", "1", "--pin", "2", "x"]

Option values follow click's conventions: `_` becomes `-`; `null` is a bare flag (`is_flag`);
`true` is `--name` and `false` is `--no-name` (click's `--name/--no-name` boolean flags; a plain
`is_flag` option has no `--no-name`, so the job's command refuses it and says so); a list repeats
the option (`multiple=True`); an object is passed as compact JSON; anything else as `str()`.
Both keys are optional. The job's own click command checks the result: an option it does not
know fails the start exactly as it would from `pioctl start`.
"""

from __future__ import annotations

import json
from typing import Any

from .limits import MAX_JOB_ARGS, size_text


class BadRunRequest(ValueError):
    """The payload cannot be turned into a command line; the message says why."""


def parse(payload: bytes) -> list[str]:
    if len(payload) > MAX_JOB_ARGS:  # refused before parsing: never echoed, never forked
        raise BadRunRequest(f"payload is {size_text(len(payload))} (at most "
                            f"{size_text(MAX_JOB_ARGS)} of job arguments)")
    try:
        request = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRunRequest(f"payload is not valid JSON ({exc})") from None
    if not isinstance(request, dict):
        raise BadRunRequest(f"payload must be a JSON object, not {type(request).__name__}")
    unknown = sorted(set(request) - {"options", "args"})
    if unknown:
        raise BadRunRequest(f"unknown key(s) {', '.join(unknown)}; expected options, args")
    options = request.get("options") or {}
    args = request.get("args") or []
    if not isinstance(options, dict):
        raise BadRunRequest("options must be a JSON object")
    if not isinstance(args, list):
        raise BadRunRequest("args must be a JSON list")
    argv: list[str] = []
    for name, value in options.items():
        argv.extend(_option(str(name), value))
    argv.extend(_scalar(a, "args") for a in args)
    return argv


def _option(name: str, value: Any) -> list[str]:
    flag = "--" + name.strip().lstrip("-").replace("_", "-")
    if flag == "--":
        raise BadRunRequest("an option has an empty name")
    if value is None or value is True:
        return [flag]
    if value is False:
        return ["--no-" + flag[2:]]
    if isinstance(value, list):
        return [part for item in value for part in (flag, _scalar(item, flag))]
    return [flag, _scalar(value, flag)]


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, list) or value is None:
        raise BadRunRequest(f"{where}: {json.dumps(value)} is not a single value")
    return str(value)
