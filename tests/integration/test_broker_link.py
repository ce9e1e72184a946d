"""The daemon and its broker (SPEC §4, §7): an unreachable broker is said, a restarted one gets
every current value back, an outage is bounded, a burst of settings ends on its last value."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.broker import Broker, Watcher
from tests.support.daemon import Daemon
from tests.support.plugins import FLOOD_JOB, SETTINGS_JOB
from tests.support.waiting import wait_for


def daemon_lines(d: Daemon, level: str, like: str) -> list[str]:
    return [m for (m,) in d.query("SELECT message FROM logs WHERE task = 'pioreactord' AND "
                                  "level = ? AND message LIKE ?", (level, like))]


def topic(d: Daemon, job: str, leaf: str) -> str:
    return f"pioreactor/{d.unit}/exp1/{job}/{leaf}"


@pytest.fixture
def own_broker():
    made: list[Broker] = []

    def make(**kwargs) -> Broker:
        made.append(Broker(**kwargs))
        return made[-1]

    yield make
    for broker in made:
        broker.stop()


def test_an_unresolvable_broker_name_is_warned_with_its_cause(make_daemon) -> None:
    d = make_daemon(broker_address="nonexistent.invalid").start()
    found = wait_for(lambda: daemon_lines(d, "WARNING", "cannot connect to the broker%"), 10,
                     "the warning")
    assert found[0].startswith("cannot connect to the broker at nonexistent.invalid:")
    assert any(cause in found[0] for cause in ("Name or service not known",
                                               "Temporary failure in name resolution"))
    assert "check [mqtt] broker_address and broker_port" in found[0]


def test_a_closed_port_is_warned_then_connected_when_the_broker_starts(make_daemon, own_broker) -> None:
    broker = own_broker(start=False)
    d = make_daemon().__class__(broker.port)  # not the session broker's port
    try:
        d.start()
        found = wait_for(lambda: daemon_lines(d, "WARNING", "cannot connect to the broker%"), 10,
                         "the warning")
        assert "Connection refused" in found[0]
        broker.start()
        watcher = Watcher(broker.port, f"pioreactor/{d.unit}/#")
        watcher.wait(f"pioreactor/{d.unit}/$experiment/pioreactord/$state", "ready", timeout=15)
        watcher.close()
        wait_for(lambda: daemon_lines(d, "INFO", "connected to the broker after%"), 5, "the INFO")
    finally:
        d.cleanup()


def test_a_restarted_broker_gets_every_jobs_state_and_settings_back(make_daemon, own_broker) -> None:
    broker = own_broker()
    d = Daemon(broker.port)
    try:
        d.add_plugin("tester", SETTINGS_JOB)
        d.start()
        d.pioctl("start", "tester")
        d.pioctl("start", "stirring")
        before = Watcher(broker.port, f"pioreactor/{d.unit}/#")
        for job, leaf, value in (("tester", "$state", "ready"), ("tester", "count", "3"),
                                 ("stirring", "$state", "ready")):
            before.wait(topic(d, job, leaf), value)
        wait_for(lambda: before.last(topic(d, "stirring", "target_rpm")), 10, "stirring settings")
        steady = {topic(d, "stirring", leaf) for leaf in ("$state", "target_rpm")}
        expected = {m.topic for m in before.messages if "/tester/" in m.topic or m.topic in steady}
        expected = {t: before.last(t).payload for t in expected if before.last(t).payload}
        assert len(expected) >= 7, sorted(expected)  # tester: $state, valued settings; stirring
        before.close()
        broker.restart()  # persistence off: it forgot every retained message
        restarted = time.monotonic()
        watcher = Watcher(broker.port, f"pioreactor/{d.unit}/#")
        for name, value in expected.items():
            watcher.wait(name, value.decode(), timeout=max(0.1, restarted + 2.5 - time.monotonic()))
        took = time.monotonic() - restarted
        live = [m.topic for m in watcher.messages if not m.retain]
        watcher.close()
        print(f"every job's $state and settings back {took:.2f} s after the broker restarted")
        for job in ("tester", "stirring"):
            mine = [t for t in live if f"/{job}/" in t and t in expected]
            if mine:  # seen live (the watcher was first): `$state` is the job's last
                assert mine[-1] == topic(d, job, "$state"), mine
        fresh = Watcher(broker.port, f"pioreactor/{d.unit}/#")
        for name, value in expected.items():
            assert fresh.wait(name).retain and fresh.last(name).payload == value
        fresh.close()
    finally:
        d.cleanup()


def test_a_long_outage_is_bounded_and_keeps_the_newest_lines(make_daemon, own_broker) -> None:
    """CI-sized bench/outage.py: the broker down while a job logs more than the bound."""
    from pioreactord.outbox import MAX_STREAM

    broker = own_broker()
    d = Daemon(broker.port)
    try:
        d.add_plugin("flood", FLOOD_JOB)
        d.start()
        d.pioctl("start", "flood")
        broker.kill()
        lines = MAX_STREAM + 5_000
        d.pioctl("set", "flood", "burst", str(lines))
        wait_for(lambda: d.query("SELECT count(*) FROM logs WHERE task = 'flood' AND message = ?",
                                 (f"line {lines}",))[0][0], 60, "the last line in SQLite")
        # The watcher subscribes before the daemon can reconnect: a QoS-0 line the daemon sent
        # before that would never reach it (CI once saw 323 such lines of a reconnect that won).
        os.kill(d.process.pid, signal.SIGSTOP)
        try:
            broker.start()
            watcher = Watcher(broker.port, f"pioreactor/{d.unit}/#")
        finally:
            os.kill(d.process.pid, signal.SIGCONT)
        watcher.wait(topic(d, "flood", "sent"), str(lines), timeout=20)
        logs = f"pioreactor/{d.unit}/exp1/logs/flood/info"

        def numbers() -> list[int]:
            return [int(m.text.split('"message":"line ')[1].split('"')[0])
                    for m in watcher.find(logs) if '"message":"line ' in m.text]

        wait_for(lambda: numbers() and numbers()[-1] == lines, 30, "the newest line on MQTT")
        got = numbers()
        watcher.close()
        assert got == sorted(got) and len(got) <= MAX_STREAM and len(got) >= MAX_STREAM - 200
        dropped = wait_for(lambda: daemon_lines(d, "WARNING", "%dropped while it was away%"), 5,
                           "the drop reported")
        assert int(dropped[0].split()[0]) >= lines - MAX_STREAM
    finally:
        d.cleanup()


def test_a_burst_of_settings_ends_on_its_last_value(make_daemon, own_broker) -> None:
    """20,000 values of one setting through a stock mosquitto to a QoS 2 subscriber."""
    broker = own_broker(stock=True)
    d = Daemon(broker.port)
    try:
        d.add_plugin("flood", FLOOD_JOB)
        d.start()
        d.pioctl("start", "flood")
        watcher = Watcher(broker.port, f"pioreactor/{d.unit}/#")
        d.pioctl("set", "flood", "spin", "20000")
        watcher.wait(topic(d, "flood", "value"), "20000", timeout=60)
        wait_for(lambda: d.status()["flood"]["settings"].get("value") in (20000, "20000"), 10,
                 "the daemon has the last value")
        assert watcher.last(topic(d, "flood", "value")).text == "20000"
        seen = len(watcher.find(topic(d, "flood", "value")))
        watcher.close()
        fresh = Watcher(broker.port, topic(d, "flood", "value"))
        assert fresh.wait(topic(d, "flood", "value")).text == "20000"
        fresh.close()
        print(f"the subscriber saw {seen} of 20000 values, the last one last")
    finally:
        d.cleanup()
