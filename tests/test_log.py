"""Logging: console in the foreground, JSON (stderr + rotating file) as a service, secrets redacted,
stdlib loggers (aiohttp, apscheduler, watchdog) in the same stream."""

from __future__ import annotations

import json
import logging
import logging.handlers

import pytest
import structlog

from qcdaemon.config import Config, LogConfig, PathsConfig
from qcdaemon.log import LOG_FILE, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    structlog.reset_defaults()


def service_cfg(tmp_path, **log):
    return Config(paths=PathsConfig(data_dir=str(tmp_path / "data"), log_dir=str(tmp_path / "logs")),
                  log=LogConfig(**log), mode="service")


def file_events(tmp_path):
    return [json.loads(line) for line in (tmp_path / "logs" / LOG_FILE).read_text().splitlines()]


def test_foreground_is_readable_console(tmp_path, capsys):
    configure_logging(Config(log=LogConfig(level="info")), service=False)
    get_logger("qcdaemon.engine").info("stage_done", run_key="rf3", stage="rawtools")
    err = capsys.readouterr().err
    assert "stage_done" in err and "run_key=rf3" in err and "stage=rawtools" in err
    assert not err.lstrip().startswith("{")
    assert not (tmp_path / "logs").exists()


def test_service_writes_json_to_file_and_stderr(tmp_path, capsys):
    configure_logging(service_cfg(tmp_path), service=True)
    get_logger("qcdaemon.engine").info("stage_done", run_key="rf3", stage="rawtools")
    (event,) = file_events(tmp_path)
    assert event["event"] == "stage_done" and event["run_key"] == "rf3" and event["stage"] == "rawtools"
    assert event["level"] == "info" and event["logger"] == "qcdaemon.engine" and event["timestamp"].endswith("Z")
    assert json.loads(capsys.readouterr().err.strip()) == event
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert handler.maxBytes == 10 * 1024 * 1024 and handler.backupCount == 5


def test_format_setting_overrides_auto(tmp_path, capsys):
    configure_logging(Config(log=LogConfig(format="json")), service=False)
    get_logger("x").info("hello", n=1)
    assert json.loads(capsys.readouterr().err)["n"] == 1


def test_secrets_are_redacted(tmp_path):
    configure_logging(service_cfg(tmp_path), service=True)
    get_logger("qcdaemon.server").info(
        "request", password="hunter2", token="qcd_1_secret", Cookie="sid=abc",
        headers={"Authorization": "Token deadbeef", "Accept": "application/json"},
    )
    (event,) = file_events(tmp_path)
    assert event["password"] == event["token"] == event["Cookie"] == "[redacted]"
    assert event["headers"] == {"Authorization": "[redacted]", "Accept": "application/json"}
    text = (tmp_path / "logs" / LOG_FILE).read_text()
    assert "hunter2" not in text and "deadbeef" not in text and "secret" not in text


def test_stdlib_loggers_are_bridged(tmp_path):
    configure_logging(service_cfg(tmp_path), service=True)
    logging.getLogger("aiohttp.access").info("GET %s %d", "/api/health", 200)
    logging.getLogger("watchdog.observers").warning("Inotify queue overflowed")
    events = file_events(tmp_path)
    assert [(e["logger"], e["event"], e["level"]) for e in events] == [
        ("aiohttp.access", "GET /api/health 200", "info"),
        ("watchdog.observers", "Inotify queue overflowed", "warning"),
    ]


def test_level_is_honoured(tmp_path):
    configure_logging(service_cfg(tmp_path, level="warning"), service=True)
    log = get_logger("qcdaemon")
    log.info("not_shown")
    log.warning("shown")
    logging.getLogger("aiohttp.server").info("not shown either")
    assert [e["event"] for e in file_events(tmp_path)] == ["shown"]


def test_apscheduler_chatter_is_hidden_at_info(tmp_path):
    configure_logging(service_cfg(tmp_path), service=True)
    logging.getLogger("apscheduler.executors.default").info('Job "sweep" executed successfully')
    get_logger("qcdaemon").debug("hidden")
    assert not (tmp_path / "logs" / LOG_FILE).read_text()
    configure_logging(service_cfg(tmp_path, level="debug"), service=True)
    logging.getLogger("apscheduler.executors.default").info("Running job")
    assert [e["event"] for e in file_events(tmp_path)] == ["Running job"]


def test_exceptions_are_structured(tmp_path):
    configure_logging(service_cfg(tmp_path), service=True)
    try:
        raise ValueError("bad metrics file")
    except ValueError:
        get_logger("qcdaemon").exception("parse_failed", path="x_Metrics.txt")
    (event,) = file_events(tmp_path)
    assert event["exception"][0]["exc_type"] == "ValueError"


def test_reconfiguring_replaces_handlers(tmp_path):
    for _ in range(3):
        configure_logging(service_cfg(tmp_path), service=True)
    get_logger("qcdaemon").info("once")
    assert len(file_events(tmp_path)) == 1


def test_a_logger_made_before_configuring_follows_it(tmp_path):
    early = get_logger("qcdaemon.early")  # module-level loggers exist before configure_logging
    early.info("before")
    configure_logging(service_cfg(tmp_path), service=True)
    early.info("after")
    assert [e["event"] for e in file_events(tmp_path)] == ["after"]


def test_unwritable_log_dir_falls_back_to_stderr(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = Config(paths=PathsConfig(log_dir=str(blocker / "logs")), mode="service")
    configure_logging(cfg, service=True)
    get_logger("qcdaemon").info("still_logging")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in lines] == ["log_file_unavailable", "still_logging"]
