"""The names Pioreactor's published plugins import, against Pioreactor's documented behaviour
(each test says which plugin use it pins). Nothing here needs a daemon: constructing a job does
(tests/integration/test_plugin_api.py)."""

from __future__ import annotations

import http.server
import inspect
import json
import logging
import threading
from datetime import UTC

import pytest

from pioreactor.config import config
from pioreactor.hardware_mappings import PWM_TO_PIN


@pytest.fixture
def ini(tmp_path, monkeypatch):
    def write(text: str) -> None:
        path = tmp_path / "p.ini"
        path.write_text(f"[pioreactord]\nplugins_dir = {tmp_path / 'plugins'}\n{text}")
        monkeypatch.setenv("PIOREACTORD_CONFIG", str(path))
        config.reload()
        PWM_TO_PIN.reload()

    (tmp_path / "plugins").mkdir()
    yield write
    config.reload()
    PWM_TO_PIN.reload()


# --- background_jobs.base ---------------------------------------------------------------------
def test_the_job_classes_import_from_base_with_pioreactors_signatures():
    from pioreactor.background_jobs import base

    for name in ("BackgroundJob", "BackgroundJobContrib", "LongRunningBackgroundJob",
                 "LongRunningBackgroundJobContrib", "BackgroundJobWithDodging",
                 "BackgroundJobWithDodgingContrib"):
        assert issubclass(getattr(base, name), base.BackgroundJob)
    contrib = inspect.signature(base.BackgroundJobContrib.__init__).parameters
    assert list(contrib)[:4] == ["self", "unit", "experiment", "plugin_name"]
    dodging = inspect.signature(base.BackgroundJobWithDodgingContrib.__init__).parameters
    assert list(dodging)[:4] == ["self", "unit", "experiment", "plugin_name"]
    assert dodging["enable_dodging_od"].default is True  # Contrib dodges by default
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        base.Nope  # noqa: B018


def test_long_running_classes_are_flagged_and_the_others_not():
    from pioreactor.background_jobs import base

    assert base.LongRunningBackgroundJob._IS_LONG_RUNNING
    assert base.LongRunningBackgroundJobContrib._IS_LONG_RUNNING
    assert not base.BackgroundJob._IS_LONG_RUNNING
    assert not base.BackgroundJobContrib._IS_LONG_RUNNING
    assert not base.BackgroundJobWithDodgingContrib._IS_LONG_RUNNING


def test_a_contrib_job_without_a_job_name_raises_name_error_before_connecting():
    from pioreactor.background_jobs.base import BackgroundJobContrib

    class Nameless(BackgroundJobContrib):
        pass

    with pytest.raises(NameError, match="must provide a job_name"):
        Nameless(unit="u", experiment="e", plugin_name="p")


def test_dodging_settings_are_published_settings_of_every_dodging_job():
    from pioreactor.background_jobs.base import BackgroundJobWithDodgingContrib

    class Bubbler(BackgroundJobWithDodgingContrib):
        job_name = "bubbler"
        published_settings = {"duty_cycle": {"settable": True, "unit": "%", "datatype": "float"}}

    assert Bubbler.published_settings["enable_dodging_od"] == {"datatype": "boolean", "settable": True}
    assert Bubbler.published_settings["currently_dodging_od"]["settable"] is False
    assert "duty_cycle" in Bubbler.published_settings


def test_transition_hooks_exist_as_no_ops_so_subclasses_chain_with_super():
    from pioreactor.background_jobs.base import BackgroundJob

    calls = []

    class Relay(BackgroundJob):  # the relay plugin's shape: every hook calls super() first
        def on_ready_to_sleeping(self) -> None:
            super().on_ready_to_sleeping()
            calls.append("sleep")

        def on_disconnected(self) -> None:
            super().on_disconnected()
            calls.append("off")

    relay = object.__new__(Relay)
    for old in ("init", "ready", "sleeping", "disconnected"):
        for new in ("init", "ready", "sleeping", "disconnected", "lost"):
            if old != new:
                assert getattr(BackgroundJob, f"on_{old}_to_{new}")(relay) is None
    for state in ("init", "ready", "sleeping", "disconnected"):
        assert getattr(BackgroundJob, f"on_{state}")(relay) is None
    relay.on_ready_to_sleeping()
    relay.on_disconnected()
    assert calls == ["sleep", "off"]


