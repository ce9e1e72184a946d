"""Plugins for the storage tests and benchmarks: a job that logs in bulk, and one that prints."""

LOGGER_JOB = '''
import sys
import time

import click
from pioreactor.background_jobs.base import BackgroundJob


class Logger(BackgroundJob):
    job_name = "logger"
    published_settings = {}


@click.command(name="logger")
@click.option("--count", type=int, default=0, help="log lines to send once ready")
@click.option("--size", type=int, default=40, help="bytes per line")
@click.option("--tag", default="bulk")
def click_logger(count, size, tag):
    """Logs `count` numbered lines as fast as it can, then `<tag> done`, and waits."""
    job = Logger()
    pad = "x" * max(0, size - 20)
    for i in range(count):
        job.logger.info(f"{tag} {i} {pad}")
    job.logger.info(f"{tag} done")
    job.block_until_disconnected()
'''

PRINTER_JOB = '''
import os
import sys
import time

import click
from pioreactor.background_jobs.base import BackgroundJob


class Printer(BackgroundJob):
    job_name = "printer"
    published_settings = {}


@click.command(name="printer")
@click.option("--progress", type=int, default=0, help="progress redraws to print")
@click.option("--rate", type=float, default=100.0, help="progress updates per second")
@click.option("--width", type=int, default=0, help="pad each progress update to this many bytes")
@click.option("--huge", type=int, default=0, help="print one line of this many bytes")
def click_printer(progress, rate, width, huge):
    """Prints to stdout: a carriage-return progress bar, or one huge line; then `printer done`."""
    job = Printer()
    for i in range(progress):
        bar = f"progress {i + 1}/{progress} [" + "#" * (i % 50) + "]"
        sys.stdout.write("\\r" + bar.ljust(width))
        sys.stdout.flush()
        if rate:
            time.sleep(1 / rate)  # the job's own pace (what is measured is the daemon)
    if huge:
        os.write(1, b"h" * huge + b"\\n")
    print("\\nprinter done", flush=True)
    job.block_until_disconnected()
'''
