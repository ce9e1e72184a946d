"""restart = on-failure: the backoff and when a job is given up on (SPEC §2, issue 10 item 8)."""

from __future__ import annotations

import pytest

from pioreactord.config import Config, ConfigError, render_ini
from pioreactord.restarts import GIVE_UP_AFTER, MAX_DELAY, Restarts

KILLED = "killed by SIGKILL"


def fail(restarts: Restarts, uptime: float = 60.0, failure: str = KILLED, ready: bool = True,
         exit_code: int | None = -9):
    return restarts.after_lost("stirring", uptime=uptime, failure=failure, reached_ready=ready,
                               exit_code=exit_code)


def test_the_delay_doubles_from_1_s_to_5_min():
    restarts = Restarts()
    delays = [fail(restarts).delay for _ in range(12)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, MAX_DELAY, MAX_DELAY, MAX_DELAY]


def test_ten_minutes_up_starts_the_backoff_again():
    restarts = Restarts()
    for _ in range(4):
        fail(restarts)
    assert fail(restarts, uptime=600.0).delay == 1
    assert fail(restarts).delay == 2


@pytest.mark.parametrize("failures, gives_up", [
    ([KILLED] * GIVE_UP_AFTER, True),
    ([KILLED] * (GIVE_UP_AFTER - 1), False),
    ([KILLED, KILLED, "exited with code 1", KILLED, KILLED], False),  # not the same way
])
def test_five_quick_failures_the_same_way_give_up(failures, gives_up):
    restarts = Restarts()
    verdicts = [fail(restarts, uptime=2.0, failure=f) for f in failures]
    assert verdicts[-1].gave_up is gives_up
    assert (verdicts[-1].delay is None) is gives_up
    assert all(v.delay is not None for v in verdicts[:-1])


def test_slow_failures_never_give_up():
    restarts = Restarts()
    assert all(fail(restarts, uptime=30.0).delay for _ in range(2 * GIVE_UP_AFTER))


@pytest.mark.parametrize("ready, exit_code, why", [
    (True, 78, "exit code 78 is a configuration error"),
    (False, 1, "it never reached ready"),
])
def test_what_is_never_restarted(ready, exit_code, why):
    verdict = fail(Restarts(), ready=ready, exit_code=exit_code)
    assert (verdict.delay, verdict.why_not, verdict.gave_up) == (None, why, False)


def test_restart_is_read_from_each_jobs_section(tmp_path):
    path = tmp_path / "pioreactord.ini"
    path.write_text(render_ini() + "[stirring]\nrestart = on-failure\n[od_reading]\nrestart = no\n")
    assert Config.load(str(path)).restart_on_failure == {"stirring"}
    path.write_text(render_ini() + "[stirring]\nrestart = always\n")
    with pytest.raises(ConfigError, match=r"\[stirring\] restart = 'always' is not one of no, "
                                          "on-failure"):
        Config.load(str(path))
