"""Probes of scripts/e2e-systemd.sh, run inside the booted container as root with its own python3
(the package's dependencies only). Each prints one line for the test's log and exits 1 when
what it checks is false.

    survive ACTION JOBS [--version V]   do ACTION to the daemon, wait until it is back and has
                                        re-adopted JOBS (name=pid,...) with their pids; time it
    jobs JOBS                           JOBS run now, ready (name=pid; pid 0: any pid)
    absent NAME...                      no such job runs
    db                                  PRAGMA integrity_check, no is_running = 1 row of a dead pid
    freeze PID                          hold PID in a ptrace stop (a stuck daemon: SIGTERM and
                                        SIGCONT do nothing, SIGKILL still works) until it dies
    has-setting KEY                     the installed daemon declares config key KEY
ACTION: kill9 (SIGKILL to MainPID), sigstop (the watchdog must act), reload (systemctl reload),
upgrade:DEB (apt-get install DEB).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

UNIT = "pioreactord.service"
DB = "/var/lib/pioreactord/pioreactord.sqlite"
BACK_TIMEOUT = 60.0
# SPEC §7: the jobs are re-adopted, and pioctl tells the truth, within 2 s of the daemon being back.
ADOPT_LIMIT = 2.0 * float(os.environ.get("E2E_SLOW", "1"))


def run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def unit_props() -> dict[str, str]:
    out = run("systemctl", "show", "-p", "MainPID,ActiveState,SubState,NRestarts,Result", UNIT).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def pioctl_json(*args: str) -> object | None:
    result = run("pioctl", "--json", *args, timeout=10)
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout)
    except ValueError:
        return None


def parse_jobs(spec: str) -> dict[str, int]:
    return {name: int(pid) for name, _, pid in (item.partition("=") for item in spec.split(",") if item)}


def jobs_match(want: dict[str, int]) -> tuple[bool, object]:
    status = pioctl_json("status")
    if not isinstance(status, list):
        return False, status
    rows = {row["job_name"]: row for row in status}
    ok = all(name in rows and rows[name]["state"] == "ready" and (pid == 0 or rows[name]["pid"] == pid)
             for name, pid in want.items())
    return ok, status


def wait(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)  # polling systemd and pioctl: the deadline is what bounds it


def act(action: str, main: int) -> None:
    if action == "kill9":
        os.kill(main, signal.SIGKILL)
    elif action == "sigstop":
        os.kill(main, signal.SIGSTOP)
    elif action == "reload":
        result = run("systemctl", "reload", UNIT, timeout=120)
        if result.returncode != 0:
            fail(f"systemctl reload failed: {result.stderr.strip()}")
    elif action.startswith("upgrade:"):
        result = run("apt-get", "install", "-y", "-q", action.split(":", 1)[1], timeout=600)
        if result.returncode != 0:
            fail(f"apt-get install failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    else:
        fail(f"unknown action {action}")


def survive(action: str, spec: str, version: str | None) -> None:
    want = parse_jobs(spec)
    before = unit_props()
    main, restarts = int(before["MainPID"]), int(before["NRestarts"])
    version_before = pioctl_json("version")
    in_place = action == "reload" or action.startswith("upgrade:")
    start = time.monotonic()
    act(action, main)

    def back() -> bool:
        now = unit_props()
        moved = int(now["MainPID"]) == main if in_place else (
            now["MainPID"] not in ("0", str(main)) and int(now["NRestarts"]) > restarts)
        return moved and now["ActiveState"] == "active" and now["SubState"] == "running"

    if not wait(back, BACK_TIMEOUT):
        fail(f"the daemon is not back after {action}: {unit_props()}")
    back_at = time.monotonic()
    matched = wait(lambda: jobs_match(want)[0], 30)
    adopted_at = time.monotonic()
    if not matched:
        fail(f"after {action}, not re-adopted with their pids {want}: {jobs_match(want)[1]}")
    now = unit_props()
    report = {"action": action.split(":")[0], "back_s": round(back_at - start, 2),
              "adopted_after_back_s": round(adopted_at - back_at, 2), "main_pid": now["MainPID"]}
    report.update(check_version(version_before, int(now["MainPID"]), in_place, version))
    print(json.dumps(report))
    if adopted_at - back_at > ADOPT_LIMIT:
        fail(f"re-adopted {adopted_at - back_at:.2f} s after the daemon was back (limit {ADOPT_LIMIT:g} s)")


def check_version(before: object, main: int, in_place: bool, expected: str | None) -> dict:
    """`pioctl version` (when this build has it) names the daemon that runs now."""
    after = pioctl_json("version")
    if not isinstance(after, dict) or not isinstance(before, dict):
        return {"version": "pioctl version not in this build"}
    problems = []
    if after.get("daemon_pid") != main:
        problems.append(f"daemon_pid {after.get('daemon_pid')} is not MainPID {main}")
    if expected and after.get("daemon") != expected:
        problems.append(f"daemon version {after.get('daemon')!r}, expected {expected!r}")
    if after.get("daemon_exec_at") == before.get("daemon_exec_at"):
        problems.append("daemon_exec_at did not change")
    same_start = after.get("daemon_started_at") == before.get("daemon_started_at")
    if same_start != in_place:
        problems.append(f"daemon_started_at {'changed' if in_place else 'did not change'}")
    if problems:
        fail("pioctl version: " + "; ".join(problems) + f": {after}")
    return {"version": after.get("daemon"), "exec_at": after.get("daemon_exec_at")}


def db_check() -> None:
    conn = sqlite3.connect(f"file:{DB}?mode=ro", uri=True, timeout=10)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        running = conn.execute("SELECT job_name, pid FROM pio_job_metadata WHERE is_running = 1").fetchall()
    finally:
        conn.close()
    dead = [(name, pid) for name, pid in running if not os.path.exists(f"/proc/{pid}")]
    print(json.dumps({"integrity_check": integrity, "running_rows": running}))
    if integrity != "ok" or dead:
        fail(f"integrity_check {integrity!r}; is_running = 1 rows of dead processes: {dead}")


def freeze(pid: int) -> None:
    ptrace_seize, ptrace_interrupt, wall = 0x4206, 0x4207, 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    for request in (ptrace_seize, ptrace_interrupt):
        if libc.ptrace(request, pid, None, None) != 0:
            fail(f"ptrace({request:#x}, {pid}): {os.strerror(ctypes.get_errno())}")
    print(f"froze {pid}", flush=True)
    while True:  # never resume it; only its death ends the trace
        _, status = os.waitpid(pid, wall)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return


def has_setting(key: str) -> None:
    from pioreactord.config import SETTINGS

    if not any(setting.key == key for setting in SETTINGS):
        sys.exit(1)


def fail(message: str) -> None:
    print(f"probe: {message}", file=sys.stderr)
    sys.exit(1)


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "survive":
        version = args[args.index("--version") + 1] if "--version" in args else None
        survive(args[0], args[1], version)
    elif command == "jobs":
        if not wait(lambda: jobs_match(parse_jobs(args[0]))[0], 30):
            fail(f"not running: {args[0]}: {jobs_match(parse_jobs(args[0]))[1]}")
        print(json.dumps(jobs_match({})[1]))
    elif command == "absent":
        status = pioctl_json("status") or []
        running = [row["job_name"] for row in status if isinstance(row, dict)]
        if set(args) & set(running):
            fail(f"running, but should not be: {sorted(set(args) & set(running))}")
    elif command == "db":
        db_check()
    elif command == "freeze":
        freeze(int(args[0]))
    elif command == "has-setting":
        has_setting(args[0])
    else:
        fail(f"unknown probe {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
