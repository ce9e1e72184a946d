"""Size bounds on everything the daemon takes in, in one place (issue 11 item 7).

Anything larger is refused (or cut, for text that is still worth keeping) with one line that
gives its size, never echoed whole. Each bound is applied where the data enters:

  MAX_MQTT_PAYLOAD  a message from the broker (/set, $state/set, run/{job}): refused
  MAX_LOG_LINE      one log line (a job's record, a line of its stdout/stderr): cut, with a marker
  MAX_JOB_ARGS      a job's arguments (pioctl start, run/{job} options), in bytes: refused
  MAX_FRAME         one job-channel or control message: refused (`protocol.decode`), and a
                    peer sending more than 16x that is disconnected by ZeroMQ (MAXMSGSIZE)
  MAX_FORK_MESSAGE  one request to the fork server (argv + the job's environment)
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_MQTT_PAYLOAD = 64 * 1024
MAX_LOG_LINE = 16 * 1024
MAX_JOB_ARGS = 64 * 1024
MAX_FRAME = 1024 * 1024
MAX_FORK_MESSAGE = 256 * 1024


def size_text(size: int) -> str:
    """A size as a person reads it: 812 B, 64.0 KiB, 10.0 MiB."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 2**20:.1f} MiB"


CUT_MARKER_ROOM = 64  # characters kept free for the marker: a cut line is never over its limit


def cut_marker(size: int) -> str:
    return f" [... cut: the line was {size_text(size)}]"


def cut_text(text: str, limit: int = MAX_LOG_LINE) -> str:
    """`text` if it fits in `limit` characters, else its start and a marker giving its size
    (at most `limit` characters in all)."""
    if len(text) <= limit:
        return text
    return text[:limit - CUT_MARKER_ROOM] + cut_marker(len(text.encode("utf-8", "replace")))


def job_args_error(args: Sequence[str]) -> str | None:
    """Why `args` cannot be a job's command line (too large), or None."""
    size = sum(len(arg.encode("utf-8", "replace")) + 1 for arg in args)
    if size <= MAX_JOB_ARGS:
        return None
    return f"the job's arguments are {size_text(size)} (at most {size_text(MAX_JOB_ARGS)})"
