"""Who and where this job is: the unit name and the experiment it runs under.

A job the daemon started gets both in its environment. A job started by hand asks the running
daemon (its current experiment), and falls back to the config file if none answers.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from pioreactord.protocol import EXPERIMENT_ENV, UNIT_ENV


def get_unit_name() -> str:
    return os.environ.get(UNIT_ENV) or str(_ask_daemon().get("unit") or _config_unit())


def get_latest_experiment_name() -> str:
    if os.environ.get(EXPERIMENT_ENV):
        return os.environ[EXPERIMENT_ENV]
    from pioreactor.config import config

    return str(_ask_daemon().get("experiment")
               or config.get("pioreactord", "experiment", fallback="exp1"))


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
