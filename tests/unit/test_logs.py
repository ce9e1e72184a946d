"""LogHub: a loop pass's lines go out together, long lines are cut, the file follows logrotate."""

from __future__ import annotations

from pioreactord.limits import MAX_LOG_LINE
from pioreactord.logs import LogHub, LogRecord


class FakeSink:
    def __init__(self) -> None:
        self.batches: list[list[tuple]] = []

    def write_logs(self, rows: list[tuple], origins: list | None = None) -> None:
        self.batches.append(rows)


def make_hub(tmp_path, published: list, scheduled: list) -> tuple[LogHub, FakeSink]:
    sink = FakeSink()
    hub = LogHub(unit="u1", sink=sink, log_file=tmp_path / "log" / "d.log",  # type: ignore[arg-type]
                 console_level="CRITICAL", publish_many=published.append,
                 schedule=scheduled.append)
    return hub, sink


def test_a_loop_pass_of_lines_is_written_once_to_each_destination(tmp_path):
    published: list = []
    scheduled: list = []
    hub, sink = make_hub(tmp_path, published, scheduled)
    for i in range(3):
        hub.emit(LogRecord.now("info", f"line {i}", "job", "exp", timestamp=f"2026-01-01T00:00:0{i}.000Z"))
    assert len(scheduled) == 1 and not published and not sink.batches  # nothing before the flush
    scheduled[0]()
    assert len(published) == 1 and [t for t, _ in published[0]] == ["pioreactor/u1/exp/logs/app/info"] * 3
    assert b'"message":"line 0"' in published[0][0][1]
    assert [row[3] for row in sink.batches[0]] == ["line 0", "line 1", "line 2"]
    assert sink.batches[0][0][2] == "2026-01-01T00:00:00.000Z"  # the job's own stamp is kept
    lines = (tmp_path / "log" / "d.log").read_text().splitlines()
    assert lines == [f"2026-01-01T00:00:0{i}.000Z INFO     [job] line {i}" for i in range(3)]


def test_a_long_line_is_cut_with_its_size(tmp_path):
    published: list = []
    hub, sink = make_hub(tmp_path, published, [])
    hub._schedule = None  # write at once
    hub.emit(LogRecord.now("ERROR", "v" * 10_000_000, "job", "exp"))
    message = sink.batches[0][0][3]
    assert len(message) <= MAX_LOG_LINE
    assert message.endswith("[... cut: the line was 9.5 MiB]")
    assert len(published[0][0][1]) < MAX_LOG_LINE + 300


def test_the_log_file_is_reopened_after_logrotate_moved_it(tmp_path):
    hub, _ = make_hub(tmp_path, [], [])
    hub._schedule = None
    hub.emit(LogRecord.now("INFO", "before", "job", "exp"))
    path = tmp_path / "log" / "d.log"
    path.rename(tmp_path / "log" / "d.log.1")
    hub.emit(LogRecord.now("INFO", "after", "job", "exp"))
    assert "after" in path.read_text() and "after" not in (tmp_path / "log" / "d.log.1").read_text()