# --- logging ----------------------------------------------------------------------------------
def test_notice_is_a_level_of_the_standard_logging_module():
    import pioreactor.background_jobs.base  # noqa: F401 - importing the job API adds it

    assert logging.NOTICE == 25 and logging.getLevelName(25) == "NOTICE"  # type: ignore[attr-defined]
    level = "NOTICE"
    assert getattr(logging, level) > logging.INFO  # logs2slack filters levels by name
    records = []
    logger = logging.getLogger("test_notice")
    logger.addHandler(type("H", (logging.Handler,), {"emit": lambda s, r: records.append(r)})())
    logger.setLevel(logging.DEBUG)
    logger.notice("hello")  # type: ignore[attr-defined]
    assert records[-1].levelname == "NOTICE"


def test_a_jobs_log_handler_keeps_filters_tracebacks_and_a_formatter_set_on_it():
    from pioreactor.logging import JobLogHandler

    sent: list[tuple[str, str]] = []
    handler = JobLogHandler(lambda level, message, **fields: sent.append((level, message)))
    logger = logging.getLogger("test_job_log_handler")
    logger.propagate, logger.handlers = False, [handler]
    logger.setLevel(logging.DEBUG)
    logger.info("plain %s", "args")
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    logger.info("a secret line")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger.warning("formatted")
    assert sent[0] == ("INFO", "plain args") and len(sent) == 3
    assert sent[1][0] == "ERROR" and sent[1][1].startswith("failed\nTraceback")
    assert "ValueError: boom" in sent[1][1]
    assert sent[2] == ("WARNING", "[test_job_log_handler] formatted")


# --- cli.run ----------------------------------------------------------------------------------
AIR_BUBBLER_LIKE = '''
from pioreactor.cli.run import run

@run.command(name="bubbles")
def start_bubbles():
    """Blow bubbles."""
'''


def test_a_command_registered_on_run_is_a_startable_job_of_its_plugin(ini, tmp_path):
    from pioreactor import catalog

    ini("")
    (tmp_path / "plugins" / "bubbles_plugin.py").write_text(AIR_BUBBLER_LIKE)
    entry = catalog.find("bubbles")
    assert entry is not None and entry.source == "bubbles_plugin" and entry.error is None
    assert entry.command is not None and entry.command.help == "Blow bubbles."
    names = [e.name for e in catalog.discover() if e.command]  # again: the module is cached now
    assert names.count("bubbles") == 1


# --- whoami -----------------------------------------------------------------------------------
def test_whoami_names(monkeypatch):
    from pioreactor import whoami

    assert whoami.UNIVERSAL_EXPERIMENT == "$experiment" and whoami.UNIVERSAL_IDENTIFIER == "$broadcast"
    monkeypatch.setenv("PIOREACTOR_EXPERIMENT", "exp42")
    assert whoami.get_assigned_experiment_name("pio1") == "exp42"
    assert whoami.is_testing_env()  # pytest is imported
    assert whoami.is_active("pio1")


