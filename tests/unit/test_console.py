"""A console that goes away (reader gone: EPIPE) is pointed at /dev/null and reported once."""

from __future__ import annotations

import io
import os

from pioreactord import console


def test_a_write_to_a_closed_pipe_is_swallowed_and_reported_once(monkeypatch):
    read_end, write_end = os.pipe()
    stream = io.TextIOWrapper(io.FileIO(write_end, "w"), line_buffering=True)
    reports: list[str] = []
    monkeypatch.setattr(console, "_on_gone", None)
    monkeypatch.setattr(console, "_pending", [])
    guarded = console._Console(stream, "stderr")
    guarded.write("seen\n")
    assert os.read(read_end, 100) == b"seen\n"
    os.close(read_end)

    assert guarded.write("lost line\n") == len("lost line\n")  # EPIPE: no exception
    guarded.write("and another\n")
    guarded.flush()
    assert guarded.gone
    assert os.readlink(f"/proc/self/fd/{write_end}") == os.devnull  # later writes, C's too
    console.report_to(reports.append)  # reported once the daemon can log
    assert len(reports) == 1 and reports[0].startswith("console output (stderr) failed (BrokenPipeError")
    assert guarded.fileno() == write_end  # anything else goes to the real stream
    stream.close()
