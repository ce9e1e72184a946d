"""The unit's helpers: when the stop-sweep ends what is left of the unit, and how (unitctl.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pioreactord import unitctl
from pioreactord.reexec import ExecState, read_exec_state, write_exec_state


# ExecStopPost='s environment after each way the daemon's process can end (systemd.exec(5)).
@pytest.mark.parametrize("result, status, pending, down", [
    ("success", "0", True, True),  # systemctl stop: the daemon stopped its jobs and exited 0
    ("success", "TERM", True, True),  # the same, killed by the SIGTERM before its handler was set
    ("timeout", "KILL", True, True),  # systemctl stop of a stuck daemon, SIGKILLed at TimeoutStopSec
    ("signal", "KILL", True, True),  # kill -9 while a stop was pending: the stop wins
    ("success", "0", False, True),  # exited 0 by itself: Restart=on-failure does not restart
    ("exit-code", "78", False, True),  # configuration error: RestartPreventExitStatus=78
    ("signal", "KILL", False, False),  # kill -9 of MainPID: restarted, jobs re-adopted
    ("core-dump", "ABRT", False, False),  # a crash
    ("watchdog", "ABRT", False, False),  # a watchdog kill
    ("exit-code", "1", False, False),  # an uncaught exception
    ("timeout", "KILL", False, False),  # a start that timed out: restarted too
])
def test_the_unit_goes_down_only_when_systemd_will_not_restart_it(result, status, pending, down):
    assert unitctl.unit_goes_down(result, status, pending)[0] is down


def listing(stdout: str, returncode: int = 0):
    return lambda *a, **k: subprocess.CompletedProcess(a, returncode, stdout, "")


def test_a_stop_or_restart_job_of_the_unit_is_a_pending_stop():
    jobs = "412 pioreactord.service stop running\n413 mosquitto.service start waiting\n"
    assert unitctl.stop_job_pending("pioreactord.service", listing(jobs)) is True
    assert unitctl.stop_job_pending("pioreactord.service",
                                    listing("7 pioreactord.service restart running\n")) is True
    assert unitctl.stop_job_pending("pioreactord.service",
                                    listing("9 pioreactord.service reload running\n")) is False
    assert unitctl.stop_job_pending("pioreactord.service", listing(jobs.replace("pio", "x"))) is False
    assert unitctl.stop_job_pending("pioreactord.service", listing("", returncode=1)) is None


def test_the_cgroup_is_found_in_v2_hybrid_and_v1_layouts(tmp_path):
    unit = "/system.slice/pioreactord.service"
    for root in ("unified", "v2", "systemd"):
        (tmp_path / root / unit.lstrip("/")).mkdir(parents=True)
        (tmp_path / root / unit.lstrip("/") / "cgroup.procs").write_text("")
    roots = [str(tmp_path / r) for r in ("unified", "v2", "systemd")]
    hybrid = f"12:memory:{unit}\n1:name=systemd:{unit}\n0::{unit}\n"
    assert unitctl.own_cgroup_dirs(hybrid, roots) == [tmp_path / r / unit.lstrip("/") for r in
                                                      ("unified", "v2", "systemd")]
    assert unitctl.own_cgroup_dirs(f"0::{unit}/.control\n", roots[1:2]) == \
        [tmp_path / "v2" / unit.lstrip("/")]
    assert unitctl.own_cgroup_dirs(f"0::{unit}\n", [str(tmp_path / "none")]) == []


def test_cgroup_members_lists_live_processes_of_every_sub_cgroup(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "sub").mkdir()
        (tmp_path / "cgroup.procs").write_text(f"{sleeper.pid}\n999999999\n")
        (tmp_path / "sub" / "cgroup.procs").write_text(f"{sleeper.pid}\n")
        assert unitctl.cgroup_members([tmp_path], exclude=set()) == {sleeper.pid: "sleep"}
        assert unitctl.cgroup_members([tmp_path], exclude={sleeper.pid}) == {}
    finally:
        sleeper.kill()
        sleeper.wait()


STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"


def test_end_all_terms_then_kills_what_ignores_sigterm():
    polite = subprocess.Popen(["sleep", "60"])
    stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)
    stubborn.stdout.readline()  # its SIGTERM handler is set
    procs = {polite.pid: polite, stubborn.pid: stubborn}
    said: list[str] = []

    def members():
        return {pid: "p" for pid, p in procs.items() if p.poll() is None}

    try:
        assert unitctl.end_all(members, said.append, term_grace=1.0, kill_grace=2.0) == {}
        assert polite.returncode == -signal.SIGTERM
        assert stubborn.returncode == -signal.SIGKILL
        assert said[0].startswith("SIGTERM to ") and said[1].startswith("still running 1 s later, SIGKILL")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_the_reload_answer_names_its_process(tmp_path):
    path = tmp_path / "exec.state"
    assert read_exec_state(path, 42) is None
    write_exec_state(path, ExecState(42, 3, True, "0.2.0 exec'd at 2026-12-02T07:00:00.000Z"))
    assert read_exec_state(path, 42) == ExecState(42, 3, True, "0.2.0 exec'd at 2026-12-02T07:00:00.000Z")
    assert read_exec_state(path, 43) is None  # another daemon's answer is no answer
    write_exec_state(path, ExecState(42, 4, False, "config rejected: bad value"))
    assert read_exec_state(path, 42).describe() == "refused: config rejected: bad value"
    assert [p.name for p in Path(tmp_path).iterdir()] == ["exec.state"]
