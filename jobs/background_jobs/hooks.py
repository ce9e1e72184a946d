"""The transition hooks of Pioreactor's BackgroundJob, as no-ops a subclass overrides.

`set_state(new)` calls `on_<old>_to_<new>()`, then `on_<new>()`. Each is defined here doing
nothing, so a subclass can always chain with `super().on_ready_to_sleeping()` (the Contrib classes
and plugins built on other plugins do), whichever class in between defines it.
"""

from __future__ import annotations


class TransitionHooks:
    # --- on entering a state -----------------------------------------------------------------
    def on_init(self) -> None:
        """After BackgroundJob.__init__ registered the job, before the subclass's __init__ goes on."""

    def on_ready(self) -> None:
        """Entered `ready` (from init or sleeping)."""

    def on_sleeping(self) -> None:
        """Entered `sleeping`."""

    def on_disconnected(self) -> None:
        """Stopping: release what the job holds (the daemon frees its pins either way)."""

    # --- on one transition ------------------------------------------------------------------
    def on_init_to_ready(self) -> None: ...

    def on_init_to_sleeping(self) -> None: ...

    def on_init_to_disconnected(self) -> None: ...

    def on_init_to_lost(self) -> None: ...

    def on_ready_to_sleeping(self) -> None: ...

    def on_ready_to_disconnected(self) -> None: ...

    def on_ready_to_init(self) -> None: ...

    def on_ready_to_lost(self) -> None: ...

    def on_sleeping_to_ready(self) -> None: ...

    def on_sleeping_to_disconnected(self) -> None: ...

    def on_sleeping_to_init(self) -> None: ...

    def on_sleeping_to_lost(self) -> None: ...

    def on_disconnected_to_ready(self) -> None: ...

    def on_disconnected_to_sleeping(self) -> None: ...

    def on_disconnected_to_init(self) -> None: ...

    def on_disconnected_to_lost(self) -> None: ...
