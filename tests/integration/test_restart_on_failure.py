"""`[<job>] restart = on-failure` (SPEC §2, issue 10 item 8), through the real daemon."""

from __future__ import annotations

import pytest

from tests.support.waiting import wait_for

FRAGILE_JOB = '''
import os
import click
from pioreactor.background_jobs.base import BackgroundJob


class Fragile(BackgroundJob):
    job_name = "fragile"
    published_settings = {"crash": {"datatype": "integer", "settable": True}}

    def __init__(self, fail):
        super().__init__()
        if fail:
            raise RuntimeError("fragile refuses to start")

    def set_crash(self, value):
        os._exit(int(value))


@click.command(name="fragile")
@click.option("--fail", is_flag=True)
def click_fragile(fail):
    Fragile(fail).block_until_disconnected()
'''


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon(extra_ini="[fragile]\nrestart = on-failure\n")
    d.add_plugin("fragile", FRAGILE_JOB)
    return d.start()


def warned(d, pattern: str) -> bool:
    return d.query("SELECT count(*) FROM logs WHERE task = 'fragile' AND message LIKE ?",
                   (pattern,))[0][0] > 0


def test_a_lost_job_is_started_again_and_a_stopped_one_is_not(daemon, watcher):
    daemon.pioctl("start", "fragile")
    first = daemon.status()["fragile"]["pid"]
    watcher.publish(f"pioreactor/{daemon.unit}/exp1/fragile/crash/set", "3")
    wait_for(lambda: warned(daemon, "fragile exited with code 3; starting it again in 1 s "
                                    "(restart = on-failure)"), 10, "the restart WARNING")
    second = wait_for(lambda: daemon.status().get("fragile", {}).get("state") == "ready"
                      and daemon.status()["fragile"]["pid"], 15, "fragile ready again")
    assert second != first
    assert "fragile disconnected" in daemon.pioctl("stop", "fragile").stdout
    assert daemon.status() == {}  # stopped by a user: stays stopped


def test_a_job_that_never_reached_ready_is_not_started_again(daemon):
    result = daemon.pioctl("start", "fragile", "--fail", check=False)
    assert result.returncode == 1
    wait_for(lambda: warned(daemon, "fragile exited with code 1; not restarting it: it never "
                                    "reached ready"), 10, "the WARNING")
    assert daemon.status() == {}
