"""pioctl against a real daemon: "cannot be reached" (exit 3, at once, saying why) apart from
"refused" and "timed out" (exit 1); `pioctl version`; the broker, sink and version lines of
`pioctl status`; and the daemon logging who asked for each change (the kernel's uid)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time

import pytest

from tests.support.daemon import BIN
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
TEST_USER = "pioctl-test"


def timed(d, *args, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    result = d.pioctl(*args, check=False, **kwargs)
    return result, time.monotonic() - began


def test_no_daemon_is_exit_3_at_once_with_the_socket_and_the_reason(make_daemon):
    d = make_daemon()  # configured, never started
    for args in (["status"], ["--json", "locks"], ["set", "a", "b", "c"], ["stop", "x"]):
        result, took = timed(d, *args)
        assert result.returncode == 3 and took < 1.0, (args, took, result.stderr)
        assert str(d.root / "run" / "control.sock") in result.stderr
        assert "not running" in result.stderr and "systemctl start pioreactord" in result.stderr
        assert result.stderr.count("\n") == 1


def test_a_stale_socket_is_exit_3_at_once_not_a_wait(make_daemon):
    d = make_daemon().start()
    d.process.send_signal(signal.SIGKILL)
    d.process.wait(10)
    assert (d.root / "run" / "control.sock").exists()  # what a killed daemon leaves behind
    for args in (["set", "tester", "rate", "2"], ["stop", "tester"], ["locks"], ["version"]):
        result, took = timed(d, *args)
        assert result.returncode == 3 and took < 1.0, (args, took, result.stderr)
        assert "stale socket" in result.stderr and "control.sock" in result.stderr


def test_refused_and_timed_out_are_exit_1_and_say_which(make_daemon):
    d = make_daemon().start()
    refused, took = timed(d, "stop", "nothing_here")
    assert refused.returncode == 1 and "not running: nothing_here" in refused.stderr
    d.process.send_signal(signal.SIGSTOP)  # connected, but nobody answers
    try:
        hung, took = timed(d, "start", "--timeout", "0.5", "led_intensity")
    finally:
        d.process.send_signal(signal.SIGCONT)
    assert hung.returncode == 1 and took < 5
    assert "timed out" in hung.stderr and "'start' within 0.5 s" in hung.stderr


def test_version_names_client_and_daemon(make_daemon):
    from pioreactord import __version__

    d = make_daemon().start()
    info = d.pioctl_json("version")
    assert info["client"] == info["daemon"] == __version__
    assert info["daemon_pid"] == d.process.pid
    assert info["daemon_started_at"].endswith("Z") and info["daemon_exec_at"].endswith("Z")
    text = d.pioctl("version").stdout.splitlines()
    assert text[0].split() == ["client", __version__]
    assert text[1].startswith(f"daemon  {__version__} (pid {d.process.pid}, started ")


def test_version_without_a_daemon_still_tells_the_client(make_daemon):
    from pioreactord import __version__

    result, took = timed(make_daemon(), "version")
    assert result.returncode == 3 and result.stdout.split() == ["client", __version__]


def test_status_shows_broker_and_sink_above_the_jobs_and_each_job_version(make_daemon):
    from pioreactord import __version__

    d = make_daemon().start()
    wait_for(lambda: "connected" in d.pioctl("status").stdout.splitlines()[0], 10,
             "the broker line")
    lines = d.pioctl("status").stdout.splitlines()
    assert lines[0].startswith("broker ") and "NOT" not in lines[0]
    assert lines[-1] == "no jobs running"
    d.add_plugin("tester", _tester())
    d.pioctl("start", "tester")
    lines = d.pioctl("status").stdout.splitlines()
    header = next(line for line in lines if line.startswith("JOB"))
    assert "VERSION" in header.split()
    row = next(line for line in lines if line.startswith("tester"))
    assert __version__ in row.split()
    rows = d.pioctl_json("status")  # SPEC: still a plain list
    assert isinstance(rows, list) and rows[0]["version"] == __version__


def _tester() -> str:
    from tests.support.plugins import SETTINGS_JOB

    return SETTINGS_JOB


def test_changes_are_logged_with_the_callers_uid(make_daemon):
    d = make_daemon().start()
    d.pioctl("experiment", "exp2")
    d.pioctl("status")  # read-only: not logged
    wait_for(lambda: _control_lines(d), 10, "the control request in the log")
    lines = _control_lines(d)
    assert len(lines) == 1 and "experiment name='exp2'" in lines[0]
    assert f"uid={os.getuid()} " in lines[0]


def _control_lines(d) -> list[str]:
    return [r[0] for r in d.query("SELECT message FROM logs WHERE task='pioreactord' AND "
                                  "message LIKE 'control request%'")]


@pytest.fixture
def other_user():
    """A second Unix user, created for the test and removed after it."""
    if os.geteuid() != 0:
        reason = "needs root to create a second Unix user (useradd)"
        if os.environ.get("PIOREACTORD_REQUIRE_ROOT"):
            pytest.fail(reason)  # CI runs as root: there, a skip would prove nothing
        pytest.skip(reason)
    subprocess.run(["userdel", TEST_USER], capture_output=True)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    TEST_USER], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(TEST_USER)
    finally:
        subprocess.run(["userdel", TEST_USER], capture_output=True)


def _as_user(user, d, *args: str) -> subprocess.CompletedProcess:
    def drop() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return subprocess.run([str(BIN / "pioctl"), *args], env=d.env, capture_output=True,
                          text=True, timeout=30, preexec_fn=drop)


def test_another_user_is_told_permission_denied_and_its_uid_is_logged(make_daemon, other_user):
    d = make_daemon().start()
    for path in (d.root, d.root / "run"):  # the config and the folder readable, the socket not
        os.chmod(path, 0o755)
    os.chmod(d.config, 0o644)
    began = time.monotonic()
    denied = _as_user(other_user, d, "stop", "--all")
    assert denied.returncode == 3 and time.monotonic() - began < 2
    assert "permission denied" in denied.stderr and "group pioreactor" in denied.stderr
    assert "control.sock" in denied.stderr and "systemctl start" not in denied.stderr
    assert not _control_lines(d)
    os.chmod(d.root / "run" / "control.sock", 0o666)  # now let it in: who does the log name?
    allowed = _as_user(other_user, d, "--json", "stop", "--all")
    assert allowed.returncode == 0, allowed.stderr
    wait_for(lambda: _control_lines(d), 10, "the control request in the log")
    assert f"uid={other_user.pw_uid} " in _control_lines(d)[0]
    assert json.loads(allowed.stdout) == []
