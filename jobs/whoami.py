"""Who and where this job is: the unit name and the experiment it runs under.

A job the daemon started gets both in its environment. A job started by hand asks the running
daemon (its current experiment), and falls back to the config file if none answers.
`get_assigned_experiment_name(unit)` is Pioreactor's newer name for the same answer (one unit per
daemon: the unit's experiment). `UNIVERSAL_EXPERIMENT` (`$experiment`) is the experiment of jobs
that belong to no experiment; `UNIVERSAL_IDENTIFIER` (`$broadcast`) addresses every unit.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from pioreactord.protocol import EXPERIMENT_ENV, UNIT_ENV

UNIVERSAL_EXPERIMENT = "$experiment"
UNIVERSAL_IDENTIFIER = "$broadcast"
NO_EXPERIMENT = "$no_experiment_present"


def get_unit_name() -> str:
    return os.environ.get(UNIT_ENV) or str(_ask_daemon().get("unit") or _config_unit())


def get_latest_experiment_name() -> str:
    if os.environ.get(EXPERIMENT_ENV):
        return os.environ[EXPERIMENT_ENV]
    from pioreactor.config import config

    return str(_ask_daemon().get("experiment")
               or config.get("pioreactord", "experiment", fallback="exp1"))


def get_assigned_experiment_name(unit_name: str | None = None) -> str:
    """The experiment `unit_name` (this unit) is assigned to."""
    return get_latest_experiment_name()


def get_hostname() -> str:
    return get_unit_name()


def is_testing_env() -> bool:
    """True under pytest or with TESTING=1 in the environment, as in Pioreactor."""
    import sys

    return "pytest" in sys.modules or os.environ.get("TESTING", "") == "1"


def is_active(unit_name: str | None = None) -> bool:
    """Pioreactor asks its leader's inventory; a unit under pioreactord is always active."""
    return True


def am_I_leader() -> bool:
    """One daemon, one unit: it is its own leader."""
    return True


def am_I_a_worker() -> bool:
    return True


def _config_unit() -> str:
    from pioreactor.config import configured_unit

    return configured_unit()


@functools.lru_cache(maxsize=1)
def _ask_daemon() -> dict[str, Any]:
    from pioreactor.config import job_socket_path
    from pioreactord.client import Unreachable, call

    try:
        reply = call(job_socket_path(), {"t": "whoami"}, timeout=2.0)
    except (Unreachable, OSError):
        return {}
    return dict(reply.get("result") or {})
