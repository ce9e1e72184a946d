"""Jobs forked from the fork server: the daemon's children all the same, ending the same way as
exec'd ones, an edited plugin taking effect, and the exec fallback when the server is gone."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import psutil
import pytest

from pioreactord.client import call
from tests.support.plugins import SETTINGS_JOB
from tests.support.waiting import wait_for

CRASHER = '''
import os
import subprocess
import click
from pioreactor.background_jobs.base import BackgroundJob


class Crasher(BackgroundJob):
    job_name = "crasher"
    published_settings = {
        "exit_with": {"datatype": "integer", "settable": True},
        "helper_pid": {"datatype": "integer", "settable": False},
    }

    def set_exit_with(self, code):
        os._exit(code)


@click.command(name="crasher")
@click.option("--helper", is_flag=True, help="leave a process behind that outlives the job")
def click_crasher(helper):
    job = Crasher()
    if helper:
        job.helper_pid = subprocess.Popen(["sleep", "1"], start_new_session=True).pid
    job.block_until_disconnected()
'''

VERSIONED = '''
import click
from pioreactor.background_jobs.base import BackgroundJob

VERSION = "{version}"


class Versioned(BackgroundJob):
    job_name = "versioned"
    published_settings = {{"version": {{"datatype": "string", "settable": False}}}}


@click.command(name="versioned")
def click_versioned():
    job = Versioned()
    job.version = VERSION
    job.block_until_disconnected()
'''


CONFIGURED = '''
import click
from pioreactor.background_jobs.base import BackgroundJob
from pioreactor.config import config


class Configured(BackgroundJob):
    job_name = "configured"
    published_settings = {"value": {"datatype": "string", "settable": False}}


@click.command(name="configured")
def click_configured():
    job = Configured()
    job.value = config.get("configured", "value", fallback="unset")
    job.block_until_disconnected()
'''


IMPORTS = '''
import sys
import click
from pioreactor.background_jobs.base import BackgroundJob

SERVER_MODULES = sys.modules["__main__"].SERVER_MODULES  # the server runs as __main__


class Imports(BackgroundJob):
    job_name = "imports"
    published_settings = {"new": {"datatype": "string", "settable": False}}


@click.command(name="imports")
def click_imports():
    job = Imports()
    job.new = " ".join(sorted(m for m in set(sys.modules) - SERVER_MODULES
                              if not m.startswith("pioreactor_plugins")))
    job.block_until_disconnected()
'''


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon()
    d.add_plugin("tester", SETTINGS_JOB)
    d.add_plugin("crasher", CRASHER)
    return d.start()


def started(d, job: str = "tester") -> psutil.Process:
    d.pioctl("start", job)
    return psutil.Process(d.status()[job]["pid"])


def forked(process: psutil.Process) -> bool:
    """A forked job keeps the fork server's command line; an exec'd one runs the runner."""
    cmdline = process.cmdline()
    assert ("pioreactor.forkserver" in cmdline) != ("pioreactor.runner" in cmdline), cmdline
    return "pioreactor.forkserver" in cmdline


def ended(d, job_id_after: int, row: tuple, log_like: str) -> None:
    wait_for(lambda: d.query("SELECT is_running, exit_code, end_state FROM pio_job_metadata "
                             "WHERE job_id > ? ORDER BY job_id", (job_id_after,)) == [row], 5,
             f"metadata row {row}")
    wait_for(lambda: d.query("SELECT count(*) FROM logs WHERE level='ERROR' AND message LIKE ?",
                             (log_like,))[0][0] == 1, 5, f"ERROR log {log_like!r}")


def last_job_id(d) -> int:
    return d.query("SELECT coalesce(max(job_id), 0) FROM pio_job_metadata")[0][0]


def test_jobs_fork_from_the_server_by_default(daemon):
    server = daemon.forkserver_pid()
    assert server is not None
    job = started(daemon)
    assert forked(job) and job.pid != server
    assert job.ppid() == daemon.process.pid  # re-parented: the daemon's child (SPEC §1)
    assert job.name() == "tester"  # the process name says which job it is
    threads = [Path(f"/proc/{job.pid}/task/{t.id}/comm").read_text().strip()
               for t in psutil.Process(job.pid).threads()]
    assert threads.count("tester") >= 2, threads  # and its channel's threads, which the spare started
    assert "pio-forkspare" not in threads, threads
    assert daemon.query("SELECT count(*) FROM logs WHERE message LIKE ?",
                        (f"spawned (job=tester pid={job.pid} via=forkserver%",))[0][0] == 1
    children = psutil.Process(daemon.process.pid).children()
    assert [c.pid for c in children if c.status() == psutil.STATUS_ZOMBIE] == []


def mergeable_heap(pid: int) -> bool:
    """Whether the heap mapping of `pid` has VmFlags `mg` (madvise MADV_MERGEABLE)."""
    in_heap = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's first line
            in_heap = line.endswith("[heap]")
        elif in_heap and line.startswith("VmFlags:"):
            return "mg" in line.split()[1:]
    raise AssertionError(f"no [heap] mapping in /proc/{pid}/smaps")


def test_a_forked_job_shares_its_unchanged_pages_where_the_kernel_merges_them(daemon):
    """The server marks its memory mergeable and a job keeps the mark: where KSM runs, a page
    a job copied and left as it was is shared again (~2.3 MiB of an idle job's 5.9 here)."""
    assert mergeable_heap(daemon.forkserver_pid())
    job = started(daemon)
    assert forked(job) and mergeable_heap(job.pid)


def spares(d) -> list[psutil.Process]:
    return [c for c in psutil.Process(d.process.pid).children()
            if c.name() == "pio-forkspare" and c.status() != psutil.STATUS_ZOMBIE]


def ready_spares(d) -> list[psutil.Process]:
    """Spares done rehearsing: the stack-dump file is their last step before saying READY (a
    request that finds a spare still rehearsing goes to one made for it)."""
    return [c for c in spares(d) if (d.root / "run" / "stacks" / str(c.pid)).exists()]


def test_a_start_takes_the_spare_that_waited_as_the_daemons_child(daemon):
    """No fork on a start's path: the job is the process that was waiting before the request."""
    waiting = wait_for(lambda: ready_spares(daemon), 5, "a spare waiting as the daemon's child")
    assert len(waiting) == 1 and waiting[0].ppid() == daemon.process.pid
    job = started(daemon)
    assert job.pid == waiting[0].pid and job.name() == "tester"
    following = wait_for(lambda: spares(daemon), 5, "the next spare")
    assert following[0].pid != job.pid


def test_starts_back_to_back_each_get_a_spare(daemon):
    """The next spare is made once starts pause (SPARE_AFTER): a start that comes sooner waits
    for one made on demand, and is forked all the same."""
    control = str(daemon.root / "run" / "control.sock")
    names = [f"tester{i}" for i in range(3)]
    for name in names:
        daemon.add_plugin(name, SETTINGS_JOB.replace("tester", name))
    for name in names:  # each request follows the last one's ready by well under SPARE_AFTER
        reply = call(control, {"cmd": "start", "args": {"job": name, "args": []}}, 30)
        assert reply["ok"], reply
    status = daemon.status()
    assert sorted(status) == names and all(row["state"] == "ready" for row in status.values())
    assert all(forked(psutil.Process(status[name]["pid"])) for name in names)
    assert len({status[name]["pid"] for name in names}) == 3


def test_a_start_imports_nothing_the_server_has_not(daemon):
    """A module first imported after the fork costs every start its import and its pages."""
    daemon.add_plugin("imports", IMPORTS)
    assert forked(started(daemon, "imports"))
    assert daemon.status()["imports"]["settings"]["new"] in ("", None)


def test_a_spare_goes_with_its_server_and_takes_its_stack_dump_file(daemon):
    waiting = wait_for(lambda: spares(daemon), 5, "a spare")[0]
    stacks = daemon.root / "run" / "stacks" / str(waiting.pid)
    wait_for(stacks.exists, 5, "the spare's stack-dump file, opened ahead for its job")
    os.kill(daemon.forkserver_pid(), signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(waiting.pid)
             or waiting.status() == psutil.STATUS_ZOMBIE, 5, "the spare gone")
    assert not stacks.exists()


def test_a_forked_job_reads_the_config_again_once_the_file_changed(daemon):
    daemon.add_plugin("configured", CONFIGURED)
    assert forked(started(daemon, "configured"))
    assert daemon.status()["configured"]["settings"]["value"] == "unset"
    daemon.pioctl("stop", "configured")
    with open(daemon.config, "a", encoding="utf-8") as config:
        config.write("[configured]\nvalue = edited\n")
    assert forked(started(daemon, "configured"))
    assert daemon.status()["configured"]["settings"]["value"] == "edited"


def test_both_spawners_end_a_job_the_same_way(make_daemon, watcher, spawner):
    d = make_daemon(spawner=spawner)
    d.add_plugin("crasher", CRASHER)
    d.start()
    job = started(d, "crasher")
    assert forked(job) == (spawner == "forkserver") and job.ppid() == d.process.pid
    watcher.publish(f"pioreactor/{d.unit}/exp1/crasher/exit_with/set", "1")
    ended(d, 0, (0, 1, "lost"), "crasher exited with code 1 (pid%")
    after = last_job_id(d)
    os.kill(started(d, "crasher").pid, signal.SIGKILL)
    ended(d, after, (0, -9, "lost"), "crasher killed by SIGKILL (pid%")
    after = last_job_id(d)
    started(d, "crasher")
    assert "crasher disconnected" in d.pioctl("stop", "crasher").stdout
    wait_for(lambda: d.query("SELECT exit_code, end_state FROM pio_job_metadata WHERE job_id > ?",
                             (after,)) == [(0, "disconnected")], 5, "clean stop")


def test_an_edited_plugin_takes_effect_at_its_next_start(daemon):
    daemon.add_plugin("versioned", VERSIONED.format(version="1"))
    assert forked(started(daemon, "versioned"))
    assert daemon.status()["versioned"]["settings"]["version"] == "1"
    daemon.pioctl("stop", "versioned")
    daemon.add_plugin("versioned", VERSIONED.format(version="22"))  # another size: a new .pyc
    assert forked(started(daemon, "versioned"))
    assert daemon.status()["versioned"]["settings"]["version"] == "22"


def test_a_killed_server_means_exec_until_it_is_back(daemon):
    server, readies = daemon.forkserver_pid(), daemon.forkserver_readies()
    os.kill(server, signal.SIGKILL)
    job = started(daemon)
    assert not forked(job) and job.ppid() == daemon.process.pid
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE level='WARNING' AND "
                                  "message LIKE 'fork server killed by SIGKILL%'")[0][0] == 1,
             5, "a WARNING about the server's end")
    wait_for(lambda: daemon.forkserver_readies() > readies, 15, "a new fork server")
    assert daemon.forkserver_pid() not in (None, server)
    daemon.pioctl("stop", "tester")
    assert forked(started(daemon))


