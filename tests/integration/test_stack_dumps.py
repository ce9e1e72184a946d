"""A hung job leaves a clue (issue 12 item 6): its threads' stacks, logged under its name at
WARNING, when a callback has not returned for hung_job_warning s and before it is SIGTERMed."""

from __future__ import annotations

import pytest

from tests.support.waiting import wait_for

STUCK_JOB = '''
import threading
import click
from pioreactor.background_jobs.base import BackgroundJob


class Stuck(BackgroundJob):
    job_name = "stuck"
    published_settings = {"speed": {"datatype": "float", "settable": True}}

    def set_speed(self, value):
        threading.Event().wait()  # never returns: stuck in a setter


@click.command(name="stuck")
def click_stuck():
    Stuck().block_until_disconnected()
'''


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon()
    d.config.write_text(d.config.read_text().replace("stop_timeout = 3",
                                                     "stop_timeout = 3\nhung_job_warning = 1"))
    d.add_plugin("stuck", STUCK_JOB)
    return d.start()


def warnings_with_stacks(d, headline: str) -> list[str]:
    rows = d.query("SELECT message FROM logs WHERE task = 'stuck' AND level = 'WARNING' AND "
                   "message LIKE ?", (f"{headline}%",))
    return [row[0] for row in rows]


def test_a_job_stuck_in_a_setter_is_reported_with_its_stacks_then_dumped_again_before_sigterm(
        daemon, watcher):
    daemon.pioctl("start", "stuck")
    pid = daemon.status()["stuck"]["pid"]
    watcher.publish(f"pioreactor/{daemon.unit}/exp1/stuck/speed/set", "5")
    hung = wait_for(lambda: warnings_with_stacks(daemon, f"stuck (pid {pid}): a callback has not "
                                                         "returned for"), 15, "the hung warning")
    assert len(hung) == 1 and "in set_speed" in hung[0] and "where its threads are" in hung[0]
    assert daemon.status()["stuck"]["pid"] == pid  # reported, not stopped
    daemon.pioctl("stop", "stuck")  # its SIGTERM handler cleans up: it ends either way
    before_term = warnings_with_stacks(daemon, f"stuck (pid {pid}) did not stop within 3 s; "
                                               "sending SIGTERM; where its threads are")
    assert len(before_term) == 1 and "in set_speed" in before_term[0]
    assert not (daemon.root / "run" / "stacks" / str(pid)).exists()
