"""Oversized and endless input through the real daemon: refused or cut, with its size, once."""

from __future__ import annotations

import json

import pytest

from tests.support.plugins import SETTINGS_JOB
from tests.support.storage_plugins import PRINTER_JOB
from tests.support.waiting import wait_for

TEN_MB = 10 * 1024 * 1024


@pytest.fixture
def daemon(make_daemon):
    d = make_daemon()
    d.add_plugin("printer", PRINTER_JOB)
    d.add_plugin("tester", SETTINGS_JOB)
    return d.start()


def longest_row(daemon) -> int:
    return daemon.query("SELECT COALESCE(MAX(length(message)), 0) FROM logs")[0][0]


def test_a_progress_bar_is_logged_while_it_runs_not_held(daemon):
    daemon.pioctl("start", "printer", "--progress", "400", "--rate", "100")
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE task = 'printer' AND "
                                  "message LIKE 'progress %'")[0][0] >= 2, 15,
             "progress rows while the bar runs")
    assert not daemon.query("SELECT count(*) FROM logs WHERE message LIKE '%printer done%'")[0][0]
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE message LIKE '%printer done'")
             [0][0], 30, "the bar's end")
    rows = [r[0] for r in daemon.query("SELECT message FROM logs WHERE task = 'printer' AND "
                                       "message LIKE 'progress %'")]
    assert len(rows) <= 12 and all(len(r) < 200 for r in rows)  # ~1 a second, not 400 joined
    assert "progress 400/400" in rows[-1]


def test_a_10_mb_stdout_line_is_cut_with_its_size(daemon):
    daemon.pioctl("start", "printer", "--huge", str(TEN_MB))
    wait_for(lambda: daemon.query("SELECT count(*) FROM logs WHERE message LIKE '%printer done'")
             [0][0], 30, "the job's next line")
    cut = daemon.query("SELECT message FROM logs WHERE message LIKE 'hhh%'")
    assert len(cut) == 1 and "h [... cut: the line was 10.0 MiB]" in cut[0][0]
    assert longest_row(daemon) <= 16 * 1024


def test_a_10_mb_set_is_refused_with_its_size_and_not_echoed(daemon, watcher):
    daemon.pioctl("start", "tester")
    watcher.publish(f"pioreactor/{daemon.unit}/exp1/tester/label/set", "x" * TEN_MB)
    wait_for(lambda: daemon.query("SELECT message FROM logs WHERE message LIKE 'ignored a %'"),
             10, "the refusal")
    [(line,)] = daemon.query("SELECT message FROM logs WHERE message LIKE 'ignored a %'")
    assert line.startswith("ignored a 10.0 MiB message on pioreactor/") and "64.0 KiB" in line
    assert longest_row(daemon) < 1000
    assert daemon.status()["tester"]["settings"].get("label") in (None, "")


def test_a_10_mb_run_option_is_refused_with_its_size_and_the_fork_server_lives(daemon, watcher):
    server = daemon.forkserver_pid()
    payload = json.dumps({"options": {"tag": "t" * TEN_MB}})
    watcher.publish(f"pioreactor/{daemon.unit}/exp1/run/printer", payload)
    wait_for(lambda: daemon.query("SELECT message FROM logs WHERE message LIKE 'ignored a %'"),
             10, "the refusal")
    assert "printer" not in daemon.status()
    assert daemon.forkserver_pid() == server
    assert longest_row(daemon) < 1000


def test_oversized_job_arguments_are_refused_with_their_size(daemon):
    big = "a" * 100_000  # one argv string may be 128 KiB; two are more than MAX_JOB_ARGS
    result = daemon.pioctl("start", "printer", "--huge", big, big, check=False)
    assert result.returncode == 1
    assert "the job's arguments are 195.3 KiB (at most 64.0 KiB)" in result.stderr
    assert len(result.stderr) < 500
    server = daemon.forkserver_pid()
    assert server is not None and "printer" not in daemon.status()
