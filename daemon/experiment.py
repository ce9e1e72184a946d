"""The unit's current experiment, kept in `state_dir/experiment` across restarts."""

from __future__ import annotations

import os
from pathlib import Path


class ExperimentStore:
    def __init__(self, state_dir: Path, initial: str) -> None:
        self._path = state_dir / "experiment"
        try:
            self.current = self._path.read_text(encoding="utf-8").strip() or initial
        except FileNotFoundError:
            self.current = initial

    def set(self, name: str) -> str:
        """Change and persist (atomically: a crash leaves the old or the new name, never half)."""
        name = name.strip()
        if not name or "/" in name or "+" in name or "#" in name:
            raise ValueError(f"{name!r} is not a valid experiment name (no '/', '+', '#')")
        previous, self.current = self.current, name
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(name + "\n", encoding="utf-8")
        os.replace(tmp, self._path)
        return previous
