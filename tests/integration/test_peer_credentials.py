"""Who is on the job socket is what the kernel says (SO_PEERCRED), never what a message claims
(issue 12 item 1): raw ZeroMQ clients try to register with other processes' pids."""

from __future__ import annotations

import os
import subprocess

import pytest

from pioreactord.client import call
from tests.support.plugins import SETTINGS_JOB
from tests.support.waiting import wait_for


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon()
    d.add_plugin("tester", SETTINGS_JOB)
    return d.start()


def register(d, name: str, pid: int) -> dict:
    return call(str(d.root / "run" / "jobs.sock"),
                {"t": "register", "job_name": name, "pid": pid, "token": None,
                 "experiment": "exp1", "source": "app", "settings": {}}, timeout=5)


def warned(d, text: str) -> bool:
    rows = d.query("SELECT count(*) FROM logs WHERE level = 'WARNING' AND message LIKE ?",
                   (f"%{text}%",))
    return rows[0][0] > 0


@pytest.mark.parametrize("claim", ["victim", "zero", "minus_one"])
def test_a_registration_claiming_another_pid_is_refused_and_nothing_is_signalled(daemon, claim):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        pid = {"victim": victim.pid, "zero": 0, "minus_one": -1}[claim]
        reply = register(daemon, "stirring", pid)
        assert (reply["ok"], reply["code"]) == (False, "refused")
        assert f"pid {pid} is not the pid of this connection" in reply["error"]
        wait_for(lambda: warned(daemon, f"refused the registration of stirring: it claims pid {pid}, "
                                        f"but the connection is pid {os.getpid()}"), 5, "the WARNING")
        stop = daemon.pioctl("stop", "stirring", check=False)
        assert stop.returncode == 1 and "not running" in stop.stderr
        assert victim.poll() is None and daemon.process.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_a_running_jobs_name_and_pid_cannot_be_taken_over(daemon):
    """Claiming a running job's own name and pid was the re-adoption path: it took the job's
    identity (its setting requests went to the impostor)."""
    daemon.pioctl("start", "tester")
    real_pid = daemon.status()["tester"]["pid"]
    reply = register(daemon, "tester", real_pid)
    assert (reply["ok"], reply["code"]) == (False, "refused")
    daemon.pioctl("set", "tester", "count", "4")  # still answered by the real job
    assert daemon.status()["tester"]["settings"]["count"] == "4"
    assert "tester disconnected" in daemon.pioctl("stop", "tester").stdout
