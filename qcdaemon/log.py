"""Logging: structlog events, one output pipeline for our events and the stdlib's (aiohttp,
apscheduler, watchdog).

Foreground runs print readable lines to stderr.  A service writes JSON lines to stderr (journald
on Linux) and to ``<log_dir>/qcdaemon.log``, rotated at 10 MB with 5 old files kept.  Every
event passes :func:`redact`, so credentials never reach a log.  Call :func:`configure_logging`
once at start-up (the CLI does); everyone else calls ``get_logger(__name__)`` and logs events::

    log.info("stage_done", run_key="rf3", stage="rawtools")
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from qcdaemon.config import Config

LOG_FILE = "qcdaemon.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 5
REDACTED = "[redacted]"
SECRET_KEYS = frozenset({"authorization", "cookie", "set_cookie", "password", "token"})
# Chatty at INFO (apscheduler logs every job run); shown only when log.level = "debug".
QUIET_AT_INFO = ("apscheduler",)

_OURS = "_qcdaemon_handler"


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


def _scrub(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret(k) else _scrub(v) for k, v in value.items()}
    return value


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace the values of secret keys, also inside nested dicts (headers)."""
    for key, value in event_dict.items():
        event_dict[key] = REDACTED if _is_secret(key) else _scrub(value)
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]


def _formatter(json: bool, colors: bool) -> logging.Formatter:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=colors)
    )
    tail = [structlog.processors.dict_tracebacks] if json else []
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    )


def _mark(handler: logging.Handler) -> logging.Handler:
    setattr(handler, _OURS, True)
    return handler


def _stderr_json(cfg: Config, service: bool) -> bool:
    if cfg.log.format == "auto":
        return service
    return cfg.log.format == "json"


def configure_logging(cfg: Config, *, service: bool) -> None:
    """Route structlog and stdlib logging to stderr (and, as a service, the rotating log file).

    ``log.format = "auto"`` means JSON for a service and readable lines in the foreground; the
    file is always JSON.  Safe to call again: the handlers of an earlier call are replaced.
    """
    level = getattr(logging, cfg.log.level.upper())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()

    handlers: list[logging.Handler] = []
    if sys.stderr is not None:  # None under a Windows service: there is no console
        json = _stderr_json(cfg, service)
        colors = not json and sys.stderr.isatty() and os.name != "nt"
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(_formatter(json, colors))
        handlers.append(stream)
    file_error: OSError | None = None
    if service:
        try:
            cfg.log_dir.mkdir(parents=True, exist_ok=True)
            rotating = logging.handlers.RotatingFileHandler(
                cfg.log_dir / LOG_FILE, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
            )
        except OSError as exc:
            file_error = exc  # keep running: stderr still reaches journald
        else:
            rotating.setFormatter(_formatter(True, False))
            handlers.append(rotating)
    for handler in handlers:
        root.addHandler(_mark(handler))
    root.setLevel(level)
    for name in QUIET_AT_INFO:
        logging.getLogger(name).setLevel(level if level == logging.DEBUG else max(level, logging.WARNING))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # No caching: a logger first used before this call (at import) must still follow it.
        cache_logger_on_first_use=False,
    )
    if file_error is not None:
        get_logger(__name__).warning(
            "log_file_unavailable", path=str(cfg.log_dir / LOG_FILE), error=str(file_error)
        )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """The logger every module uses: ``log = get_logger(__name__)``."""
    return structlog.stdlib.get_logger(name)
