"""The wire format's encoders (pure logic)."""

from __future__ import annotations

import json

import pytest

from pioreactord.protocol import decode, encode, encode_log

LINE = {"t": "log", "level": "INFO", "message": 'say "hi" \\ é\n😀\x01', "task": "stirring",
        "source": "app", "experiment": "exp 1", "timestamp": "2026-12-02T17:00:00.123Z"}


@pytest.mark.parametrize("header", [
    LINE,
    {"t": "log", "message": "a test's line without the other fields"},
    {**LINE, "level": None},  # not a string: the general encoder
    {**LINE, "extra": "field"},
], ids=["usual", "few fields", "a None", "an extra field"])
def test_a_log_line_encodes_as_the_general_encoder_would(header: dict) -> None:
    fast, general = encode_log(header, 42), encode({**header, "seq": 42})
    assert json.loads(fast[0]) == json.loads(general[0])
    assert decode(fast) == ({"v": 1, **header, "seq": 42}, None)
