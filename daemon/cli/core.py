"""What every pioctl command does, without click: the control call, the exit statuses, the output.

`pioctl.py` (the click group) and `fast.py` (the quick path for the everyday commands) both call
these functions, so a command behaves the same whichever path parsed it. Nothing heavy is
imported here: the config file is read only for the keys pioctl needs (the full, validated
`Config` only when a command needs more), and the call is a plain Unix socket (`client.py`).

Exit status (SPEC §3): 0 done; 1 refused or failed (timed out included); 2 usage error; 3 the
daemon cannot be reached.
"""

from __future__ import annotations

import json
import os
import sys

from .. import __version__

TYPE_CHECKING = False  # typing itself costs an import; mypy reads the block below
if TYPE_CHECKING:
    from typing import Any, NoReturn

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
DEFAULT_TIMEOUT = 15.0
# The keys pioctl reads, with config.py's defaults (tests/unit/test_pioctl_core.py keeps them equal).
CONFIG_ENV, DEFAULT_CONFIG_PATH = "PIOREACTORD_CONFIG", "/etc/pioreactord.ini"
DEFAULTS = {"runtime_dir": "/run/pioreactord", "stop_timeout": "10"}


def echo(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def fail(message: str, echo_it: bool = True) -> NoReturn:
    if echo_it:
        echo(f"pioctl: {message}", err=True)
    sys.exit(EXIT_FAILED)


class Context:
    def __init__(self, config_path: str | None, as_json: bool) -> None:
        self.config_path = config_path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
        self.as_json = as_json
        self._keys: dict[str, str] | None = None
        self._config: Any = None

    @property
    def config(self) -> Any:
        """The daemon's full, validated Config (for commands that need more than the socket)."""
        if self._config is None:
            from pioreactord.config import Config, ConfigError

            try:
                self._config = Config.load(self.config_path)
            except ConfigError as exc:
                fail(str(exc))
        return self._config

    def key(self, name: str) -> str:
        """One `[pioreactord]` key, read with the same parser settings as `Config.load`."""
        if self._keys is None:
            self._keys = _read_keys(self.config_path)
        return self._keys[name]

    @property
    def control_socket(self) -> str:
        return os.path.join(self.key("runtime_dir"), "control.sock")

    @property
    def stop_timeout(self) -> float:
        try:
            return float(self.key("stop_timeout"))
        except ValueError:
            return float(self.config.stop_timeout)  # the full load says what is wrong

    def call(self, cmd: str, args: dict[str, Any] | None = None,
             timeout: float = DEFAULT_TIMEOUT) -> Any:
        """One control request: its result, or exit 3 (cannot be reached) or 1 (refused, timed out)."""
        from pioreactord.client import TimedOut, TooLarge, Unreachable, call

        try:
            reply = call(self.control_socket, {"t": "call", "cmd": cmd, "args": args or {}}, timeout)
        except TooLarge as exc:
            fail(str(exc))
        except TimedOut:
            fail(f"timed out: pioreactord did not answer {cmd!r} within {timeout:g} s (it may "
                 f"still be working on it; see `pioctl status` and `pioctl logs`)")
        except Unreachable as exc:
            self.unreachable(exc)
        if not reply.get("ok"):
            if self.as_json:
                echo(json.dumps({"error": reply.get("error"), "code": reply.get("code")}))
            fail(str(reply.get("error")), echo_it=not self.as_json)
        return reply.get("result")

    def unreachable(self, exc: Any) -> NoReturn:
        how = "" if getattr(exc, "reason", "") == "permission_denied" else (
            f". Start it with `systemctl start pioreactord` or `pioreactord --config "
            f"{self.config_path}`")
        echo(f"pioctl: pioreactord is not reachable: {exc}{how}.", err=True)
        sys.exit(EXIT_UNREACHABLE)

    def output(self, result: Any, text: str) -> None:
        echo(json.dumps(result) if self.as_json else text)


def _read_keys(path: str) -> dict[str, str]:
    import configparser

    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        fail(f"config file {path} does not exist (pass --config PATH or set ${CONFIG_ENV})")
    except (OSError, configparser.Error) as exc:
        fail(f"cannot read config file {path}: {exc}")
    return {key: parser.get("pioreactord", key, fallback=default).strip()
            for key, default in DEFAULTS.items()}


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


# --- the commands (each: parse nothing, call once, print) --------------------------------------
def status(ctx: Context, job: str | None) -> None:
    reply = ctx.call("status", {"job": job, "daemon": True} if job else {"daemon": True})
    # A daemon from before `daemon: true` answers the plain list.
    rows, daemon = (reply, {}) if isinstance(reply, list) else (reply["jobs"], reply["daemon"])
    if ctx.as_json:
        return ctx.output(rows, "")
    lines = [line for line in (_part_line("broker", daemon.get("broker")),
                               _part_line("sink", daemon.get("sink"))) if line]
    if not rows:
        lines.append("no jobs running")
    else:
        body = [[r["job_name"], r["state"], str(r["pid"]), r["experiment"], duration(r["uptime"]),
                 "-" if r.get("cpu_percent") is None else f"{r['cpu_percent']:.0f}%",
                 "-" if r.get("rss_mib") is None else f"{r['rss_mib']:.1f} MiB",
                 r.get("version") or "-",
                 " ".join(f"{k}={v}" for k, v in sorted(r["settings"].items()))] for r in rows]
        lines.append(table(body, ["JOB", "STATE", "PID", "EXPERIMENT", "UPTIME", "CPU", "MEMORY",
                                  "VERSION", "SETTINGS"]))
    echo("\n".join(lines))


_SHOWN = ("connected", "ok", "since", "reason", "error")


def _part_line(name: str, part: dict[str, Any] | None) -> str | None:
    """`broker  connected since T (address=...)` / `sink  FAILING since T: error (queued=3)`."""
    if not part:
        return None
    healthy = part.get("connected", part.get("ok"))
    word = {"broker": ("connected", "NOT CONNECTED"), "sink": ("ok", "FAILING")}[name]
    text = f"{name:<7}{word[0] if healthy else word[1]}"
    if part.get("since"):
        text += f" since {part['since']}"
    why = part.get("reason") or part.get("error")
    if why and not healthy:
        text += f": {why}"
    extras = [f"{k}={v}" for k, v in part.items() if k not in _SHOWN and v not in (None, "")]
    return text + (f" ({' '.join(extras)})" if extras else "")


def version(ctx: Context) -> None:
    from pioreactord.client import TimedOut, Unreachable, call

    try:
        reply = call(ctx.control_socket, {"t": "call", "cmd": "version", "args": {}},
                     DEFAULT_TIMEOUT)
    except TimedOut:
        echo(f"client  {__version__}")
        fail(f"timed out: pioreactord did not answer 'version' within {DEFAULT_TIMEOUT:g} s")
    except Unreachable as exc:
        echo(json.dumps({"client": __version__}) if ctx.as_json else f"client  {__version__}")
        ctx.unreachable(exc)
    if not reply.get("ok"):  # a daemon from before `version`
        fail(f"the daemon does not tell its version ({reply.get('error')})")
    d = reply["result"]
    result = {"client": __version__, "daemon": d["daemon"], "daemon_pid": d["pid"],
              "daemon_started_at": d["started_at"], "daemon_exec_at": d["exec_at"]}
    ctx.output(result, f"client  {__version__}\ndaemon  {d['daemon']} (pid {d['pid']}, started "
                       f"{d['started_at']}, exec'd {d['exec_at']})")


def locks(ctx: Context) -> None:
    rows = ctx.call("locks")
    if ctx.as_json:
        return ctx.output(rows, "")
    body = [[str(r["pin"]), r["job_name"], str(r["pid"]), r["since"]] for r in rows]
    echo(table(body, ["PIN", "JOB", "PID", "SINCE"]) if body else "no pins locked")


def experiment(ctx: Context, name: str | None) -> None:
    result = ctx.call("experiment", {"name": name} if name is not None else {})
    ctx.output(result, result["experiment"])


def start(ctx: Context, job: str, job_args: list[str], timeout: float) -> None:
    result = ctx.call("start", {"job": job, "args": job_args}, timeout=timeout)
    verb = "finished" if result.get("finished") else "ready"
    ctx.output(result, f"{result['job_name']} {verb} (pid {result['pid']})")


def stop(ctx: Context, jobs: list[str], stop_all: bool) -> None:
    result = ctx.call("stop", {"jobs": jobs, "all": stop_all}, timeout=ctx.stop_timeout + 5)
    lines = [f"{r['job_name']} {r['end_state']}" for r in result["stopped"]] or ["nothing to stop"]
    ctx.output(result["stopped"], "\n".join(lines))


def set_state(ctx: Context, job: str, state: str) -> None:
    result = ctx.call("pause" if state == "sleeping" else "resume", {"job": job})
    ctx.output(result, f"{job} {state}")


def set_setting(ctx: Context, job: str, setting: str, value: str) -> None:
    result = ctx.call("set", {"job": job, "setting": setting, "value": value})
    ctx.output(result, f"{job} {setting} = {result.get('value')}")


def jobs(ctx: Context) -> None:
    entries = ctx.call("jobs", timeout=90)
    if ctx.as_json:
        return ctx.output(entries, "")
    body = [[e["name"], e["source"], e["origin"], f"ERROR: {e['error']}" if e["error"] else e["help"]]
            for e in entries]
    echo(table(body, ["JOB", "SOURCE", "FROM", "ABOUT"]) if body else "no jobs found")
