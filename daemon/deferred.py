"""Modules the daemon's libraries import and the daemon never uses, loaded on first use instead.

structlog imports asyncio (for its async loggers) and paho imports urllib.request (for proxies,
used only with PySocks installed). The daemon uses neither: measured, they and what they pull
in (ssl, email, http, tempfile, ...) hold about 5 MiB of its 34. paho also imports ssl (for
TLS) and hashlib (for websockets): without TLS the daemon uses neither, and their OpenSSL
(libcrypto, libssl) is another 4.4 MiB of RSS. `defer(name)`, called before
those libraries are imported, puts a stand-in module in `sys.modules`: an `import` statement
binds it without loading anything, and the first attribute anyone reads from it (a function,
`__path__` for a submodule import, `from name import x`) imports the real module, whose
contents the stand-in then carries too. (importlib.util.LazyLoader cannot do this: an `import`
statement reads `__spec__`, which makes it load at once.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


class _StandIn(types.ModuleType):
    def __getattr__(self, attribute: str) -> Any:
        return getattr(_load(self), attribute)


def _load(stand_in: _StandIn) -> types.ModuleType:
    name = stand_in.__name__
    if sys.modules.get(name) is stand_in:
        del sys.modules[name]
    module = importlib.import_module(name)
    stand_in.__dict__.update(module.__dict__)  # whoever bound the stand-in now sees the module
    return module


def defer(*names: str, placeholders: dict[str, Any] | None = None) -> None:
    """Stand-ins for `names` that are neither loaded nor missing (else nothing changes).
    `placeholders`: attributes a stand-in answers without loading (the real ones replace them
    when it loads)."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)  # imports the parent package, not the module
        if spec is None:
            continue
        stand_in = _StandIn(name)
        stand_in.__spec__ = spec
        stand_in.__dict__.update(placeholders or {})
        sys.modules[name] = stand_in
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, stand_in)


class _NeverRaised(Exception):
    """Stands for an ssl exception class while ssl is not loaded: nothing can raise the real
    one before it is (only an SSL socket does, and making one loads ssl)."""


def defer_unused_modules(tls: bool) -> None:
    """What the daemon's libraries import and it does not use; without `tls`, ssl and hashlib
    too. paho names ssl.SSLWantReadError and SSLWantWriteError in the `except` clauses of every
    socket read and write, and the bridge checks a failed connection for ssl.SSLError: those
    are placeholders, so a plain socket's error (a reset, a refused connection, a full buffer)
    does not load ssl."""
    defer("asyncio", "urllib.request")  # structlog's and paho's
    if not tls:
        defer("hashlib")
        defer("ssl", placeholders=dict.fromkeys(
            ("SSLError", "SSLWantReadError", "SSLWantWriteError"), _NeverRaised))