def test_is_testing_env_follows_testing_without_pytest(monkeypatch):
    import subprocess
    import sys

    code = "from pioreactor.whoami import is_testing_env; print(is_testing_env())"
    for value, expected in (("1", "True"), ("", "False")):
        env = {"TESTING": value, "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == expected, out.stderr


# --- hardware ---------------------------------------------------------------------------------
def test_pwm_to_pin_map_has_str_keys_and_config_overrides(ini):
    from pioreactor import hardware

    ini("[PWM]\n3 = air_bubbler\n[PWM_pins]\n4 = 26\n")
    mapping = hardware.get_pwm_to_pin_map()
    assert mapping == {"1": 17, "2": 13, "3": 16, "4": 26, "5": 18}
    assert mapping[config.get("PWM_reverse", "air_bubbler")] == 16  # the air bubbler's lookup
    assert hardware.PWM_TO_PIN["3"] == hardware.PWM_TO_PIN[3] == 16  # the relay's lookup
    assert (hardware.get_scl_pin(), hardware.get_sda_pin()) == (hardware.SCL, hardware.SDA) == (3, 2)


# --- utils.timing -----------------------------------------------------------------------------
def test_repeated_timer_start_returns_it_and_runs_immediately_then_every_interval():
    from pioreactor.utils.timing import RepeatedTimer

    calls: list[float] = []
    done = threading.Event()

    def tick() -> None:
        calls.append(1)
        if len(calls) == 3:
            done.set()

    timer = RepeatedTimer(0.05, tick, run_immediately=True)
    assert timer.start() is timer
    assert done.wait(5)
    timer.cancel()
    assert not timer.is_alive()
    count = len(calls)
    assert not done.wait(0.15) or len(calls) == count  # nothing after cancel


def test_repeated_timer_pause_skips_calls_and_interval_is_settable():
    from pioreactor.utils.timing import RepeatedTimer

    seen = threading.Event()
    timer = RepeatedTimer(0.05, seen.set).start()
    assert seen.wait(5)
    timer.pause()
    seen.clear()
    assert not seen.wait(0.2)  # paused: no call in four intervals
    timer.interval = 0.02
    timer.unpause()
    assert seen.wait(5)
    timer.cancel()


def test_repeated_timer_survives_an_exception_and_logs_it():
    from pioreactor.utils.timing import RepeatedTimer

    calls, errors = [], []
    again = threading.Event()

    class Logger:
        def error(self, text: str) -> None:
            errors.append(text)

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("sensor busy")
        again.set()

    timer = RepeatedTimer(0.02, flaky, logger=Logger(), run_immediately=True).start()
    assert again.wait(5)
    timer.cancel()
    assert errors and "sensor busy" in errors[0]


def test_run_after_delays_the_first_call():
    from pioreactor.utils.timing import RepeatedTimer

    seen = threading.Event()
    timer = RepeatedTimer(10, seen.set, run_immediately=True, run_after=0.2).start()
    assert not seen.wait(0.05)
    assert seen.wait(5)
    timer.cancel()
    with pytest.raises(ValueError, match="run_after"):
        RepeatedTimer(1, seen.set, run_after=-1)


def test_utc_timestamps_have_milliseconds_and_z():
    import re

    from pioreactor.utils.timing import current_utc_datetime, current_utc_timestamp, to_datetime

    stamp = current_utc_timestamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), stamp
    now = current_utc_datetime()
    assert now.tzinfo is not None and now.utcoffset().total_seconds() == 0 and now.microsecond % 1000 == 0
    assert to_datetime(stamp).tzinfo == UTC


# --- exc, types -------------------------------------------------------------------------------
def test_exception_names_and_bases():
    from pioreactor import exc
    from pioreactor.utils.pwm import DutyCycleError, PWMLockError

    assert issubclass(exc.HardwareNotFoundError, exc.HardwareError)
    assert issubclass(exc.HardwareError, OSError) and issubclass(exc.PWMError, OSError)
    assert issubclass(PWMLockError, exc.PWMError) and issubclass(PWMLockError, RuntimeError)
    assert issubclass(DutyCycleError, exc.PWMError) and issubclass(DutyCycleError, ValueError)
    from pioreactor.background_jobs.base import JobAlreadyRunning

    assert issubclass(JobAlreadyRunning, exc.JobPresentError)


def test_mqtt_message_has_pahos_fields():
    from pioreactor.types import MQTTMessage

    message = MQTTMessage("pioreactor/u/e/logs/app/info", b'{"level": "INFO"}')
    assert json.loads(message.payload)["level"] == "INFO"
    assert (message.retain, message.qos, message.topic.split("/")[1]) == (False, 0, "u")


