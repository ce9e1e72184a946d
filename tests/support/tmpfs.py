"""A small tmpfs of its own for a test: a full disk or a read-only directory, for real.

Mounting needs root (CAP_SYS_ADMIN): where it fails, the test is skipped and says why.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(size: str, *, read_only: bool = False) -> Iterator[Path]:
    point = Path(tempfile.mkdtemp(prefix="pdfs", dir="/tmp"))
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        point.rmdir()
        reason = f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}"
        if os.environ.get("PIOREACTORD_REQUIRE_ROOT"):
            pytest.fail(reason)  # CI runs as root: there, a skip would prove nothing
        pytest.skip(reason)
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)
        point.rmdir()


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError:  # ENOSPC, then smaller pieces to take the last bytes too
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 16 or 1]
    finally:
        os.close(fd)
    return filler
