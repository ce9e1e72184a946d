"""`pioreactor.cli.pio`: the names plugins read from Pioreactor's `pio` command.

`JOBS_TO_SKIP_KILLING`: job names `pio kill --all-jobs` leaves alone. Older plugins append their
job's name at import to be long-running; a job whose name is in it registers as long-running, so
`pioctl stop --all` spares it (as it spares the LongRunning* classes).
"""

from __future__ import annotations

JOBS_TO_SKIP_KILLING: list[str] = ["monitor", "mqtt_to_db_streaming", "watchdog"]
