"""The two helpers the systemd unit runs beside the daemon (the unit file says why it needs them).

    python3 -m pioreactord.unitctl sweep UNIT          ExecStopPost=+ (root, outside the sandbox)
    python3 -m pioreactord.unitctl reload PID [--config PATH]                ExecReload=

`sweep` runs after every end of the daemon's process. The unit has `KillMode=process`, so
systemd itself only ever signals the daemon, never its jobs: jobs outlive a crash, a kill -9
and a watchdog kill, and the restarted daemon re-adopts them. When the unit is really going
down instead (systemctl stop/restart, shutdown, or an end that systemd will not restart), the
sweep ends whatever of the unit is still running: normally nothing (the daemon stopped every job
first), but everything when the daemon was stuck and systemd had to SIGKILL it.

`reload` sends SIGHUP (the daemon re-executes itself in place, `reexec.py`) and returns once the
new code is serving, or fails with the daemon's reason: systemd 252 (Debian 12) has no
Type=notify-reload, so `systemctl reload` waits as long as ExecReload runs, and no longer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

# EXIT_STATUS values of the unit's RestartPreventExitStatus=: systemd does not restart after them.
NO_RESTART_STATUSES = frozenset({"78"})
TERM_GRACE = 3.0  # SIGTERM -> SIGKILL for what the daemon left (its jobs: they cannot reach it)
KILL_GRACE = 5.0  # then how long SIGKILLed processes get to disappear
RELOAD_TIMEOUT = 50.0  # below the unit's TimeoutStartSec=, which also bounds ExecReload=
CGROUP_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/systemd")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "sweep":
        return sweep_command(argv[1], os.environ)
    if len(argv) >= 2 and argv[0] == "reload" and argv[1].isdigit():
        config = argv[3] if len(argv) >= 4 and argv[2] == "--config" else None
        return reload_command(int(argv[1]), config)
    print("usage: python3 -m pioreactord.unitctl sweep UNIT | reload PID [--config PATH]",
          file=sys.stderr)
    return 2


# --- sweep (ExecStopPost=) ------------------------------------------------------------------------

def unit_goes_down(result: str, exit_status: str, stop_pending: bool) -> tuple[bool, str]:
    """Whether what is left of the unit must be ended, and why. `result`, `exit_status`: systemd's
    $SERVICE_RESULT and $EXIT_STATUS for ExecStopPost=; `stop_pending`: a stop or restart job of
    the unit is running (systemctl stop/restart, shutdown, reboot)."""
    if stop_pending:
        return True, "the unit is being stopped"
    if result == "success":
        return True, "the daemon exited cleanly, so systemd will not restart it"
    if result == "exit-code" and exit_status in NO_RESTART_STATUSES:
        return True, f"the daemon exited with {exit_status}, after which systemd does not restart it"
    return False, (f"the daemon ended unexpectedly ({result}, {exit_status or '-'}): systemd "
                   "restarts it and it re-adopts the jobs")


def stop_job_pending(unit: str, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> bool | None:
    """Is a stop (or restart) job of `unit` running? None if systemd could not be asked."""
    try:
        listing = run(["systemctl", "list-jobs", "--no-legend", "--plain"], capture_output=True,
                      text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listing.returncode != 0:
        return None
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == unit and ("stop" in fields[2] or "restart" in fields[2]):
            return True
    return False


def own_cgroup_dirs(proc_cgroup: str, roots: Iterable[str] = CGROUP_ROOTS) -> list[Path]:
    """The directories of the cgroup this process is in (the unit's, for ExecStopPost=), in every
    mounted hierarchy that has it: cgroup v2, the hybrid layout's `unified`, or v1 `name=systemd`."""
    paths = []
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (hierarchy == "0" and controllers == "") or controllers == "name=systemd":
            paths.append(path.removesuffix("/.control"))
    found = []
    for root in roots:
        for path in paths:
            candidate = Path(root + path)
            if (candidate / "cgroup.procs").exists() and candidate not in found:
                found.append(candidate)
    return found


def cgroup_members(dirs: Iterable[Path], exclude: set[int]) -> dict[int, str]:
    """pid -> name of every live process in the cgroups `dirs` (sub-cgroups included)."""
    members: dict[int, str] = {}
    for top in dirs:
        for procs in top.rglob("cgroup.procs"):
            try:
                pids = [int(word) for word in procs.read_text().split()]
            except (OSError, ValueError):
                continue
            for pid in pids:
                if pid not in exclude and pid not in members and _alive(pid):
                    members[pid] = _name(pid)
    return members


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie is gone, its parent reaps it


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def end_all(members: Callable[[], dict[int, str]], say: Callable[[str], None],
            term_grace: float = TERM_GRACE, kill_grace: float = KILL_GRACE) -> dict[int, str]:
    """SIGTERM everything `members()` lists, SIGKILL what is left after `term_grace`; returns what
    was still there after `kill_grace` more (normally nothing)."""
    left = members()
    if not left:
        return {}
    say(f"SIGTERM to {_listing(left)}")
    _signal_all(left, signal.SIGTERM)
    left = _wait_empty(members, term_grace)
    if left:
        say(f"still running {term_grace:g} s later, SIGKILL to {_listing(left)}")
        _signal_all(left, signal.SIGKILL)
        left = _wait_empty(members, kill_grace, resignal=signal.SIGKILL)
    return left


def _signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
            if signum != signal.SIGKILL:
                os.kill(pid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
        except OSError:
            pass


def _wait_empty(members: Callable[[], dict[int, str]], timeout: float,
                resignal: int | None = None) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        left = members()
        if not left or time.monotonic() > deadline:
            return left
        if resignal is not None:
            _signal_all(left, resignal)  # one forked after the first round
        time.sleep(0.05)  # polling /proc: the processes are not ours to wait for


def _listing(members: dict[int, str]) -> str:
    return ", ".join(f"{pid} ({name})" for pid, name in sorted(members.items()))


def sweep_command(unit: str, env: os._Environ[str] | dict[str, str]) -> int:
    def say(text: str) -> None:
        print(f"pioreactord stop-sweep: {text}", file=sys.stderr, flush=True)

    dirs = own_cgroup_dirs(Path("/proc/self/cgroup").read_text())
    exclude = {os.getpid()}
    members = lambda: cgroup_members(dirs, exclude)  # noqa: E731
    left = members()
    if not left:
        return 0
    pending = stop_job_pending(unit)
    result, status = env.get("SERVICE_RESULT", ""), env.get("EXIT_STATUS", "")
    if pending is None:  # cannot ask systemd: only a clean end or a stop timeout are stops
        pending = result == "timeout"
    down, why = unit_goes_down(result, status, pending)
    if not down:
        say(f"keeping {len(left)} process(es), {why}: {_listing(left)}")
        return 0
    say(f"{len(left)} process(es) outlived the daemon and {why}")
    stubborn = end_all(members, say)
    if stubborn:
        say(f"could not end {_listing(stubborn)}")
        return 1
    return 0


# --- reload (ExecReload=) -------------------------------------------------------------------------

def reload_command(pid: int, config_path: str | None) -> int:
    from .config import Config, ConfigError
    from .reexec import read_exec_state

    try:
        config = Config.load(config_path)
    except ConfigError as exc:  # the daemon would refuse it too; say so without disturbing it
        print(f"pioreactord reload: config rejected, nothing changed: {exc}", file=sys.stderr)
        return 1
    state_path = config.runtime_dir / "exec.state"
    before = read_exec_state(state_path, pid)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"pioreactord reload: cannot signal pid {pid}: {exc}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        after = read_exec_state(state_path, pid)
        if after is not None and (before is None or after.seq > before.seq):
            print(f"pioreactord reload: {after.describe()}", file=sys.stderr)
            return 0 if after.ok else 1
        if not _alive(pid):
            print(f"pioreactord reload: the daemon (pid {pid}) ended during the reload",
                  file=sys.stderr)
            return 1
        time.sleep(0.02)  # polling the daemon's state file: it has no other way to answer
    print(f"pioreactord reload: no answer from pid {pid} within {RELOAD_TIMEOUT:g} s",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
