"""Names that would break MQTT (issue 12 item 5, the name rule of item 4): refused where they
enter, with a line that says why, and mosquitto never drops the daemon's connection.

"Still connected" is shown two ways: the daemon's `$state` never turns `lost` (its last will,
which the broker publishes when it drops the connection), and a fresh action still reaches the
broker through the daemon afterwards.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.plugins import SETTINGS_JOB
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

WEIRD_JOB_NAME = SETTINGS_JOB.replace('job_name = "tester"', 'job_name = "we+ird"').replace(
    'name="tester"', 'name="weird"')


def daemon_state(d) -> str:
    return f"pioreactor/{d.unit}/$experiment/pioreactord/$state"


def assert_still_connected(d, watcher, exp: str = "exp1") -> None:
    since = time.monotonic()
    d.pioctl("start", "led_intensity", "--A", "7")
    watcher.wait(f"pioreactor/{d.unit}/{exp}/leds/intensity", since=since,
                 predicate=lambda m: json.loads(m.payload).get("A") == 7)
    assert [m.text for m in watcher.find(daemon_state(d))][-1:] == ["ready"]
    assert not watcher.find(daemon_state(d), lambda m: m.text == "lost")


def sqlite_lines(d, level: str, contains: str) -> list[str]:
    return [r[0] for r in d.query("SELECT message FROM logs WHERE task='pioreactord' AND level=? "
                                  "AND message LIKE ?", (level, f"%{contains}%"))]


def test_pioctl_refuses_an_experiment_with_a_control_character(make_daemon, watcher):
    d = make_daemon().start()
    watcher.wait(daemon_state(d), "ready")
    result = d.pioctl("experiment", "exp\x01b", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "control character U+0001" in result.stderr
    assert "not a valid experiment name" in result.stderr
    assert d.pioctl("experiment").stdout.strip() == "exp1"
    for bad in ("a/b", "x+y", "$experiment"):
        assert d.pioctl("experiment", bad, check=False).returncode == 1
    assert_still_connected(d, watcher)


def test_an_mqtt_assignment_with_a_bad_name_is_refused_with_an_error(make_daemon, watcher):
    d = make_daemon().start()
    watcher.wait(daemon_state(d), "ready")
    watcher.publish(f"pioreactor/{d.unit}/$experiment/assignment",
                    json.dumps({"experiment": "exp\x01b"}))
    wait_for(lambda: sqlite_lines(d, "ERROR", "ignored experiment assignment"), 10,
             "the refusal in the log")
    assert "control character U+0001" in sqlite_lines(d, "ERROR", "ignored experiment")[0]
    assert d.pioctl("experiment").stdout.strip() == "exp1"
    assert_still_connected(d, watcher)
    watcher.publish(f"pioreactor/{d.unit}/$experiment/assignment",
                    json.dumps({"experiment": "exp2"}))  # a good one still works
    wait_for(lambda: d.pioctl("experiment").stdout.strip() == "exp2", 10, "exp2 assigned")


def test_a_persisted_bad_experiment_is_ignored_at_start_with_an_error(make_daemon, watcher):
    d = make_daemon()
    (d.root / "state").mkdir(parents=True, exist_ok=True)
    (d.root / "state" / "experiment").write_text("exp\x01b\n", encoding="utf-8")
    d.start()
    assert d.pioctl("experiment").stdout.strip() == "exp1"
    wait_for(lambda: sqlite_lines(d, "ERROR", "ignored the persisted experiment"), 10,
             "the ERROR about the persisted name")
    assert "U+0001" in sqlite_lines(d, "ERROR", "ignored the persisted experiment")[0]
    watcher.wait(daemon_state(d), "ready")
    assert_still_connected(d, watcher)


def test_plugins_whose_names_break_the_rule_are_listed_broken_and_never_start(make_daemon, watcher):
    d = make_daemon()
    d.add_plugin("evil+name", SETTINGS_JOB)
    d.add_plugin("weird", WEIRD_JOB_NAME)
    d.add_plugin("fine", SETTINGS_JOB)
    d.start()
    entries = {e["origin"].rsplit("/", 1)[-1]: e for e in d.pioctl_json("jobs")}
    assert "not a valid plugin name" in entries["evil+name.py"]["error"]
    assert "'we+ird' is not a valid job name" in entries["weird.py"]["error"]
    assert entries["fine.py"]["error"] is None and entries["fine.py"]["name"] == "tester"
    refused = d.pioctl("start", "weird", check=False)
    assert refused.returncode == 1 and "weird" in refused.stderr
    bad_name = d.pioctl("start", "we+ird", check=False)
    assert bad_name.returncode == 1 and "not a valid job name" in bad_name.stderr
    d.pioctl("start", "tester")
    watcher.wait(f"pioreactor/{d.unit}/exp1/tester/$state", "ready")
    assert_still_connected(d, watcher)


def test_a_hand_run_job_with_a_bad_name_is_refused_at_registration(make_daemon, watcher):
    d = make_daemon().start()
    script = d.root / "weird_by_hand.py"
    script.write_text(WEIRD_JOB_NAME + "\nif __name__ == '__main__':\n    click_tester()\n")
    process = d.run_by_hand(script)
    _, err = process.communicate(timeout=30)
    assert process.returncode != 0 and "not a valid job name" in err
    assert_still_connected(d, watcher)


def test_pioctl_mqtt_refuses_a_malformed_filter(make_daemon, watcher):
    d = make_daemon().start()
    result = d.pioctl("mqtt", "-t", "pioreactor/#/x", "-n", "1", check=False, timeout=20)
    assert result.returncode == 1 and "'#' must be the last level" in result.stderr
    assert_still_connected(d, watcher)
