from __future__ import annotations

import pytest

from tests.support.broker import Broker, Watcher
from tests.support.daemon import Daemon


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _failed(request) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is not None and report.failed


@pytest.fixture(scope="session")
def broker():
    broker = Broker()
    yield broker
    broker.stop()


@pytest.fixture
def make_daemon(broker, request):
    made: list[Daemon] = []

    def make(**kwargs) -> Daemon:
        daemon = Daemon(broker.port, **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if _failed(request):  # shown under "Captured stdout teardown": what the daemon saw
            print(f"--- daemon {daemon.unit}: last lines of its log ---")
            try:
                print("\n".join(daemon.log_text().splitlines()[-80:]))
            except OSError as exc:
                print(f"(no log: {exc})")
        daemon.cleanup()


@pytest.fixture(params=["forkserver", "exec"])
def spawner(request) -> str:
    """Runs a test once per spawner: jobs forked from the fork server, and exec'd."""
    return request.param


@pytest.fixture
def watcher(broker, request):
    w = Watcher(broker.port, "pioreactor/#")
    yield w
    if _failed(request):
        print("--- messages the watcher saw (last 60) ---")
        for seen in w.messages[-60:]:
            print(f"{seen.at:.3f} {seen.topic} {seen.payload[:120]!r} retain={seen.retain}")
    w.close()
