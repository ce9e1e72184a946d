"""The only wire format: messages on the job channel and the control channel, version 1.

Both channels are ZeroMQ over `ipc://` sockets in `runtime_dir`: the daemon binds a ROUTER on
`jobs.sock` (one DEALER per job) and a ROUTER on `control.sock` (one DEALER per pioctl call). A
message is one or two frames: a JSON header (a dict with at least `v` and `t`) and, for MQTT
payloads, the raw payload bytes. A DEALER reconnects by itself, so a job outlives a daemon restart:
its messages queue in ZeroMQ meanwhile, and the new daemon answers the first message from an
identity it does not know with `who`, upon which the job registers again with everything it holds.

Job -> daemon                                    (R = request: carries `id`, gets a `reply`)
  register   R job_name, pid, unit, experiment, source, token, settings {name: meta},
               values {name: wire str}, state, subscriptions [pattern], pins [int],
               driven [{pin, hz, dc}], adopt, stack_dump (it answers STACK_SIGNAL),
               version (of the code it runs)
                                                  -> unit, experiment, job_id, daemon
  state        state
  setting      name, value (wire str; null = cleared)
  log          level, message, task, source, experiment, timestamp (when the job emitted it), seq
  logs         records [{the fields of log}]: log lines that waited back to back, in one
               message (jobs/held.py groups up to 512 / 256 KiB; MAX_FRAME bounds it)
  publish      topic, qos, retain; frame 2 = payload
  subscribe    patterns [str]
  ping         sent, busy? (heartbeat; answered with pong; `sent`: the highest seq sent so far;
               busy: s a callback has been running)
  resending    from (the answer to `resend`: the job holds the numbered messages from `from` on;
               they follow)
  hw         R op, args, daemon    (PWM, locks, LEDs, ADC: see the daemon's hardware requests;
                                    `daemon` is the instance the job registered with: a new daemon
                                    holds such a request until the job has registered again)
  whoami     R                     -> unit, experiment (for jobs started by hand)
  bye        R                     the job finished its clean-up; exiting next (clean stop)

Who sends a message is what the kernel says, not the message: the daemon reads each connection's
SO_PEERCRED (uid, gid, pid; libzmq's Peer-Address metadata) and refuses a `register` whose `pid`
is not the connecting process. Every other message is bound to the job registered on its
connection. A connection that has not registered may only ask `whoami`, `ping` and `hw` op `led`
(logged with its uid); its `log`, `publish` and other `hw` messages wait until it registers (a
job back after a daemon restart) and are dropped, with a WARNING naming the peer, if it never does.

Daemon -> job
  reply        id, ok, result | error, code
  message      topic, retain, qos; frame 2 = payload (a subscribed MQTT message)
  set        R setting, value (str, as received)  -> reply ok or error (refused)
  state_set  R state                               -> reply ok once the transition ran
  who          daemon (unknown identity: register again, with adopt = true)
  pong         daemon (the daemon's instance id; a change means it restarted)
  ack          seq (every numbered message up to `seq` is committed to SQLite: the job may forget it)
  resend       from (a gap: send again the numbered messages from `from` on)

`seq` numbers a job instance's log lines and settings (1, 2, ... per channel identity): the job
holds each until an `ack` covers it and sends it again on `resend`; the daemon admits each number
once and in order (daemon/confirm.py, jobs/held.py).

Control (pioctl -> daemon): {v, id, cmd, args}; reply {v, id, ok, result | error, code}.
The commands and their contracts live in `commands.py`.

Fork server (`python -m pioreactor.forkserver FD`, `spawner = forkserver`): a SOCK_SEQPACKET
socketpair, one datagram per message, each a header as above (`encode(...)[0]`).
  server -> daemon  ready    pid                          once its imports are done
  daemon -> server  fork     argv [job, args...], env {}, cwd; SCM_RIGHTS stdin, stdout, stderr
  server -> daemon  forked   pid | error                  the job, by then the daemon's child
"""

from __future__ import annotations

import json
import json.encoder
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from .limits import MAX_FORK_MESSAGE, MAX_FRAME, size_text

VERSION = 1

JOB_SOCKET_ENV = "PIOREACTORD_JOB_SOCKET"
JOB_TOKEN_ENV = "PIOREACTORD_JOB_TOKEN"
UNIT_ENV = "PIOREACTOR_UNIT"
EXPERIMENT_ENV = "PIOREACTOR_EXPERIMENT"
SOURCE_ENV = "PIOREACTORD_JOB_SOURCE"
FORK_MESSAGE_MAX = MAX_FORK_MESSAGE  # bytes; a fork request carries the job's whole environment

