"""pioctl's quick path (`cli/fast.py`), its config reading (`cli/core.py`) and the plain-socket
ZMTP client (`client.py`) against a real libzmq ROUTER."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import zmq

from pioreactord import client, config
from pioreactord.cli import core, fast

T = fast.START_TIMEOUT


@pytest.mark.parametrize("argv, expected", [
    (["status"], ("status", [], None, False, False, T)),
    (["--json", "status", "stirring"], ("status", ["stirring"], None, True, False, T)),
    (["status", "--json"], ("status", [], None, True, False, T)),
    (["--config", "/x.ini", "locks"], ("locks", [], "/x.ini", False, False, T)),
    (["--config=/x.ini", "--json", "version"], ("version", [], "/x.ini", True, False, T)),
    (["set", "stirring", "target_rpm", "500"], ("set", ["stirring", "target_rpm", "500"], None, False, False, T)),
    (["stop", "--all"], ("stop", [], None, False, True, T)),
    (["stop", "a", "b", "--json"], ("stop", ["a", "b"], None, True, False, T)),
    (["experiment", "Trial 3"], ("experiment", ["Trial 3"], None, False, False, T)),
    (["start", "stirring"], ("start", ["stirring"], None, False, False, T)),
    (["start", "--timeout", "5", "stirring", "--target-rpm", "400"],
     ("start", ["stirring", "--target-rpm", "400"], None, False, False, 5.0)),
])
def test_plain_forms_take_the_quick_path(argv, expected):
    assert tuple(fast.parse(argv)) == expected


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["status", "--help"], ["-h"], ["status", "a", "b"], ["set", "a", "b"],
    ["set", "a", "b", "-5"], ["stop"], ["pause"], ["logs"], ["mqtt"],
    ["--config"], ["--verbose", "status"], ["status", "--config", "x"], ["locks", "x"],
    ["bogus"], ["status", "--"], ["start"], ["start", "--help"], ["start", "-h"],
    ["start", "--timeout"], ["start", "--timeout", "soon", "od"], ["start", "--verbose", "od"],
    ["start", "--", "od"],
])
def test_everything_else_goes_to_click(argv):
    assert fast.parse(argv) is None


@pytest.mark.parametrize("argv", [
    ["start", "od"], ["start", "od", "--json"], ["start", "--json", "od"], ["--json", "start", "od"],
    ["start", "od", "--x", "1"], ["start", "--timeout", "5", "od", "--timeout", "7"],
    ["start", "--timeout=2.5", "--json", "od", "a", "b"], ["start", "od", "--help"],
    ["start", "od", "-h"], ["start", "od", "--", "a"], ["start", "-"],
    ["--config", "/x.ini", "start", "od"],
])
def test_the_quick_path_starts_what_click_would(argv, monkeypatch):
    """The same job, job arguments, timeout, --json and config as click's `start` gives."""
    from pioreactord.cli import pioctl

    calls = []
    monkeypatch.setattr(core, "start", lambda ctx, job, job_args, timeout: calls.append(
        (job, list(job_args), timeout, ctx.as_json, ctx.config_path)))
    pioctl.cli.main(argv, standalone_mode=False)
    fast.run(fast.parse(argv))
    assert len(calls) == 2 and calls[0] == calls[1]


def test_the_keys_pioctl_reads_have_the_config_defaults():
    defaults = {s.key: s.default for s in config.SETTINGS if s.section == "pioreactord"}
    assert core.DEFAULTS == {k: defaults[k] for k in core.DEFAULTS}
    assert (core.CONFIG_ENV, core.DEFAULT_CONFIG_PATH) == (config.CONFIG_ENV,
                                                           config.DEFAULT_CONFIG_PATH)


@pytest.mark.parametrize("body", [
    "[pioreactord]\nunit = u1\n",
    "[pioreactord]\nruntime_dir = /tmp/rt ; a comment\nstop_timeout = 4.5\n",
    "[DEFAULT]\nbase = /srv\n[pioreactord]\nruntime_dir = %(base)s/run\n",
])
def test_the_socket_and_stop_timeout_are_those_of_the_full_config(tmp_path, body):
    path = tmp_path / "p.ini"
    path.write_text(body)
    ctx, full = core.Context(str(path), False), config.Config.load(str(path))
    assert ctx.control_socket == str(full.control_socket)
    assert ctx.stop_timeout == full.stop_timeout


def test_a_missing_config_file_is_one_line_and_exit_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        core.Context(str(tmp_path / "none.ini"), False).control_socket  # noqa: B018
    assert caught.value.code == 1
    assert "does not exist" in capsys.readouterr().err


def test_the_client_speaks_the_protocol_version():
    from pioreactord import protocol

    assert client.PROTOCOL_VERSION == protocol.VERSION


def test_no_socket_and_a_stale_socket_are_told_apart_at_once(tmp_path):
    with pytest.raises(client.Unreachable) as caught:
        client.call(str(tmp_path / "none.sock"), {"cmd": "ping"}, 5)
    assert caught.value.reason == "no_daemon" and "not running" in str(caught.value)
    stale = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stale))
    listener.close()  # the file stays, nobody listens: what a killed daemon leaves
    with pytest.raises(client.Unreachable) as caught:
        client.call(str(stale), {"cmd": "ping"}, 5)
    assert caught.value.reason == "stale_socket" and str(stale) in str(caught.value)


@pytest.fixture
def router(tmp_path):
    """A libzmq ROUTER like the daemon's; answers each request with `answer(header)`."""
    path = str(tmp_path / "c.sock")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(f"ipc://{path}")
    answers: list = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if sock.poll(50):
                identity, *frames = sock.recv_multipart()
                header = json.loads(frames[0])
                for reply in answers[0](header):
                    sock.send_multipart([identity, *reply])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, answers
    stop.set()
    thread.join(5)
    sock.close(0)
    ctx.term()


def test_a_call_over_plain_zmtp_gets_its_reply(router):
    path, answers = router
    big = "x" * 100_000  # a long frame each way
    answers.append(lambda h: [[json.dumps({"id": "other"}).encode()],  # not ours: skipped
                              [json.dumps({"v": 1, "id": h["id"], "ok": True,
                                           "result": {"echo": h["args"]}}).encode()]])
    reply = client.call(path, {"t": "call", "cmd": "x", "args": {"big": big}}, 5)
    assert reply["ok"] and reply["result"]["echo"]["big"] == big


def test_a_request_too_large_for_the_daemon_is_refused_before_connecting(tmp_path):
    with pytest.raises(client.TooLarge, match=r"the request is 2.0 MiB \(at most 1.0 MiB\)"):
        client.call(str(tmp_path / "none.sock"), {"cmd": "set", "value": "x" * 2**21}, 5)


def test_no_reply_is_timed_out_not_unreachable(router):
    path, answers = router
    answers.append(lambda h: [])
    with pytest.raises(client.TimedOut, match="within 0.3 s"):
        client.call(path, {"t": "call", "cmd": "x"}, 0.3)