# --- mureq ------------------------------------------------------------------------------------
@pytest.fixture
def http_server():
    received: list[tuple[str, str, dict, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
            status = 404 if self.path.startswith("/missing") else 200
            body = b'{"ok": true}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_mureq_post_json_and_body_and_get_params(http_server):
    from pioreactor import mureq

    url, received = http_server
    response = mureq.post(f"{url}/hook", json={"text": "[INFO] hi"})  # logs2slack 0.5
    response.raise_for_status()
    assert response.status_code == 200 and response.ok and response.json() == {"ok": True}
    assert received[-1][0] == "POST" and json.loads(received[-1][3]) == {"text": "[INFO] hi"}
    assert received[-1][2]["Content-Type"] == "application/json"
    mureq.post(f"{url}/hook", body=b"raw", headers={"Content-Type": "text/plain"})  # logs2slack 0.4
    assert received[-1][3] == b"raw" and received[-1][2]["Content-Type"] == "text/plain"
    assert mureq.get(f"{url}/q", params={"a": "1 2"}).body == b'{"ok": true}'
    assert received[-1][:2] == ("GET", "/q?a=1+2")


def test_mureq_raise_for_status_and_unreachable(http_server):
    from pioreactor import mureq

    url, _ = http_server
    response = mureq.get(f"{url}/missing")
    assert response.status_code == 404 and not response.ok
    with pytest.raises(mureq.HTTPErrorStatus) as caught:
        response.raise_for_status()
    assert caught.value.status_code == 404 and isinstance(caught.value, mureq.HTTPException)
    with pytest.raises(mureq.HTTPException, match="failed"):
        mureq.get("http://127.0.0.1:9/", timeout=2)  # nothing listens on the discard port
    with pytest.raises(mureq.HTTPException, match="not an http"):
        mureq.get("ftp://example.org/")


# --- utils.pwm --------------------------------------------------------------------------------
def test_pwm_takes_pub_client_and_clean_up_releases(monkeypatch):
    from pioreactor.utils.pwm import PWM, DutyCycleError
    from tests.unit.test_job_hardware import FakeChannel, FakeJob

    channel = FakeChannel()
    job = FakeJob(channel)
    pwm = PWM(16, 200, unit="u", experiment="e", pub_client=object(), job=job)  # the air bubbler's call
    pwm.lock()
    pwm.start(0)
    with pytest.raises(DutyCycleError):
        pwm.change_duty_cycle(101)
    pwm.clean_up()
    assert [h["op"] for h in channel.sent] == ["lock", "pwm", "pwm_off", "unlock"]
    assert not pwm.is_locked()


# --- catalog: a start of a job whose plugin failed to import ---------------------------------
def test_a_job_of_a_broken_plugin_is_named_from_its_ui_job_file(tmp_path, monkeypatch):
    from pioreactor.catalog import Entry, not_found_reason

    package = tmp_path / "pioreactor_fizz"
    (package / "ui" / "contrib" / "jobs").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('no fizz')\n")
    (package / "ui" / "contrib" / "jobs" / "fizz.yaml").write_text("---\ndisplay_name: Fizz\njob_name: bubbly\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = Entry("pioreactor_fizz", "pioreactor_fizz", "entry point pioreactor_fizz",
                   error="ImportError: no fizz")
    assert not_found_reason("bubbly", [broken]) == (
        "bubbly: plugin pioreactor_fizz failed to import: ImportError: no fizz")
    assert not_found_reason("fizz", [broken]).startswith("fizz: plugin pioreactor_fizz failed")
    other = not_found_reason("stirring", [broken])
    assert other.startswith("unknown job 'stirring'") and "pioreactor_fizz: ImportError: no fizz" in other


def test_pwm_lock_temporarily_releases_on_exit():
    from pioreactor.utils.pwm import PWM
    from tests.unit.test_job_hardware import FakeChannel, FakeJob

    channel = FakeChannel()
    pwm = PWM(13, 100, job=FakeJob(channel))
    with pwm.lock_temporarily():
        assert pwm.is_locked()
    assert not pwm.is_locked()
    assert [h["op"] for h in channel.sent] == ["lock", "unlock"]


def test_create_logger_without_a_job_logs_to_the_terminal(capsys):
    from pioreactor.logging import create_logger

    logger = create_logger("helper", source="some_plugin")
    logger.info("hello from a helper")
    logger.debug("not shown")
    err = capsys.readouterr().err
    assert "[helper] hello from a helper" in err and "not shown" not in err


def test_catchtime_and_paused_timer():
    from pioreactor.utils.timing import RepeatedTimer, catchtime, paused_timer

    with catchtime() as elapsed:
        pass
    assert 0 <= elapsed() < 1
    timer = RepeatedTimer(1, lambda: None)
    with paused_timer(timer):
        assert timer.is_paused
    assert not timer.is_paused
