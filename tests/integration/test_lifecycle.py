"""The daemon core through its real interfaces: pioctl, the broker, SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.support.daemon import BIN
from tests.support.plugins import BROKEN_PLUGIN, SETTINGS_JOB, STUBBORN_JOB
from tests.support.waiting import wait_for


@pytest.fixture
def daemon(make_daemon, spawner):
    d = make_daemon(spawner=spawner)
    d.add_plugin("tester", SETTINGS_JOB)
    return d.start()


def topic(d, leaf: str, job: str = "tester", exp: str = "exp1") -> str:
    return f"pioreactor/{d.unit}/{exp}/{job}/{leaf}"


def test_start_publishes_state_and_settings(daemon, watcher):
    result = daemon.pioctl("start", "tester")
    assert "tester ready (pid" in result.stdout
    watcher.wait(topic(daemon, "$state"), "ready")
    watcher.wait(topic(daemon, "rate"), "1.5")  # a class default is published at ready
    watcher.wait(topic(daemon, "count"), "3")
    watcher.wait(f"pioreactor/{daemon.unit}/$experiment/pioreactord/$state", "ready")
    row = daemon.status()["tester"]
    assert row["state"] == "ready" and row["experiment"] == "exp1" and row["pid"] > 0
    assert row["settings"]["kept"] == "kept-value"
    wait_for(lambda: daemon.query("SELECT is_running, job_source FROM pio_job_metadata "
                                  "WHERE job_name='tester'") == [(1, "tester")], 5, "metadata row")


START_BURST_JOB = """
import click
from pioreactor.background_jobs.base import BackgroundJob


class Burst(BackgroundJob):
    job_name = "burst"
    published_settings = {"rate": {"datatype": "float", "settable": True},
                          "count": {"datatype": "integer", "settable": True},
                          "config": {"datatype": "json", "settable": True}}
    rate = 1.5

    def __init__(self, unit, experiment):
        super().__init__(unit=unit, experiment=experiment)
        self.count = 3
        self.config = {}
        self.config["a"] = 1  # changed in place after it was sent


@click.command(name="burst")
def click_burst():
    from pioreactor.whoami import get_latest_experiment_name, get_unit_name
    Burst(unit=get_unit_name(), experiment=get_latest_experiment_name()).block_until_disconnected()
