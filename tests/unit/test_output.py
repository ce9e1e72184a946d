"""OutputCapture on a real pipe: line ends, progress bars, over-long lines, bounded memory."""

from __future__ import annotations

import os

import pytest

from pioreactord import output
from pioreactord.output import OutputCapture


@pytest.fixture
def pipe():
    r, w = os.pipe2(os.O_NONBLOCK)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def read_all(capture: OutputCapture, fd: int, is_stderr: bool = False) -> list[str]:
    texts: list[str] = []
    while True:
        got, eof = capture.read(fd, is_stderr)
        texts += got
        if not got and not eof:
            return texts
        if eof:
            return texts


def test_lines_end_at_lf_crlf_and_cr(pipe):
    r, w = pipe
    capture = OutputCapture()
    os.write(w, b"one\ntwo\r\nthree\rfour")
    assert read_all(capture, r) == ["one", "two", "three"]
    os.write(w, b" more\n")
    assert read_all(capture, r) == ["four more"]  # a \n line overwrites no pending bar here


def test_a_progress_bar_at_100_per_second_is_one_line_a_second(pipe, monkeypatch):
    r, w = pipe
    clock = [1000.0]
    monkeypatch.setattr(output.time, "monotonic", lambda: clock[0])
    capture = OutputCapture()
    logged: list[str] = []
    for i in range(300):  # 3 s of a bar at 100 updates/s, read as it comes
        clock[0] = 1000 + i / 100
        os.write(w, f"\rprogress {i}/300".encode())
        logged += read_all(capture, r)
    assert logged == ["progress 0/300", "progress 100/300", "progress 200/300"]
    os.close(w)
    assert read_all(capture, r) == ["progress 299/300"]  # the end shows its last picture


def test_a_bar_finished_by_a_newline_logs_the_final_line_only(pipe):
    r, w = pipe
    capture = OutputCapture()
    os.write(w, b"\r 10%\r 50%\r100% done\n")
    assert read_all(capture, r) == [" 10%", "100% done"]  # 50% was redrawn over


def test_a_huge_line_is_cut_with_its_size_and_memory_stays_bounded(pipe):
    r, w = pipe
    capture = OutputCapture(max_line=1000)
    texts: list[str] = []
    for _ in range(160):  # 10 MiB in 64 KiB pieces, no newline until the end
        os.write(w, b"h" * 65536)
        texts += read_all(capture, r)
        assert max(len(s.head) for s in capture._streams.values()) <= 1000
    os.write(w, b"\nafter\n")
    texts += read_all(capture, r)
    assert texts == ["h" * 1000 + " [... cut: the line was 10.0 MiB]", "after"]


def test_stderr_tail_and_drain(pipe):
    r, w = pipe
    capture = OutputCapture()
    os.write(w, b"".join(f"err {i}\n".encode() for i in range(30)) + b"last, unfinished")
    os.close(w)
    texts = capture.drain(r, is_stderr=True)
    assert texts[-1] == "last, unfinished" and len(texts) == 31
    assert list(capture.stderr_tail)[-1] == "last, unfinished" and len(capture.stderr_tail) == 20
