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
