"""`pioctl mqtt`: broker messages streamed through the daemon, and the stream never leaks."""

from __future__ import annotations

import signal
import subprocess

from tests.support.daemon import BIN
from tests.support.waiting import wait_for


def streams(d) -> int:
    """Open `pioctl mqtt` streams, from the daemon's ping (pioctl has no ping command)."""
    from pioreactord.client import call

    reply = call(str(d.root / "run" / "control.sock"), {"t": "call", "cmd": "ping"}, timeout=5)
    return reply["result"]["streams"]


def mqtt(d, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "pioctl"), "mqtt", *args], env=d.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_pioctl_mqtt_prints_retained_and_live_messages(make_daemon, watcher):
    d = make_daemon().start()
    base = f"pioreactor/{d.unit}/exp1/demo"
    watcher.publish(f"{base}/kept", "one", retain=True)
    process = mqtt(d, "-t", "pioreactor/+/+/demo/#", "-n", "2")
    try:
        wait_for(lambda: streams(d) == 1, 10, "the stream to start")

        def second_arrived() -> bool:
            watcher.publish(f"{base}/live", "two")  # until the broker has our subscription
            return process.poll() is not None

        wait_for(second_arrived, 10, "pioctl mqtt to print two messages", poll=0.2)
        out = process.stdout.read().splitlines()
        assert process.returncode == 0, process.stderr.read()
        assert [line.split(" | ", 1)[1] for line in out] == [f"{base}/kept | one", f"{base}/live | two"]
        assert out[0].split(" | ")[0].endswith("Z")
        wait_for(lambda: streams(d) == 0, 5, "the stream to end when pioctl exits")
    finally:
        process.kill()
        process.wait(5)
        watcher.publish(f"{base}/kept", "", retain=True)


def test_killed_pioctl_mqtt_stream_is_dropped(make_daemon, watcher):
    d = make_daemon().start()
    process = mqtt(d, "-t", f"pioreactor/{d.unit}/#")
    try:
        wait_for(lambda: streams(d) == 1, 10, "the stream to start")
        process.send_signal(signal.SIGKILL)
        process.wait(5)

        def dropped() -> bool:
            watcher.publish(f"pioreactor/{d.unit}/exp1/demo/x", "y")  # the next send fails
            return streams(d) == 0

        wait_for(dropped, 12, "the daemon to drop the stream of a killed pioctl", poll=0.2)
    finally:
        process.kill()
        process.wait(5)


def test_pioctl_mqtt_without_daemon(make_daemon):
    d = make_daemon()
    result = subprocess.run([str(BIN / "pioctl"), "mqtt"], env=d.env, capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 3 and "pioreactord is not reachable" in result.stderr