"""


def test_a_start_sends_each_setting_once_unless_it_changed_since(make_daemon, watcher):
    daemon = make_daemon()
    daemon.add_plugin("burst", START_BURST_JOB)
    daemon.start()
    daemon.pioctl("start", "burst")
    watcher.wait(topic(daemon, "$state", job="burst"), "ready")
    payloads = {leaf: [m.payload.decode() for m in watcher.find(topic(daemon, leaf, job="burst"))]
                for leaf in ("rate", "count", "config")}
    assert payloads == {"rate": ["1.5"], "count": ["3"], "config": ["{}", '{"a":1}']}


def test_duplicate_start_refused_without_touching_the_running_job(daemon):
    daemon.pioctl("start", "tester")
    pid = daemon.status()["tester"]["pid"]
    again = daemon.pioctl("start", "tester", check=False)
    assert again.returncode == 1
    assert f"already running (pid {pid})" in again.stderr
    assert daemon.status()["tester"]["pid"] == pid
    assert daemon.status()["tester"]["state"] == "ready"


@pytest.mark.parametrize("setting, good, shown, bad", [
    ("rate", "2.5", "2.5", "fast"),
    ("count", "7", "7", "7.5"),
    ("label", "hello world", "hello world", None),
    ("enabled", "YES", "True", "maybe"),
    ("config", '{"a": [1, 2]}', '{"a":[1,2]}', "{not json"),
])
def test_pioctl_set_every_datatype(daemon, watcher, setting, good, shown, bad):
    daemon.pioctl("start", "tester")
    result = daemon.pioctl("set", "tester", setting, good)
    assert result.returncode == 0
    watcher.wait(topic(daemon, setting), shown)
    if bad is not None:
        refused = daemon.pioctl("set", "tester", setting, bad, check=False)
        assert refused.returncode == 1 and "not a valid" in refused.stderr
        assert daemon.status()["tester"]["settings"][setting] == shown
        assert daemon.status()["tester"]["state"] == "ready"


def test_read_only_and_unknown_settings_refused(daemon):
    daemon.pioctl("start", "tester")
    assert "read-only" in daemon.pioctl("set", "tester", "measured", "9", check=False).stderr
    assert "not a setting" in daemon.pioctl("set", "tester", "nope", "9", check=False).stderr
    assert daemon.status()["tester"]["settings"]["measured"] == "0.5"


def test_set_hook_is_called(daemon, watcher):
    daemon.pioctl("start", "tester")
    daemon.pioctl("set", "tester", "hooked", "4")
    watcher.wait(topic(daemon, "hooked"), "8.0")


def test_mqtt_set_good_bad_and_retained(daemon, watcher):
    daemon.pioctl("start", "tester")
    watcher.publish(topic(daemon, "rate/set"), "3.25")
    watcher.wait(topic(daemon, "rate"), "3.25")
    since = time.monotonic()
    watcher.publish(topic(daemon, "rate/set"), "abc")
    log = watcher.wait(f"pioreactor/{daemon.unit}/exp1/logs/tester/error", since=since)
    assert "abc" in json.loads(log.payload)["message"]
    watcher.publish(topic(daemon, "measured/set"), "5")
    watcher.wait(f"pioreactor/{daemon.unit}/exp1/logs/tester/warning", since=since)
    watcher.publish("pioreactor/$broadcast/exp1/tester/count/set", "11")
    watcher.wait(topic(daemon, "count"), "11")
    assert daemon.status()["tester"]["settings"]["rate"] == "3.25"


def test_retained_set_from_the_broker_store_is_ignored(make_daemon, watcher):
    d = make_daemon()
    d.add_plugin("tester", SETTINGS_JOB)
    watcher.publish(topic(d, "rate/set"), "99", retain=True)  # stored before the daemon subscribes
    try:
        d.start()
        d.pioctl("start", "tester")
        d.pioctl("set", "tester", "count", "4")  # a round trip after the store was delivered
        assert d.status()["tester"]["settings"]["rate"] == "1.5"
    finally:
        watcher.publish(topic(d, "rate/set"), "", retain=True)  # empty retained = delete it


def test_pause_and_resume(daemon, watcher):
    daemon.pioctl("start", "tester")
    daemon.pioctl("pause", "tester")
    watcher.wait(topic(daemon, "$state"), "sleeping")
    daemon.pioctl("resume", "tester")
    since = watcher.last(topic(daemon, "$state")).at
    watcher.wait(topic(daemon, "$state"), "ready", since=since)
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE task='tester' AND "
                                  "level='NOTICE' AND message='going to sleep'")[0][0] == 1,
             5, "NOTICE line in SQLite")


def test_clean_stop_is_disconnected(daemon, watcher):
    daemon.pioctl("start", "tester")
    result = daemon.pioctl("stop", "tester")
    assert "tester disconnected" in result.stdout
    watcher.wait(topic(daemon, "$state"), "disconnected")
    watcher.wait(topic(daemon, "rate"), "")  # non-persist settings cleared
    assert watcher.last(topic(daemon, "kept")).text == "kept-value"
    wait_for(lambda: daemon.query("SELECT is_running, exit_code, end_state FROM pio_job_metadata")
             == [(0, 0, "disconnected")], 5, "row closed")
    assert daemon.pioctl("status").stdout.splitlines()[-1] == "no jobs running"
    # A clean stop says nothing alarming (a self-SIGTERM during atexit once logged a traceback).
    assert daemon.query("SELECT message FROM logs WHERE task='tester' AND level='ERROR'") == []


def test_sigkill_is_lost_and_restart_works(daemon, watcher):
    daemon.pioctl("start", "tester")
    pid = daemon.status()["tester"]["pid"]
    os.kill(pid, signal.SIGKILL)
    watcher.wait(topic(daemon, "$state"), "lost")
    watcher.wait(topic(daemon, "count"), "")
    assert watcher.last(topic(daemon, "kept")).text == "kept-value"  # persist: kept
    wait_for(lambda: daemon.query("SELECT is_running, exit_code, end_state FROM pio_job_metadata")
             == [(0, -9, "lost")], 5, "row closed as lost")
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE level='ERROR' AND "
                                  "message LIKE 'tester killed by SIGKILL%'")[0][0] == 1, 5, "log")
    assert "tester ready" in daemon.pioctl("start", "tester").stdout


def test_exception_in_init_fails_the_start(daemon):
    result = daemon.pioctl("start", "tester", "--fail", check=False)
    assert result.returncode == 1
    assert "tester refuses to start: fail requested" in result.stderr
    assert "Traceback" in result.stderr
    assert daemon.status() == {}


def test_unknown_job_and_bad_option(daemon):
    unknown = daemon.pioctl("start", "no_such_job", check=False)
    assert unknown.returncode == 1 and "unknown job 'no_such_job'" in unknown.stderr
    bad = daemon.pioctl("start", "tester", "--bogus", check=False)
    assert bad.returncode == 1 and "No such option" in bad.stderr


def test_stop_escalates_to_sigkill(make_daemon, watcher, spawner):
    d = make_daemon(stop_timeout=1, spawner=spawner)
    d.add_plugin("stubborn", STUBBORN_JOB)
    d.start()
    d.pioctl("start", "stubborn")
    began = time.monotonic()
    result = d.pioctl("stop", "stubborn")
    assert "stubborn lost" in result.stdout
    assert time.monotonic() - began < 1 + 2 + 3  # stop_timeout + SIGKILL delay + slack
    watcher.wait(f"pioreactor/{d.unit}/exp1/stubborn/$state", "lost")


def test_daemon_sigterm_stops_jobs_cleanly(daemon, watcher):
    daemon.pioctl("start", "tester")
    assert daemon.stop(signal.SIGTERM) == 0
    watcher.wait(topic(daemon, "$state"), "disconnected")
    watcher.wait(f"pioreactor/{daemon.unit}/$experiment/pioreactord/$state", "disconnected")
    assert daemon.query("SELECT is_running, end_state FROM pio_job_metadata") == [(0, "disconnected")]


def test_pioctl_without_daemon_exits_3(make_daemon):
    d = make_daemon()
    result = d.pioctl("status", check=False)
    assert result.returncode == 3
    assert "pioreactord is not reachable" in result.stderr and "Traceback" not in result.stderr


def test_jobs_lists_plugins_and_broken_ones(daemon):
    daemon.add_plugin("broken", BROKEN_PLUGIN)
    entries = {e["name"]: e for e in daemon.pioctl_json("jobs")}
    assert entries["tester"]["error"] is None and entries["tester"]["source"] == "tester"
    assert "this_module_does_not_exist" in entries["broken"]["error"]
    assert "tester ready" in daemon.pioctl("start", "tester").stdout  # the broken one hurts nobody


def test_logs_reach_sqlite_and_pioctl_logs(daemon):
    daemon.pioctl("start", "tester")
    daemon.pioctl("stop", "tester")
    wait_for(lambda: "cleaning up tester" in daemon.pioctl("logs", "--job", "tester").stdout, 5,
             "pioctl logs")
    lines = daemon.pioctl("logs", "--json", "--level", "WARNING", "-n", "50").stdout.splitlines()
    assert all(json.loads(line)["level"] in ("WARNING", "ERROR", "CRITICAL") for line in lines)
    debug = daemon.query("SELECT count(*) FROM logs WHERE level='DEBUG'")[0][0]
    assert debug > 0  # DEBUG lines are stored too


def test_experiment_change_applies_to_new_jobs(daemon, watcher):
    assert daemon.pioctl("experiment").stdout.strip() == "exp1"
    daemon.pioctl("experiment", "exp2")
    daemon.pioctl("start", "tester")
    watcher.wait(topic(daemon, "$state", exp="exp2"), "ready")
    assert daemon.status()["tester"]["experiment"] == "exp2"



def test_sigterm_while_the_broker_is_down_exits_0(make_daemon):
    from tests.support.broker import free_port

    d = make_daemon()
    text = d.config.read_text().replace(f"broker_port = {d.broker_port}", f"broker_port = {free_port()}")
    d.config.write_text(text)  # nothing listens there: paho keeps retrying
    d.start()
    assert d.stop(signal.SIGTERM) == 0


def test_config_error_exits_78_naming_the_key(make_daemon):
    d = make_daemon()
    d.config.write_text(d.config.read_text().replace("hardware = simulated", "hardware = quantum"))
    run = subprocess.run([str(BIN / "pioreactord"), "--config", str(d.config)], env=d.env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 78
    assert "hardware" in run.stderr and "quantum" in run.stderr and "Traceback" not in run.stderr


def test_a_silent_job_is_reported_not_stopped(make_daemon):
    d = make_daemon()
    d.config.write_text(d.config.read_text().replace("stop_timeout = 3",
                                                     "stop_timeout = 3\nsilent_job_warning = 1"))
    d.add_plugin("tester", SETTINGS_JOB)
    d.start()
    d.pioctl("start", "tester")
    pid = d.status()["tester"]["pid"]
    os.kill(pid, signal.SIGSTOP)  # no more pings
    try:
        wait_for(lambda: d.query("SELECT count(*) FROM logs WHERE task='tester' AND level='WARNING' "
                                 "AND message LIKE 'tester (pid %) has sent nothing for %'")[0][0] == 1,
                 10, "the silence warning")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert d.status()["tester"]["pid"] == pid
    assert "tester disconnected" in d.pioctl("stop", "tester").stdout