def test_a_server_that_does_not_answer_is_replaced(daemon):
    server, readies = daemon.forkserver_pid(), daemon.forkserver_readies()
    os.kill(server, signal.SIGSTOP)
    assert not forked(started(daemon))
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE level='WARNING' AND "
                                  "message LIKE 'fork server not answering%'")[0][0] == 1,
             5, "a WARNING that the server did not answer")
    wait_for(lambda: daemon.forkserver_readies() > readies, 15, "a new fork server")
    assert not psutil.pid_exists(server)
    assert daemon.pioctl("start", "crasher").returncode == 0
    assert forked(psutil.Process(daemon.status()["crasher"]["pid"]))


def test_an_orphan_left_by_a_job_is_reaped(daemon):
    daemon.pioctl("start", "crasher", "--helper")
    job = psutil.Process(daemon.status()["crasher"]["pid"])
    helper = int(wait_for(lambda: daemon.status()["crasher"]["settings"].get("helper_pid"), 5,
                          "the helper's pid"))
    job.kill()
    # The daemon, a subreaper, inherits the helper; once it exits the daemon collects it.
    wait_for(lambda: not psutil.pid_exists(helper), 15, "the orphaned helper reaped")


def test_the_server_goes_with_the_daemon(make_daemon):
    stopped, killed = make_daemon().start(), make_daemon().start()
    servers = stopped.forkserver_pid(), killed.forkserver_pid()
    assert stopped.stop() == 0
    assert not psutil.pid_exists(servers[0])
    killed.process.kill()  # SIGKILL: the server sees its socket close and exits by itself
    killed.process.wait(10)
    wait_for(lambda: not psutil.pid_exists(servers[1])
             or psutil.Process(servers[1]).status() == psutil.STATUS_ZOMBIE, 10, "server gone")
