"""`[<job>] restart = on-failure` (SPEC §2): when a job that ended `lost` is started again.

Pure bookkeeping, no I/O: `Restarts.after_lost` says how long to wait before the next start, or
why there is none. The delay starts at 1 s and doubles up to 5 min; a job that had been up for
10 min starts again at 1 s. A job that fails the same way (same exit) GIVE_UP_AFTER times in a
row within QUICK_FAILURE s of starting is given up on. A configuration error (exit 78) and a job
that never reached `ready` are never restarted: starting them again cannot help.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import EXIT_UNKNOWN_JOB

FIRST_DELAY = 1.0
MAX_DELAY = 300.0
STABLE_UPTIME = 600.0  # seconds up after which the next failure starts the backoff again
QUICK_FAILURE = 10.0  # seconds: a failure this soon after starting counts towards giving up
GIVE_UP_AFTER = 5


@dataclass(frozen=True)
class Verdict:
    delay: float | None  # seconds until the next start; None: not restarted
    why_not: str = ""
    gave_up: bool = False  # an ERROR, not a WARNING: it kept failing


@dataclass
class _Backoff:
    delay: float = FIRST_DELAY
    quick_failures: int = 0
    last_failure: str | None = None


class Restarts:
    def __init__(self) -> None:
        self._backoff: dict[str, _Backoff] = {}

    def after_lost(self, name: str, *, uptime: float, failure: str, reached_ready: bool,
                   exit_code: int | None) -> Verdict:
        """`failure`: how it ended (ExitInfo.describe()), to tell the same failure again."""
        if exit_code == EXIT_UNKNOWN_JOB:
            return Verdict(None, f"exit code {EXIT_UNKNOWN_JOB} is a configuration error")
        if not reached_ready:
            return Verdict(None, "it never reached ready")
        backoff = self._backoff.setdefault(name, _Backoff())
        if uptime >= STABLE_UPTIME:
            backoff.delay, backoff.quick_failures = FIRST_DELAY, 0
        if uptime < QUICK_FAILURE:
            same = failure == backoff.last_failure
            backoff.quick_failures = backoff.quick_failures + 1 if same else 1
        else:
            backoff.quick_failures = 0
        backoff.last_failure = failure
        if backoff.quick_failures >= GIVE_UP_AFTER:
            del self._backoff[name]
            return Verdict(None, f"it failed the same way {GIVE_UP_AFTER} times within "
                                 f"{QUICK_FAILURE:g} s of starting", gave_up=True)
        delay, backoff.delay = backoff.delay, min(backoff.delay * 2, MAX_DELAY)
        return Verdict(delay)
