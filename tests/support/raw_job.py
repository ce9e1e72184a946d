"""A job written by hand with raw ZeroMQ frames, run as its own process (`python -c`): what a
client of jobs.sock can send without the job runtime. `run_raw_job(daemon, body)` runs
REGISTERED + `body`; the script gets the socket path as argv[1]."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

# Connects, defines ask(header) -> the reply with the same id, and registers as "byhand".
REGISTERED = """
import json, os, sys, zmq
from pioreactord.protocol import decode, encode
s = zmq.Context.instance().socket(zmq.DEALER)
s.connect("ipc://" + sys.argv[1])
def ask(header):
    s.send_multipart(encode(header))
    while True:
        reply, _ = decode(s.recv_multipart())
        if reply.get("id") == header["id"]:
            return reply
assert ask({"t": "register", "job_name": "byhand", "pid": os.getpid(), "id": "r",
            "experiment": "exp1", "source": "app", "settings": {}})["ok"]
"""


def run_raw_job(daemon: Any, body: str) -> subprocess.CompletedProcess[str]:
    """Run the registered by-hand job with `body` against `daemon`; fails the test on a non-zero
    exit, with the script's stderr."""
    result = subprocess.run([sys.executable, "-c", REGISTERED + body,
                             str(daemon.root / "run" / "jobs.sock")],
                            env=daemon.env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result
