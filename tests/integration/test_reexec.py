"""SIGHUP (systemctl reload) re-executes the daemon in place: same pid, new code and config, the
jobs still its children and never `lost` (SPEC §7; issue 10 item 5)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pioreactord.reexec import ExecState, read_exec_state
from tests.integration.test_restart import (
    STIRRING_INI,
    alive,
    payload,
    pwms,
    say,
    start_both,
    topic,
)
from tests.support.daemon import Daemon
from tests.support.plugins import CHATTY_JOB
from tests.support.waiting import wait_for


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon(extra_ini=STIRRING_INI)
    d.add_plugin("chatty", CHATTY_JOB)
    d.inbox = d.root / "inbox"
    return d.start()


def answer(d: Daemon) -> ExecState | None:
    return read_exec_state(d.root / "run" / "exec.state", d.process.pid)


def reload(d: Daemon) -> ExecState:
    """SIGHUP, then the daemon's answer (the new image writes it once it serves again)."""
    before = answer(d)
    os.kill(d.process.pid, signal.SIGHUP)
    return wait_for(lambda: (a := answer(d)) is not None and a.seq > before.seq and a, 20,
                    "the daemon's answer to the reload")


def test_reload_re_execs_in_place_and_keeps_the_jobs_as_children(daemon, watcher):
    pids = start_both(daemon, watcher)
    server = daemon.forkserver_pid()
    readies = daemon.forkserver_readies()
    started = time.monotonic()

    state = reload(daemon)
    print(f"re-exec'd and serving {time.monotonic() - started:.2f} s after SIGHUP")
    assert state.ok and state.seq == 1, state
    assert daemon.process.poll() is None
    wait_for(lambda: {n: (r["pid"], r["state"]) for n, r in daemon.status().items()}
             == {n: (pid, "ready") for n, pid in pids.items()}, 10, "both jobs adopted")
    print(f"jobs re-adopted {time.monotonic() - started:.2f} s after SIGHUP")
    for pid in pids.values():  # still the daemon's children: nothing re-parented them
        assert psutil.Process(pid).ppid() == daemon.process.pid
    assert [(r["pin"], r["pid"]) for r in daemon.pioctl_json("locks")] == [(17, pids["stirring"])]
    # A new fork server, with the new code: the old one ended with its daemon image.
    wait_for(lambda: daemon.forkserver_readies() > readies, 15, "a new fork server ready")
    assert daemon.forkserver_pid() not in (None, server)
    assert not alive(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE

    # The job's stdout pipe was handed over: a print after the reload reaches the log.
    say(daemon.inbox, "after-reload")
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE message = 'printed after-reload'")
             == [(1,)], 5, "the print in the log")
    for job in pids:
        assert not watcher.find(topic(daemon, job, "$state"), lambda m: m.text == "lost")
    watcher.wait(pwms(daemon), since=started, predicate=lambda m: payload(m).get("17", 0) > 0)
    assert daemon.query("SELECT count(*) FROM pio_job_metadata") == [(2,)]  # the same rows
    assert daemon.query("SELECT count(*) FROM logs WHERE level IN ('ERROR', 'WARNING') "
                        "AND task != 'pioreactord'") == [(0,)]

    # Still children: a kill is decoded with its real status (an adopted non-child's is unknown).
    os.kill(pids["chatty"], signal.SIGKILL)
    wait_for(lambda: daemon.query("SELECT exit_code, end_state FROM pio_job_metadata WHERE "
                                  "job_name = 'chatty'") == [(-9, "lost")], 5, "chatty's end")
    assert daemon.stop() == 0  # and a clean stop still stops every job
    assert not alive(pids["stirring"])


def test_a_reload_with_a_broken_config_changes_nothing(daemon, watcher):
    daemon.pioctl("start", "stirring")
    pid = daemon.status()["stirring"]["pid"]
    good = daemon.config.read_text()
    daemon.config.write_text(good.replace("stop_timeout = 3", "stop_timeout = soon"))
    state = reload(daemon)
    assert not state.ok and "stop_timeout" in state.text, state
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE level = 'ERROR' AND message "
                                  "LIKE 'reload refused: config file rejected%'") == [(1,)], 5,
             "the refusal in the log (the sink commits in its own thread)")
    daemon.config.write_text(good)  # (pioctl reads the file too)
    assert daemon.status()["stirring"]["pid"] == pid  # the same image went on serving
    assert daemon.query("SELECT message FROM logs WHERE message LIKE 'reload: re-exec%'") == []
    assert reload(daemon).ok


def test_the_unit_reload_helper_returns_once_the_new_image_serves(daemon):
    daemon.pioctl("start", "stirring")
    helper = subprocess.run([sys.executable, "-I", "-m", "pioreactord.unitctl", "reload",
                             str(daemon.process.pid), "--config", str(daemon.config)],
                            capture_output=True, text=True, timeout=60, env=daemon.env)
    assert helper.returncode == 0, helper.stderr
    assert "pioreactord reload: done: pioreactord" in helper.stderr
    assert daemon.pioctl("status").returncode == 0  # serving: no wait needed
    daemon.config.write_text(daemon.config.read_text().replace("stop_timeout = 3", "stop_timeout = x"))
    helper = subprocess.run([sys.executable, "-I", "-m", "pioreactord.unitctl", "reload",
                             str(daemon.process.pid), "--config", str(daemon.config)],
                            capture_output=True, text=True, timeout=60, env=daemon.env)
    assert helper.returncode == 1 and "config rejected, nothing changed" in helper.stderr


@pytest.mark.parametrize("how", ["reload", "kill -9"])
def test_the_pin_is_never_shown_off_while_the_jobs_are_re_adopted(daemon, watcher, how):
    pids = start_both(daemon, watcher)
    started = time.monotonic()
    if how == "reload":
        reload(daemon)
    else:
        daemon.stop(signal.SIGKILL)
        daemon.start()
    wait_for(lambda: {n: r["pid"] for n, r in daemon.status().items()} == pids, 10, "adopted")
    watcher.wait(pwms(daemon), since=started, predicate=lambda m: payload(m).get("17", 0) > 0)
    shown = [m.text for m in watcher.find(pwms(daemon), since=started)]
    assert all(payload(m).get("17", 0) > 0 for m in watcher.find(pwms(daemon), since=started)), shown
