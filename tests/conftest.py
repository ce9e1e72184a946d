from __future__ import annotations

import pytest

from tests.support.broker import Broker, Watcher
from tests.support.daemon import Daemon


@pytest.fixture(scope="session")
def broker():
    broker = Broker()
    yield broker
    broker.stop()


@pytest.fixture
def make_daemon(broker):
    made: list[Daemon] = []

    def make(**kwargs) -> Daemon:
        daemon = Daemon(broker.port, **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.cleanup()


@pytest.fixture(params=["forkserver", "exec"])
def spawner(request) -> str:
    """Runs a test once per spawner: jobs forked from the fork server, and exec'd."""
    return request.param


@pytest.fixture
def watcher(broker):
    w = Watcher(broker.port, "pioreactor/#")
    yield w
    w.close()
