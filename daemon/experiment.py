"""The unit's current experiment, kept in `state_dir/experiment` across restarts."""

from __future__ import annotations

import os
from pathlib import Path

from .names import BadName, check_experiment


class ExperimentStore:
    def __init__(self, state_dir: Path, initial: str) -> None:
        self._path = state_dir / "experiment"
        self.current = initial
        self.problems: list[str] = []  # for the daemon to log at ERROR once its logging is up
        try:
            persisted = self._path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"ignored the persisted experiment in {self._path} ({exc}); "
                                 f"using {initial!r}")
            return
        if not persisted:
            return
        try:
            self.current = check_experiment(persisted)
        except BadName as exc:
            # A bad name here would make the broker drop our connection at every start.
            self.problems.append(f"ignored the persisted experiment in {self._path}: {exc}; "
                                 f"using {initial!r}")

    def set(self, name: str) -> str:
        """Change and persist (atomically: a crash leaves the old or the new name, never half).
        BadName (a ValueError) if `name` cannot be an experiment's name."""
        name = check_experiment(name.strip() if isinstance(name, str) else name)
        previous, self.current = self.current, name
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(name + "\n", encoding="utf-8")
        os.replace(tmp, self._path)
        return previous
