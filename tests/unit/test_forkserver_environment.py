"""The fork server's job-side steps: the environment reached by changing the difference; the rehearsal."""

from __future__ import annotations

import os

from pioreactor.forkserver import adopt_environment


def test_the_environment_becomes_the_wanted_one(monkeypatch):
    for key in list(os.environ):
        monkeypatch.delenv(key)
    monkeypatch.setenv("KEPT", "same")
    monkeypatch.setenv("CHANGED", "old")
    monkeypatch.setenv("DROPPED", "gone soon")
    wanted = {"KEPT": "same", "CHANGED": "new", "ADDED": "token"}
    adopt_environment(wanted, dict(os.environ))
    assert dict(os.environ) == wanted
    assert os.getenv("CHANGED") == "new" and os.getenv("DROPPED") is None  # the C environment too


def test_the_rehearsal_runs_and_leaves_no_plugin_behind(capsys):
    import sys

    from pioreactor.forkserver import rehearse_start

    rehearse_start()
    assert capsys.readouterr().err == ""  # it says so when it fails
    assert "pioreactor_plugins._rehearsal" not in sys.modules
