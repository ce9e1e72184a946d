"""etc/pioreactord.ini documents exactly the keys config.py declares, with their defaults and
comments; the rendered INI loads back to the values it shows."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from pioreactord.config import SETTINGS, Config, ConfigError, render_ini

INI = Path(__file__).resolve().parents[2] / "etc" / "pioreactord.ini"
DAEMON_SECTIONS = sorted({s.section for s in SETTINGS})


def _parser(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    parser.read_string(text)
    return parser


def test_the_installed_ini_holds_the_rendered_daemon_sections_verbatim():
    """Same keys, same order, same defaults, each under its declared comment."""
    assert render_ini() in INI.read_text(encoding="utf-8")


def test_the_installed_ini_has_no_undeclared_key_in_a_daemon_section():
    parser = _parser(INI.read_text(encoding="utf-8"))
    for section in DAEMON_SECTIONS:
        declared = [s.key for s in SETTINGS if s.section == section]
        assert list(parser[section]) == declared, section


def test_the_rendered_ini_loads_back_to_its_values(tmp_path):
    path = tmp_path / "pioreactord.ini"
    path.write_text(render_ini({"pioreactord.unit": "u7", "pioreactord.stop_timeout": "2.5",
                                "mqtt.broker_port": "1999", "mqtt.use_tls": "yes"}))
    config = Config.load(str(path))
    assert (config.unit, config.stop_timeout, config.broker_port, config.mqtt_use_tls) == (
        "u7", 2.5, 1999, True)
    assert config.experiment == "exp1" and config.spawner == "forkserver"


@pytest.mark.parametrize("key, value, message", [
    ("pioreactord.stop_timeout", "0", "stop_timeout: '0' must be greater than 0"),
    ("mqtt.broker_port", "70000", "broker_port: '70000' is not a TCP port"),
    ("pioreactord.hardware", "gpio", "hardware = 'gpio' is not one of auto, simulated"),
])
def test_a_bad_value_is_one_line_naming_the_key(tmp_path, key, value, message):
    path = tmp_path / "pioreactord.ini"
    path.write_text(render_ini({key: value}))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as error:
        Config.load(str(path))
    assert "\n" not in str(error.value)
