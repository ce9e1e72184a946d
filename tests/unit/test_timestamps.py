"""utc_timestamp: the stored format, and now's stamp made from a kept second stays right."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pioreactord import protocol
from pioreactord.protocol import utc_timestamp

FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def from_datetime() -> str:
    return utc_timestamp(datetime.now(UTC))


def test_now_lies_between_stamps_made_from_datetimes():
    for _ in range(2000):
        before, now, after = from_datetime(), utc_timestamp(), from_datetime()
        assert FORMAT.match(now) and before <= now <= after


def test_a_new_second_is_formatted_again(monkeypatch):
    clock = [1_700_000_000_999_000_000]
    monkeypatch.setattr(protocol.time, "time_ns", lambda: clock[0])
    assert utc_timestamp() == "2023-11-14T22:13:20.999Z"
    clock[0] += 1_000_000
    assert utc_timestamp() == "2023-11-14T22:13:21.000Z"


def test_a_given_time_keeps_its_milliseconds():
    assert utc_timestamp(datetime(2020, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)) == "2020-01-02T03:04:05.678Z"
