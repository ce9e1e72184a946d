"""Remote control over MQTT (SPEC §4): $state/set, run/{job}, $broadcast, experiments, many units.

Nothing-happened assertions use a barrier: after the ignored message, a message that does act
(here usually an unknown state, which logs a WARNING) is sent on the same connection; broker
ordering then proves the ignored one was processed first.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.plugins import OPTIONS_JOB, SETTINGS_JOB
from tests.support.waiting import wait_for


@pytest.fixture
def daemon(make_daemon):
    return _started(make_daemon())


def _started(d):
    d.add_plugin("tester", SETTINGS_JOB)
    d.add_plugin("optioned", OPTIONS_JOB)
    return d.start()


def topic(d, leaf: str, job: str = "tester", exp: str = "exp1", unit: str | None = None) -> str:
    return f"pioreactor/{unit or d.unit}/{exp}/{job}/{leaf}"


def run_topic(d, job: str, exp: str = "exp1", unit: str | None = None) -> str:
    return f"pioreactor/{unit or d.unit}/{exp}/run/{job}"


def daemon_log(d, watcher, level: str, contains: str, since: float, exp: str = "exp1") -> dict:
    """Wait for a pioreactord line on MQTT and in SQLite; return the MQTT payload."""
    seen = watcher.wait(f"pioreactor/{d.unit}/{exp}/logs/app/{level}", since=since,
                        predicate=lambda m: contains in json.loads(m.payload)["message"])
    line = json.loads(seen.payload)
    assert line["task"] == "pioreactord" and line["level"] == level.upper()
    wait_for(lambda: d.query("SELECT count(*) FROM logs WHERE task='pioreactord' AND level=? "
                             "AND message LIKE ?", (level.upper(), f"%{contains}%"))[0][0] >= 1,
             5, f"{level} line in SQLite")
    return line


def barrier(d, watcher, unit: str | None = None) -> None:
    """Everything published before this has been handled by the daemon."""
    since = time.monotonic()
    watcher.publish(topic(d, "$state/set", job="barrier", unit=unit), "barrier-mark")
    daemon_log(d, watcher, "warning", "'barrier-mark'", since)


# --- $state/set ------------------------------------------------------------------------------
def test_state_set_starts_pauses_resumes_and_stops(daemon, watcher):
    watcher.publish(topic(daemon, "$state/set"), "ready")
    watcher.wait(topic(daemon, "$state"), "ready")
    watcher.wait(topic(daemon, "rate"), "1.5")  # config defaults: no arguments
    pid = daemon.status()["tester"]["pid"]
    watcher.publish(topic(daemon, "$state/set"), "sleeping")
    watcher.wait(topic(daemon, "$state"), "sleeping")
    since = time.monotonic()
    watcher.publish(topic(daemon, "state/set"), "ready")  # the alias resumes
    watcher.wait(topic(daemon, "$state"), "ready", since=since)
    assert daemon.status()["tester"]["pid"] == pid  # resumed, not restarted
    watcher.publish(topic(daemon, "$state/set"), "disconnected")
    watcher.wait(topic(daemon, "$state"), "disconnected")
    wait_for(lambda: daemon.status() == {}, 10, "tester gone")


def test_sleeping_a_stopped_job_is_ignored_and_unknown_states_warn(daemon, watcher):
    watcher.publish(topic(daemon, "$state/set"), "sleeping")
    watcher.publish(topic(daemon, "$state/set"), "disconnected")
    since = time.monotonic()
    watcher.publish(topic(daemon, "$state/set"), "dancing")
    line = daemon_log(daemon, watcher, "warning", "unknown state 'dancing'", since)
    assert "tester/$state/set" in line["message"]
    assert daemon.status() == {}
    assert watcher.find(topic(daemon, "$state")) == []


def test_unknown_state_leaves_a_running_job_alone(daemon, watcher):
    daemon.pioctl("start", "tester")
    since = time.monotonic()
    watcher.publish(topic(daemon, "$state/set"), "init")
    daemon_log(daemon, watcher, "warning", "unknown state 'init'", since)
    assert daemon.status()["tester"]["state"] == "ready"


# --- run/{job} -------------------------------------------------------------------------------
def test_run_passes_options_and_args(daemon, watcher):
    payload = {"options": {"initial_dc": 10, "dry_run": None, "fast": False}, "args": ["abc"]}
    watcher.publish(run_topic(daemon, "optioned"), json.dumps(payload))
    watcher.wait(topic(daemon, "$state", job="optioned"), "ready")
    assert watcher.last(topic(daemon, "initial_dc", job="optioned")).text == "10.0"
    assert watcher.last(topic(daemon, "dry_run", job="optioned")).text == "True"
    assert watcher.last(topic(daemon, "fast", job="optioned")).text == "False"
    assert watcher.last(topic(daemon, "extra", job="optioned")).text == "abc"


def test_run_with_true_and_no_options(daemon, watcher):
    watcher.publish(run_topic(daemon, "optioned"), json.dumps({"options": {"fast": True}}))
    watcher.wait(topic(daemon, "$state", job="optioned"), "ready")
    assert watcher.last(topic(daemon, "fast", job="optioned")).text == "True"
    watcher.publish(run_topic(daemon, "tester"), "{}")
    watcher.wait(topic(daemon, "$state"), "ready")


@pytest.mark.parametrize("job, payload, says", [
    ("tester", "{not json", "run/tester refused: payload is not valid JSON"),
    ("tester", "[1, 2]", "run/tester refused: payload must be a JSON object, not list"),
    ("tester", '{"options": 3}', "run/tester refused: options must be a JSON object"),
    ("no_such_job", "{}", "run/no_such_job failed: unknown job 'no_such_job'"),
    ("tester", '{"options": {"bogus": 1}}', "run/tester failed: tester failed during start"),
    ("optioned", '{"options": {"dry_run": false}}', "run/optioned failed: optioned failed during start"),
])
def test_bad_run_requests_are_errors_and_start_nothing(daemon, watcher, job, payload, says):
    since = time.monotonic()
    watcher.publish(run_topic(daemon, job), payload)
    line = daemon_log(daemon, watcher, "error", says, since)
    if job == "optioned":
        assert "--no-dry-run" in line["message"]  # the job's own click error, named
    assert daemon.status() == {}
    watcher.publish(run_topic(daemon, "tester"), "{}")  # the daemon goes on
    watcher.wait(topic(daemon, "$state"), "ready")


def test_run_of_a_running_job_is_refused_like_pioctl(daemon, watcher):
    daemon.pioctl("start", "tester")
    pid = daemon.status()["tester"]["pid"]
    since = time.monotonic()
    watcher.publish(run_topic(daemon, "tester"), "{}")
    daemon_log(daemon, watcher, "error", f"tester is already running (pid {pid})", since)
    assert daemon.status()["tester"]["pid"] == pid


# --- experiments -----------------------------------------------------------------------------
def test_wrong_experiment_is_ignored_with_a_log_line(daemon, watcher):
    since = time.monotonic()
    watcher.publish(topic(daemon, "$state/set", exp="other"), "ready")
    daemon_log(daemon, watcher, "warning", "ignored tester/$state/set for experiment 'other'", since)
    watcher.publish(run_topic(daemon, "tester", exp="other"), "{}")
    daemon_log(daemon, watcher, "warning", "ignored run/tester for experiment 'other'", since)
    assert daemon.status() == {}


def test_dollar_experiment_runs_the_job_under_dollar_experiment(daemon, watcher):
    watcher.publish(topic(daemon, "$state/set", exp="$experiment"), "ready")
    watcher.wait(topic(daemon, "$state", exp="$experiment"), "ready")
    assert daemon.status()["tester"]["experiment"] == "$experiment"
    watcher.publish(topic(daemon, "$state/set", exp="$experiment"), "disconnected")
    watcher.wait(topic(daemon, "$state", exp="$experiment"), "disconnected")


def test_assignment_retained_is_followed_and_running_jobs_keep_theirs(make_daemon, watcher):
    d = make_daemon()
    assignment = f"pioreactor/{d.unit}/$experiment/assignment"
    watcher.publish(assignment, json.dumps({"experiment": "exp9"}), retain=True)
    try:
        _started(d)
        wait_for(lambda: d.pioctl("experiment").stdout.strip() == "exp9", 10, "exp9 assigned")
        d.pioctl("start", "tester")
        watcher.publish(assignment, json.dumps({"experiment": "exp10"}), retain=True)
        wait_for(lambda: d.pioctl("experiment").stdout.strip() == "exp10", 10, "exp10 assigned")
        assert d.status()["tester"]["experiment"] == "exp9"
        for bad, says in [("not json", "JSONDecodeError"), ('{"name": "x"}', "KeyError"),
                          ('{"experiment": 5}', "must be a string"),
                          ('{"experiment": "a/b"}', "not a valid experiment name")]:
            since = time.monotonic()
            watcher.publish(assignment, bad)
            daemon_log(d, watcher, "error", says, since, exp="exp10")
        assert d.pioctl("experiment").stdout.strip() == "exp10"
        assert (d.root / "state" / "experiment").read_text().strip() == "exp10"  # persisted
    finally:
        watcher.publish(assignment, "", retain=True)


# --- retained, $broadcast, many units --------------------------------------------------------
def test_retained_ready_never_starts_a_job_after_a_restart(make_daemon, watcher):
    d = make_daemon()
    # resume_jobs would start the stopped tester again (by design): this test is about MQTT only.
    d.config.write_text(d.config.read_text().replace("stop_timeout = 3",
                                                     "stop_timeout = 3\nresume_jobs = 0"))
    d = _started(d)
    stale = topic(d, "$state/set")
    try:
        watcher.publish(stale, "ready", retain=True)  # live: it acts
        watcher.wait(topic(d, "$state"), "ready")
        assert d.stop() == 0
        watcher.publish(run_topic(d, "optioned"), "{}", retain=True)  # stored while it is down
        since = time.monotonic()
        d.start()
        watcher.wait(f"pioreactor/{d.unit}/$experiment/pioreactord/$state", "ready", since=since)
        barrier(d, watcher)  # the store was delivered on subscribe, before this
        assert d.status() == {}
    finally:
        watcher.publish(stale, "", retain=True)
        watcher.publish(run_topic(d, "optioned"), "", retain=True)


def test_broadcast_reaches_every_unit_and_a_unit_topic_only_one(make_daemon, watcher):
    a, b = _started(make_daemon()), _started(make_daemon())
    assert a.unit != b.unit
    watcher.publish("pioreactor/$broadcast/exp1/tester/$state/set", "ready")
    for d in (a, b):
        watcher.wait(topic(d, "$state"), "ready")
    watcher.publish(topic(a, "$state/set"), "disconnected")
    watcher.wait(topic(a, "$state"), "disconnected")
    watcher.publish(topic(b, "rate/set"), "4.5")
    watcher.wait(topic(b, "rate"), "4.5")  # b handled everything published before this
    assert b.status()["tester"]["state"] == "ready" and a.status() == {}
    watcher.publish("pioreactor/$broadcast/exp1/run/optioned", '{"options": {"initial_dc": 3}}')
    for d in (a, b):
        watcher.wait(topic(d, "initial_dc", job="optioned"), "3.0")
