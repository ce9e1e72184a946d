"""What the daemon records and logs about jobs, through the real daemon: the experiment a job
asks for (`$experiment`), the long-running flag and `stop --all`, the log lines Pioreactor's
tools and log-forwarding plugins read, and a start of a job whose plugin failed to import."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time

import pytest

from tests.support.plugin_api import BROKEN_BUBBLER, FORWARDER, RESUBSCRIBER, UNIVERSAL_BY_HAND
from tests.support.plugins import SETTINGS_JOB
from tests.support.waiting import wait_for


@pytest.fixture
def webhook():
    """A chat webhook: records the JSON posted to it."""
    posted: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", posted
    server.shutdown()
    server.server_close()


@pytest.fixture
def daemon(make_daemon, webhook):
    d = make_daemon(extra_ini=f"[forwarder]\nwebhook_url = {webhook[0]}\nlog_level = INFO\n")
    d.add_plugin("forwarder_plugin", FORWARDER)
    d.add_plugin("resub_plugin", RESUBSCRIBER)
    d.add_plugin("tester", SETTINGS_JOB)
    d.add_plugin("pioreactor_broken_bubbler", BROKEN_BUBBLER)
    return d.start()


def rows(d, job: str) -> list[tuple]:
    return d.query("SELECT experiment, is_long_running_job, job_source FROM pio_job_metadata "
                   "WHERE job_name = ?", (job,))


def test_a_long_running_universal_job_is_recorded_so_and_spared_by_stop_all(daemon, watcher):
    unit = daemon.unit
    daemon.pioctl("start", "forwarder")
    watcher.wait(f"pioreactor/{unit}/$experiment/forwarder/$state", "ready")
    daemon.pioctl("start", "resubscriber")
    assert daemon.status()["forwarder"]["experiment"] == "$experiment"
    wait_for(lambda: rows(daemon, "forwarder") == [("$experiment", 1, "forwarder_plugin")], 5, "row")
    wait_for(lambda: rows(daemon, "resubscriber") == [("exp1", 0, "resub_plugin")], 5, "row")
    stopped = daemon.pioctl_json("stop", "--all")
    assert [s["job_name"] for s in stopped] == ["resubscriber"]
    assert set(daemon.status()) == {"forwarder"}
    daemon.pioctl("stop", "forwarder")  # named, it stops
    watcher.wait(f"pioreactor/{unit}/$experiment/forwarder/$state", "disconnected")


def test_a_job_run_by_hand_under_experiment_publishes_there(daemon, watcher):
    script = daemon.root / "everywhere.py"
    script.write_text(UNIVERSAL_BY_HAND)
    process = daemon.run_by_hand(script)
    try:
        watcher.wait(f"pioreactor/{daemon.unit}/$experiment/everywhere/$state", "ready", timeout=15)
        watcher.wait(f"pioreactor/{daemon.unit}/$experiment/everywhere/note", "hi")
        wait_for(lambda: rows(daemon, "everywhere")[:1] == [("$experiment", 0, "everywhere")], 5, "row")
        daemon.pioctl("stop", "everywhere")
        process.wait(10)
    finally:
        process.kill()
        process.wait(5)


def test_the_log_lines_pioreactors_tools_read(daemon, watcher, webhook):
    unit = daemon.unit
    _, posted = webhook
    daemon.pioctl("start", "forwarder")
    daemon.pioctl("start", "tester")
    daemon.pioctl("set", "tester", "rate", "2.5")
    daemon.pioctl("pause", "tester")
    daemon.pioctl("resume", "tester")
    daemon.pioctl("stop", "tester")

    def lines() -> list[tuple]:
        return daemon.query("SELECT level, message FROM logs WHERE task = 'tester' ORDER BY rowid")

    wait_for(lambda: ("INFO", "Disconnected.") in lines(), 10, "Disconnected.")
    seen = lines()
    for line in [("DEBUG", "Init."), ("INFO", "Ready."), ("INFO", "Updated rate from 1.5 mL to 2.5 mL."),
                 ("DEBUG", "Sleeping."), ("INFO", "Disconnected.")]:
        assert line in seen, (line, seen)
    assert seen.index(("DEBUG", "Init.")) < seen.index(("INFO", "Ready.")) < seen.index(("DEBUG", "Sleeping."))
    ready = watcher.wait(f"pioreactor/{unit}/exp1/logs/tester/info",
                         predicate=lambda m: json.loads(m.payload)["message"] == "Ready.")
    assert json.loads(ready.payload)["task"] == "tester"
    # a log forwarder (logs2slack's shape) gets them at INFO and up, DEBUG filtered by its level
    wait_for(lambda: any(p["text"] == f"[INFO] [{unit}] [tester] Disconnected." for p in posted), 10,
             "the forwarded Disconnected.")
    assert any(p["text"] == f"[INFO] [{unit}] [tester] Updated rate from 1.5 mL to 2.5 mL." for p in posted)
    assert not any("Sleeping." in p["text"] for p in posted)


def test_a_percent_setting_logs_without_a_space(make_daemon):
    d = make_daemon()
    d.add_plugin("pct", SETTINGS_JOB.replace('"unit": "mL"', '"unit": "%"'))
    d.start()
    d.pioctl("start", "tester")
    d.pioctl("set", "tester", "rate", "25")
    wait_for(lambda: d.query("SELECT 1 FROM logs WHERE task = 'tester' AND level = 'INFO' AND "
                             "message = 'Updated rate from 1.5% to 25.0%.'"), 10, "the % line")


def test_a_crash_logs_lost_at_info_after_the_error(daemon, watcher):
    daemon.pioctl("start", "tester")
    pid = daemon.status()["tester"]["pid"]
    os.kill(pid, signal.SIGKILL)
    watcher.wait(f"pioreactor/{daemon.unit}/exp1/tester/$state", "lost")

    def ending() -> list[tuple]:
        return daemon.query("SELECT level, message FROM logs WHERE task = 'tester' AND "
                            "(level = 'ERROR' OR message = 'Lost.') ORDER BY rowid")

    wait_for(lambda: ("INFO", "Lost.") in ending(), 10, "Lost.")
    levels = [level for level, _ in ending()]
    assert levels[-2:] == ["ERROR", "INFO"] and "SIGKILL" in ending()[-2][1]


def test_starting_a_job_whose_plugin_failed_to_import_says_so_and_starts_nothing(daemon, watcher):
    since = time.monotonic()
    result = daemon.pioctl("start", "broken_bubbler", check=False)
    assert result.returncode == 1
    assert ("broken_bubbler: plugin pioreactor_broken_bubbler failed to import: ImportError: "
            "cannot import name 'BackgroundJobWithDodgingContribThatIsNot'") in result.stderr
    assert "unknown job" not in result.stderr
    assert daemon.query("SELECT * FROM pio_job_metadata WHERE job_name = 'broken_bubbler'") == []
    assert not [m for m in watcher.messages if m.at >= since and "/broken_bubbler/" in m.topic]
    other = daemon.pioctl("start", "no_such_job", check=False)
    assert other.returncode == 1 and "unknown job 'no_such_job'" in other.stderr
    assert "plugins that failed to import: pioreactor_broken_bubbler: ImportError" in other.stderr
