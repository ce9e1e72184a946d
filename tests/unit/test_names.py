"""The name and topic rules of `pioreactord.names` (what mosquitto would reject, and SPEC §5)."""

from __future__ import annotations

import pytest

from pioreactord import names
from pioreactord.experiment import ExperimentStore
from pioreactord.names import BadName


@pytest.mark.parametrize("name", ["stirring", "od_reading", "_private", "job2", "a" * 64])
def test_job_names_that_are_lowercase_identifiers_pass(name):
    assert names.check_job_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("we+ird", "lowercase letters"), ("evil/name", "lowercase"), ("Stirring", "lowercase"),
    ("2fast", "starting with"), ("", "lowercase"), ("a" * 65, "at most 64"),
    ("job#1", "lowercase"), ("$state", "lowercase"), ("my-job", "lowercase"),
    ("exp\x01", "control character U+0001"), ("nul\x00", "U+0000"),
])
def test_job_names_breaking_the_rule_are_refused_saying_why(name, why):
    with pytest.raises(BadName, match="not a valid job name") as caught:
        names.check_job_name(name)
    assert why in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_non_string_name_is_refused():
    with pytest.raises(BadName, match="not a string"):
        names.check_job_name(None)


@pytest.mark.parametrize("name", ["exp1", "Trial 3 - E. coli", "é-coli ünï", "a" * 200, "x"])
def test_free_text_experiments_pass(name):
    assert names.check_experiment(name) == name


@pytest.mark.parametrize("name, why", [
    ("exp\x01b", "control character U+0001"), ("a/b", "'/'"), ("a+b", "'+'"), ("a#", "'#'"),
    ("$experiment", "starts with '$'"), ("$SYS", "starts with '$'"), ("", "empty"),
    ("   ", "empty"), (" padded", "blank"), ("tab\tin", "U+0009"), ("del\x7f", "U+007F"),
    ("c1\x85", "U+0085"), ("lone\ud800", "U+D800"), ("non\ufffe", "U+FFFE"),
    ("non\ufdd0", "U+FDD0"), ("plane\U0010ffff", "U+10FFFF"), ("a" * 201, "longer than 200"),
])
def test_experiments_mosquitto_would_reject_are_refused(name, why):
    with pytest.raises(BadName, match="not a valid experiment name") as caught:
        names.check_experiment(name)
    assert why in str(caught.value)


def test_the_universal_experiment_only_where_allowed():
    assert names.check_experiment("$experiment", allow_universal=True) == "$experiment"
    with pytest.raises(BadName):
        names.check_experiment("$broadcast", allow_universal=True)


@pytest.mark.parametrize("name", ["pio1", "worker-02", "leader.local", "U1_a"])
def test_unit_names_like_host_names_pass(name):
    assert names.check_unit(name) == name


@pytest.mark.parametrize("name", ["$broadcast", "a/b", "-x", "", "a b", "u\x01", "a" * 64])
def test_other_unit_names_are_refused(name):
    with pytest.raises(BadName, match="not a valid unit name"):
        names.check_unit(name)


def test_setting_names_are_identifiers():
    assert names.check_setting("target_rpm") == "target_rpm"
    assert names.check_setting("ODs") == "ODs"
    for bad in ("a+b", "$state", "a/b", "1x", "x\x00"):
        with pytest.raises(BadName, match="not a valid setting name"):
            names.check_setting(bad)


def test_plugin_source_names_are_topic_levels():
    assert names.check_source("pioreactor-relay-plugin") == "pioreactor-relay-plugin"
    with pytest.raises(BadName, match="'/', '\\+' or '#'"):
        names.check_source("evil+name")


def test_publish_topics():
    assert names.check_topic("pioreactor/u1/$experiment/stirring/$state")
    assert names.check_topic("pioreactor/u1/Trial 3/od/ods")
    for bad, why in [("a/+/b", "wildcard"), ("a/#", "wildcard"), ("", "empty"),
                     ("a/\x01/b", "U+0001"), ("a/\ud800", "U+D800"),
                     ("a" * 65_536, "65535 bytes"), ("é" * 40_000, "65535 bytes")]:
        with pytest.raises(BadName) as caught:
            names.check_topic(bad)
        assert why in str(caught.value)
    assert names.check_topic("é" * 30_000)  # 60,000 bytes: within the limit


def test_subscription_filters():
    for good in ("#", "pioreactor/+/+/+/set", "a/+", "+", "pioreactor/u1/#", "a//b"):
        assert names.check_filter(good) == good
    for bad, why in [("a/b#", "whole levels"), ("a/#/b", "last level"), ("a+/b", "whole levels"),
                     ("a/\x00", "U+0000")]:
        with pytest.raises(BadName) as caught:
            names.check_filter(bad)
        assert why in str(caught.value)


@pytest.mark.parametrize("key, value, why", [
    ("unit", "pio 1", "not a valid unit name"), ("unit", "$broadcast", "not a valid unit name"),
    ("experiment", "a/b", "'/'"), ("experiment", "$experiment", "starts with '$'"),
])
def test_the_config_refuses_a_unit_or_experiment_mqtt_cannot_carry(tmp_path, key, value, why):
    from pioreactord.config import Config, ConfigError

    path = tmp_path / "p.ini"
    path.write_text(f"[pioreactord]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        Config.load(str(path))
    assert f"[pioreactord] {key}" in str(caught.value) and why in str(caught.value)


def test_experiment_store_refuses_a_bad_name_and_keeps_the_old(tmp_path):
    store = ExperimentStore(tmp_path, "exp1")
    with pytest.raises(ValueError, match="control character U\\+0001"):
        store.set("exp\x01b")
    assert store.current == "exp1"
    assert not (tmp_path / "experiment").exists()
    assert store.set(" exp2 ") == "exp1"
    assert ExperimentStore(tmp_path, "exp1").current == "exp2"


def test_a_persisted_bad_experiment_is_ignored_with_a_problem_to_log(tmp_path):
    (tmp_path / "experiment").write_text("exp\x01b\n", encoding="utf-8")
    store = ExperimentStore(tmp_path, "exp1")
    assert store.current == "exp1"
    assert len(store.problems) == 1 and "control character U+0001" in store.problems[0]
    (tmp_path / "experiment").write_bytes(b"\xff\xfe\n")
    store = ExperimentStore(tmp_path, "exp1")
    assert store.current == "exp1" and store.problems
