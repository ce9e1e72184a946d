"""daemon/deferred.py: a deferred module loads at its first use, whatever the use."""

from __future__ import annotations

import sys

import pytest

from pioreactord.deferred import defer

PACKAGE = {"__init__.py": "from .inner import VALUE\nLOADS = []\nLOADS.append('loaded')\n",
           "inner.py": "VALUE = 42\n", "extra.py": "EXTRA = 'extra'\n"}


@pytest.fixture
def package(tmp_path, monkeypatch):
    root = tmp_path / "deferme"
    root.mkdir()
    for name, text in PACKAGE.items():
        (root / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "deferme"
    for name in [m for m in sys.modules if m == "deferme" or m.startswith("deferme.")]:
        del sys.modules[name]


def test_an_import_statement_loads_nothing_and_the_first_attribute_loads_it(package):
    defer(package)
    import deferme

    assert "deferme.inner" not in sys.modules
    assert deferme.VALUE == 42 and deferme.LOADS == ["loaded"]
    assert "deferme.inner" in sys.modules and sys.modules["deferme"] is not deferme
    assert deferme.LOADS is sys.modules["deferme"].LOADS  # the stand-in carries the module


def test_from_import_and_submodules_load_it(package):
    defer(package)
    from deferme import VALUE
    from deferme.extra import EXTRA

    assert (VALUE, EXTRA) == (42, "extra")
    assert sys.modules["deferme"].LOADS == ["loaded"]  # loaded once


def test_a_loaded_or_missing_module_is_left_alone():
    loaded = sys.modules["json"]
    defer("json", "no_such_module_anywhere")
    assert sys.modules["json"] is loaded and "no_such_module_anywhere" not in sys.modules


def test_a_deferred_module_answers_its_placeholders_until_it_loads(package):
    class Placeholder(Exception):
        pass

    defer(package, placeholders={"VALUE": Placeholder, "OTHER": Placeholder})
    import deferme

    assert deferme.OTHER is Placeholder and "deferme.inner" not in sys.modules  # nothing loaded
    assert deferme.LOADS == ["loaded"]  # a name it has no placeholder for loads it
    assert deferme.VALUE == 42  # and the real names replace the placeholders


def test_without_tls_paho_and_the_bridge_run_without_ssl_or_openssl():
    """A daemon without TLS never loads ssl (nor hashlib's OpenSSL): a refused connection and a
    plain socket's errors are handled with the placeholders. Run in a fresh interpreter."""
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import socket, sys
        from pioreactord.deferred import defer_unused_modules
        defer_unused_modules(tls=False)
        from pioreactord.bridge import describe_failure
        import paho.mqtt.client as mqtt
        print(describe_failure(ConnectionRefusedError(111, "Connection refused")))
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2) if hasattr(mqtt, "CallbackAPIVersion") else mqtt.Client()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        client._sock = ours
        try:
            client._sock_recv(10)
        except BlockingIOError:
            print("would block")
        loaded = [m for m in ("_ssl", "_hashlib") if m in sys.modules]
        print("loaded:", loaded)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["Connection refused", "would block", "loaded: []"]
