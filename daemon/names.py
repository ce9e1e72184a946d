"""The names that become MQTT topic levels, and the topics themselves: what is allowed, and why.

Pure (no I/O, only `re`), so jobs import it too. Every `check_*` returns the name unchanged or
raises `BadName` with a one-line reason meant for the user.

Why so strict: mosquitto drops the connection of a client that publishes or subscribes with a
malformed topic (a control character, a lone surrogate, a Unicode non-character, a wildcard in a
publish topic) -- for the daemon that means every job goes dark on MQTT, and a persisted bad name
would do it again after every restart. So a name is checked where it enters (pioctl, MQTT, the
config, the job catalog, a registration) and `check_topic` guards the publish path as a last line.

    name         rule
    job          lowercase identifier: [a-z_][a-z0-9_]*, at most 64 characters (SPEC §5's spirit)
    setting      identifier: [A-Za-z_][A-Za-z0-9_]*, at most 64 characters (a Python attribute)
    unit         [A-Za-z0-9][A-Za-z0-9._-]*, at most 63 characters (a host name)
    experiment   free text (Pioreactor's are, "Trial 3 - E. coli"), at most 200 characters; no
                 '/', '+', '#', no control or non-characters, not starting with '$' (only the
                 special `$experiment` where a topic allows it), no leading/trailing blanks
    source       (a plugin's name, in logs/{source}/...): as a topic level, at most 100 characters
    topic        UTF-8 of at most 65,535 bytes, no control or non-characters, no NUL; a publish
                 topic has no '+' or '#'; a filter has them only as whole levels ('#' last)
"""

from __future__ import annotations

import functools
import re

UNIVERSAL_EXPERIMENT = "$experiment"
BROADCAST_UNIT = "$broadcast"
MAX_TOPIC_BYTES = 65_535

JOB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
UNIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
EXPERIMENT_MAX, SOURCE_MAX = 200, 100

# What mosquitto refuses in any UTF-8 string of the protocol (its mosquitto_validate_utf8): C0 and
# C1 control characters (NUL included), DEL, surrogates (Python lets a lone one into a str), and
# the Unicode non-characters U+FDD0..U+FDEF and U+xFFFE/U+xFFFF of every plane.
_NONCHARACTERS = "".join(f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}"
                         for plane in range(17))
_FORBIDDEN = re.compile(f"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef{_NONCHARACTERS}]")
_WILDCARD = re.compile(r"[+#]")


class BadName(ValueError):
    """A name or topic that must not be used; the text says which rule it breaks."""


def _forbidden_character(text: str) -> str | None:
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    kind = "control character" if ord(found.group()) <= 0x9F else "character"
    return f"it contains the {kind} U+{ord(found.group()):04X}"


def _refuse(what: str, name: object, why: str) -> BadName:
    shown = repr(name) if len(str(name)) <= 80 else repr(str(name)[:80]) + "..."
    return BadName(f"{shown} is not a valid {what}: {why}")


def _check_pattern(what: str, name: object, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(name, str):
        raise _refuse(what, name, f"it is a {type(name).__name__}, not a string")
    if pattern.fullmatch(name) is None:
        why = _forbidden_character(name) or rule
        raise _refuse(what, name, why)
    return name


def check_job_name(name: object) -> str:
    return _check_pattern("job name", name, JOB_NAME, "use lowercase letters, digits and '_', "
                          "starting with a letter or '_', at most 64 characters")


def check_setting(name: object) -> str:
    return _check_pattern("setting name", name, SETTING_NAME, "use letters, digits and '_', "
                          "starting with a letter or '_', at most 64 characters")


def check_unit(name: object) -> str:
    return _check_pattern("unit name", name, UNIT_NAME, "use letters, digits, '.', '_' and '-', "
                          "starting with a letter or digit, at most 63 characters")


def check_topic_level(what: str, name: object, max_length: int) -> str:
    """A free-text name that becomes one topic level."""
    if not isinstance(name, str):
        raise _refuse(what, name, f"it is a {type(name).__name__}, not a string")
    if not name.strip():
        raise _refuse(what, name, "it is empty")
    why = _forbidden_character(name)
    if why is None and ("/" in name or _WILDCARD.search(name)):
        why = "it contains '/', '+' or '#' (MQTT topic separators and wildcards)"
    if why is None and name.startswith("$"):
        why = "it starts with '$' (reserved for $experiment, $broadcast and broker topics)"
    if why is None and name != name.strip():
        why = "it starts or ends with a blank"
    if why is None and len(name) > max_length:
        why = f"it is longer than {max_length} characters"
    if why is not None:
        raise _refuse(what, name, why)
    return name


def check_experiment(name: object, *, allow_universal: bool = False) -> str:
    """`allow_universal`: a job may run under `$experiment` (SPEC §4); the unit's own may not."""
    if allow_universal and name == UNIVERSAL_EXPERIMENT:
        return name
    return check_topic_level("experiment name", name, EXPERIMENT_MAX)


def check_source(name: object) -> str:
    """A plugin's name, used as a topic level (`logs/{source}/{level}`)."""
    return check_topic_level("plugin name", name, SOURCE_MAX)


@functools.lru_cache(maxsize=4096)  # log lines repeat a few topics (a bad one raises: not kept)
def check_topic(topic: str) -> str:
    """A topic to publish to: the broker would drop our connection for anything else."""
    _check_topic_text(topic)
    if _WILDCARD.search(topic):
        raise _refuse("topic to publish to", topic, "it contains the wildcard '+' or '#'")
    return topic


def check_filter(pattern: str) -> str:
    """A subscription filter: '+' and '#' only as whole levels, '#' only as the last one."""
    _check_topic_text(pattern)
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if level == "#" and i != len(levels) - 1:
            raise _refuse("topic filter", pattern, "'#' must be the last level")
        if level not in ("+", "#") and _WILDCARD.search(level):
            raise _refuse("topic filter", pattern, "'+' and '#' must be whole levels")
    return pattern


def _check_topic_text(topic: object) -> None:
    if not isinstance(topic, str) or not topic:
        raise _refuse("topic", topic, "it is empty or not a string")
    why = _forbidden_character(topic)
    if why is None and len(topic) * 4 > MAX_TOPIC_BYTES and len(topic.encode()) > MAX_TOPIC_BYTES:
        why = f"it is longer than {MAX_TOPIC_BYTES} bytes in UTF-8"
    if why is not None:
        raise _refuse("topic", topic, why)


def check_registration(job_name: object, experiment: object, source: object,
                       settings: object) -> None:
    """Every name a job's registration puts into topics (its name, experiment, plugin source and
    setting names): a hand-run job never went through the catalog."""
    check_job_name(job_name)
    check_experiment(experiment, allow_universal=True)
    check_source(source)
    for setting in settings if isinstance(settings, dict) else ():
        check_setting(setting)
