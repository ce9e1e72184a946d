"""An idle daemon has not loaded what it never uses (daemon/deferred.py, lazy psutil): the
shared libraries of asyncio and psutil are not mapped until something needs them."""

from __future__ import annotations

from pathlib import Path

from tests.support.plugins import SETTINGS_JOB

UNUSED_WHEN_IDLE = ("_asyncio.cpython", "_psutil_linux")


def mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_an_idle_daemon_has_not_loaded_asyncio_or_psutil(make_daemon):
    d = make_daemon()
    d.add_plugin("tester", SETTINGS_JOB)
    d.start()
    d.pioctl("status")
    maps = mapped(d.process.pid)
    assert [name for name in UNUSED_WHEN_IDLE if name in maps] == []
    d.pioctl("start", "tester")  # a job to show: psutil is loaded for its row, and works
    row = d.status()["tester"]
    assert row["rss_mib"] and row["rss_mib"] > 1
    assert "_psutil_linux" in mapped(d.process.pid)
