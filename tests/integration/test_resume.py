"""resume_jobs (SPEC §2, issue 10 item 7): after systemctl stop + start (here: SIGTERM, then a
new daemon on the same state), the jobs that were running start again; one a user stopped does
not, nor one whose section says resume = 0. (Reboots and power cuts: the container e2e.)"""

from __future__ import annotations

import signal

from tests.support.plugins import OPTIONS_JOB, SETTINGS_JOB
from tests.support.waiting import wait_for


def test_a_stopped_daemon_resumes_what_no_user_stopped(make_daemon, watcher):
    d = make_daemon(extra_ini="[optioned]\nresume = 0\n")
    d.add_plugin("tester", SETTINGS_JOB)
    d.add_plugin("optioned", OPTIONS_JOB)
    d.add_plugin("stopped", SETTINGS_JOB.replace('job_name = "tester"', 'job_name = "stopped"')
                 .replace('name="tester"', 'name="stopped"'))
    d.start()
    d.pioctl("experiment", "exp5")
    d.pioctl("start", "tester", "--fail", check=False)  # never a job: nothing to resume
    d.pioctl("start", "tester")
    d.pioctl("start", "optioned")
    d.pioctl("start", "stopped")
    d.pioctl("stop", "stopped")  # a user's stop
    first = d.status()["tester"]["pid"]
    assert d.stop(signal.SIGTERM) == 0
    d.start()
    status = wait_for(lambda: (s := d.status()).get("tester", {}).get("state") == "ready" and s,
                      15, "tester resumed")
    assert set(status) == {"tester"} and status["tester"]["pid"] != first
    assert status["tester"]["experiment"] == "exp5"
    notices = d.query("SELECT message FROM logs WHERE level = 'NOTICE' AND task = 'pioreactord' "
                      "AND message LIKE 'resuming %'")
    assert notices == [("resuming tester: it was running when pioreactord was stopped",)]
    d.pioctl("stop", "tester")
    assert d.stop(signal.SIGTERM) == 0
    d.start()
    assert d.status() == {}  # stopped by a user the second time
