"""`run/{job}` payloads to a job's command line."""

from __future__ import annotations

import pytest

from pioreactord.runargs import BadRunRequest, parse


def test_options_follow_click_conventions():
    payload = (b'{"options": {"initial_dc": 10, "dry_run": null, "fast": true, "slow": false,'
               b' "pin": [1, 2], "conf": {"a": 1}, "rate": 0.5, "name": "x y"}, "args": ["a", 3]}')
    assert parse(payload) == ["--initial-dc", "10", "--dry-run", "--fast", "--no-slow",
                              "--pin", "1", "--pin", "2", "--conf", '{"a":1}', "--rate", "0.5",
                              "--name", "x y", "a", "3"]


@pytest.mark.parametrize("payload", [b"{}", b'{"options": {}, "args": []}',
                                     b'{"options": null, "args": null}'])
def test_empty_requests_mean_no_arguments(payload):
    assert parse(payload) == []


@pytest.mark.parametrize("payload, says", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object, not list"),
    (b'"ready"', "must be a JSON object, not str"),
    (b'{"options": [1]}', "options must be a JSON object"),
    (b'{"args": "x"}', "args must be a JSON list"),
    (b'{"opts": {}}', "unknown key(s) opts"),
    (b'{"args": [[1]]}', "is not a single value"),
    (b'{"options": {"": 1}}', "empty name"),
])
def test_bad_requests_say_what_is_wrong(payload, says):
    with pytest.raises(BadRunRequest) as caught:
        parse(payload)
    assert says in str(caught.value)


def test_an_oversized_request_is_refused_with_its_size():
    payload = ('{"options": {"initial_dc": "' + "9" * 10_000_000 + '"}}').encode()
    with pytest.raises(BadRunRequest) as refused:
        parse(payload)
    assert str(refused.value) == "payload is 9.5 MiB (at most 64.0 KiB of job arguments)"