# Built-in short actions: they run, act and exit within milliseconds, so two may overlap (two
# `pioctl start led_intensity` from two scripts). They are not subject to one-per-name.
SHORT_ACTIONS = frozenset({"led_intensity"})

# Exit statuses shared by the daemon and the job runner.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # click's own status for a bad option
EXIT_REFUSED = 75  # the daemon refused registration (already running): nothing ran, not a crash
EXIT_UNKNOWN_JOB = 78  # no such job: a configuration error, do not retry

STATES = ("init", "ready", "sleeping", "disconnected", "lost")
# A job that registered with `stack_dump: true` writes every thread's stack to
# <runtime_dir>/stacks/<pid> on this signal (jobs/stack_dump.py); the daemon logs it.
STACK_SIGNAL = signal.SIGUSR2


class ProtocolError(ValueError):
    """A frame that is not a message of this protocol (the text says what was wrong)."""


class CommandError(Exception):
    """A request refused with one of the reply error codes (`code`): raised by the daemon's
    operations, turned into `{ok: false, error, code}` by the control channel and into a log
    line by MQTT commands."""

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


_compact = json.JSONEncoder(separators=(",", ":")).encode  # made once: json.dumps with
# separators builds an encoder per call (half its cost)
_quote = json.encoder.encode_basestring_ascii
LOG_FIELDS = ("level", "message", "task", "source", "experiment", "timestamp")
_LOG_TEMPLATE = (f'{{"v":{VERSION},"t":"log",'
                 + ",".join(f'"{name}":%s' for name in LOG_FIELDS) + ',"seq":%d}')


def encode(header: dict[str, Any], payload: bytes | None = None) -> list[bytes]:
    frames = [_compact({"v": VERSION, **header}).encode()]
    if payload is not None:
        frames.append(payload)
    return frames


def join_logs(encoded: list[bytes]) -> list[bytes]:
    """One `logs` message whose records are `log` messages already encoded (their header
    frames, `v` and `t` included: the daemon reads the fields it needs)."""
    return [b'{"v":%d,"t":"logs","records":[%s]}' % (VERSION, b",".join(encoded))]


def encode_log(header: dict[str, Any], seq: int) -> list[bytes]:
    """A job's numbered `log` message: what `encode({**header, "seq": seq})` gives, the JSON
    written by hand when the header is the usual one (`t` and LOG_FIELDS, all strings): a
    job's log lines are most of what it sends, and this is 4x faster (issue 14)."""
    values = tuple(header.get(name) for name in LOG_FIELDS)
    if header.get("t") == "log" and len(header) == len(LOG_FIELDS) + 1 and all(type(value) is str for value in values):
        return [(_LOG_TEMPLATE % (*map(_quote, values), seq)).encode()]  # type: ignore[arg-type]
    return encode({**header, "seq": seq})


def decode(frames: list[bytes]) -> tuple[dict[str, Any], bytes | None]:
    if not frames or len(frames) > 2:
        raise ProtocolError(f"expected 1 or 2 frames, got {len(frames)}")
    size = sum(len(frame) for frame in frames)
    if size > MAX_FRAME:  # refused unread: the line that says so gives the size, not the content
        raise ProtocolError(f"message is {size_text(size)} (at most {size_text(MAX_FRAME)})")
    try:
        header = json.loads(frames[0])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    if header.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {header.get('v')!r} (want {VERSION})")
    if not isinstance(header.get("t", header.get("cmd")), str):
        raise ProtocolError("message has no type")
    return header, (frames[1] if len(frames) == 2 else None)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


_second_stamp: tuple[int, str] = (-1, "")  # the last whole second formatted (a log burst's)


def utc_timestamp(when: datetime | None = None) -> str:
    """UTC ISO-8601 with milliseconds and `Z`, the format of every stored timestamp. Now's is
    made from the clock and the formatted second, kept: a burst of log lines formats it once."""
    global _second_stamp
    if when is None:
        seconds, millis = divmod(time.time_ns() // 1_000_000, 1000)
        second, text = _second_stamp
        if second != seconds:
            text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
            _second_stamp = (seconds, text)
        return f"{text}{millis:03d}Z"
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic filter matching (`+` one level, `#` the rest), as the broker does it."""
    pattern_levels = pattern.split("/")
    topic_levels = topic.split("/")
    if topic.startswith("$") and pattern_levels[0] in ("+", "#"):
        return False  # wildcards never match topics that start with $ (MQTT 4.7.2)
    for i, level in enumerate(pattern_levels):
        if level == "#":
            return True
        if i >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[i]:
            return False
    return len(pattern_levels) == len(topic_levels)


def to_wire(value: Any) -> bytes:
    """A setting's value as published: str as UTF-8, numbers str(), bools True/False,
    dicts and lists compact JSON, None an empty payload."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":")).encode()
    return str(value).encode()
