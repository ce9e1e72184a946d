"""The `pioctl` console script: the everyday commands without importing click.

Importing click is the biggest part of a `pioctl status` (more than the interpreter's own start),
so the plain forms of the commands people type all day, and scripts run in loops, are parsed
here: `[--config PATH] [--json] COMMAND ARGS` with `--json` also after the command, and
`start [--timeout S] [--json] JOB JOB_ARGS...` (what follows JOB is the job's, as click passes
it). Anything else -- help, an unknown option, a wrong number of arguments, an argument that
starts with '-', and the commands not listed in `ARITY` -- goes to the click group in
`pioctl.py`, which gives the usage errors and help. Both paths run the same functions of `core`
(tests/unit/test_pioctl_core.py checks that both parse `start` alike).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself costs an import; mypy reads the block below
if TYPE_CHECKING:
    # command, positional arguments, --config, --json, --all, start's --timeout
    Parsed = tuple[str, list[str], str | None, bool, bool, float]

# command -> (fewest, most) positional arguments (None: no limit)
ARITY: dict[str, tuple[int, int | None]] = {
    "status": (0, 1), "locks": (0, 0), "version": (0, 0), "experiment": (0, 1),
    "pause": (1, 1), "resume": (1, 1), "set": (3, 3), "stop": (0, None), "jobs": (0, 0),
}


def parse(argv: list[str]) -> Parsed | None:
    """The command line if it is a plain form of a command in ARITY, else None (click's turn)."""
    config_path, as_json, i = None, False, 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] == "--json":
            as_json = True
        elif argv[i] == "--config" and i + 1 < len(argv):
            config_path, i = argv[i + 1], i + 1
        elif argv[i].startswith("--config="):
            config_path = argv[i][len("--config="):]
        else:
            return None
        i += 1
    if i < len(argv) and argv[i] == "start":
        return _parse_start(argv[i + 1:], config_path, as_json)
    if i >= len(argv) or argv[i] not in ARITY:
        return None
    command, rest = argv[i], argv[i + 1:]
    stop_all = command == "stop" and "--all" in rest
    flags = {"--json", "--all"} if command == "stop" else {"--json"}
    if any(a.startswith("-") and a not in flags for a in rest):
        return None
    as_json = as_json or "--json" in rest
    args = [a for a in rest if a not in flags]
    fewest, most = ARITY[command]
    if len(args) < fewest or (most is not None and len(args) > most):
        return None
    if command == "stop" and not args and not stop_all:
        return None
    return command, args, config_path, as_json, stop_all, START_TIMEOUT


START_TIMEOUT = 60.0  # s; pioctl.py's `start --timeout` default is this one


def _parse_start(rest: list[str], config_path: str | None, as_json: bool) -> Parsed | None:
    """`start`'s own options, then JOB; everything after JOB is the job's, options included
    (click: interspersed arguments off, unknown options kept)."""
    timeout, i = START_TIMEOUT, 0
    while i < len(rest) and rest[i].startswith("-") and rest[i] != "-":
        if rest[i] == "--json":
            as_json = True
        elif rest[i].startswith("--timeout=") or (rest[i] == "--timeout" and i + 1 < len(rest)):
            if rest[i] == "--timeout":
                i += 1
                value = rest[i]
            else:
                value = rest[i][len("--timeout="):]
            try:
                timeout = float(value)
            except ValueError:
                return None  # click says what is wrong with it
        else:
            return None  # help, `--`, an unknown option
        i += 1
    if i >= len(rest):
        return None
    return "start", rest[i:], config_path, as_json, False, timeout


def run(parsed: Parsed) -> None:
    from . import core

    command, args, config_path, as_json, stop_all, timeout = parsed
    ctx = core.Context(config_path, as_json)
    {"start": lambda: core.start(ctx, args[0], args[1:], timeout),
     "status": lambda: core.status(ctx, args[0] if args else None),
     "locks": lambda: core.locks(ctx),
     "version": lambda: core.version(ctx),
     "experiment": lambda: core.experiment(ctx, args[0] if args else None),
     "pause": lambda: core.set_state(ctx, args[0], "sleeping"),
     "resume": lambda: core.set_state(ctx, args[0], "ready"),
     "set": lambda: core.set_setting(ctx, *args),
     "stop": lambda: core.stop(ctx, args, stop_all),
     "jobs": lambda: core.jobs(ctx)}[command]()


def main() -> None:
    parsed = parse(sys.argv[1:])
    if parsed is None:
        from .pioctl import main as click_main

        return click_main()
    try:
        run(parsed)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - never a traceback to the user
        sys.stderr.write(f"pioctl: unexpected error: {exc!r}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
