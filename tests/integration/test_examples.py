"""The examples/ folder: each example runs as a plugin and by hand."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_led_glow_as_plugin_and_set(make_daemon, watcher):
    d = make_daemon()
    shutil.copy(EXAMPLES / "led_glow.py", d.plugins)
    d.start()
    d.pioctl("start", "led_glow", "--intensity", "15")
    leds = f"pioreactor/{d.unit}/exp1/leds/intensity"
    watcher.wait(leds, predicate=lambda m: json.loads(m.payload)["B"] == 15.0)
    d.pioctl("set", "led_glow", "intensity", "40")
    watcher.wait(f"pioreactor/{d.unit}/exp1/led_glow/intensity", "40.0")
    since = time.monotonic()
    d.pioctl("stop", "led_glow")
    watcher.wait(leds, predicate=lambda m: json.loads(m.payload)["B"] == 0.0, since=since)


def test_air_pump_by_hand(make_daemon, watcher):
    d = make_daemon(extra_ini="[air_pump]\nbase_duty_cycle = 15\nhz = 200\n")
    d.config.write_text(d.config.read_text().replace("3 = alt_media", "3 = alt_media\n4 = air_pump"))
    d.start()
    script = d.root / "air_pump.py"
    shutil.copy(EXAMPLES / "air_pump.py", script)
    process = d.run_by_hand(script)
    pwms = f"pioreactor/{d.unit}/exp1/pwms/dc"
    try:
        watcher.wait(pwms, predicate=lambda m: json.loads(m.payload) == {"12": 15.0}, timeout=15)
        watcher.publish(f"pioreactor/{d.unit}/exp1/growth_rate_calculating/od_filtered",
                        json.dumps({"od_filtered": 2.0}))
        watcher.wait(pwms, predicate=lambda m: json.loads(m.payload) == {"12": 30.0})
        since = time.monotonic()
        d.pioctl("stop", "air_pump")
        process.wait(10)
        watcher.wait(pwms, predicate=lambda m: json.loads(m.payload) == {}, since=since)
    finally:
        process.kill()
        process.wait(5)
