"""`python -m pioreactor.runner JOB ARGS...`: what a spawned job process runs.

Finds JOB's click command (built-in or plugin), runs it with ARGS exactly as `pio run` would, and
turns the outcome into an exit status the daemon understands (pioreactord.protocol): 0 done,
1 the job raised (traceback on stderr, which the daemon captures; for a pin held by another job
just the line naming the holder), 2 bad options (click's usage message), 75 refused (already
running), 78 no such job.
"""

from __future__ import annotations

import os
import sys
import traceback


def main(argv: list[str]) -> int:
    from pioreactord.protocol import EXIT_FAILED, EXIT_REFUSED, EXIT_UNKNOWN_JOB, SOURCE_ENV

    if not argv:
        print("usage: python -m pioreactor.runner JOB [ARGS...]", file=sys.stderr)
        return EXIT_UNKNOWN_JOB
    name, args = argv[0], argv[1:]
    import click

    from pioreactor.background_jobs.base import JobAlreadyRunning
    from pioreactor.catalog import discover, find, not_found_reason
    from pioreactor.utils.pwm import PWMLockError

    try:
        entry = find(name)
    except Exception as exc:  # noqa: BLE001 - e.g. an unreadable config
        print(f"cannot look up job {name!r}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if entry is None:
        print(not_found_reason(name, discover()), file=sys.stderr)
        return EXIT_UNKNOWN_JOB
    os.environ[SOURCE_ENV] = entry.source
    assert entry.command is not None
    try:
        entry.command.main(args=args, prog_name=f"pioctl start {name}", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:  # --help
        return exc.exit_code
    except JobAlreadyRunning as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    except PWMLockError as exc:  # a pin held by another job: the holder is the whole story
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    except (KeyboardInterrupt, click.Abort):
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - the job's own failure: its traceback is its report
        print_job_traceback(exc)
        return EXIT_FAILED
    return 0


def print_job_traceback(exc: BaseException) -> None:
    """The traceback from the job's own code on: the runner's and click's frames say nothing."""
    import click

    skip = (os.path.dirname(click.__file__), __file__)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(skip):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
