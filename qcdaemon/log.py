"""Logging: structlog events, one output pipeline for our events and the stdlib's (aiohttp,
apscheduler, watchdog).

Foreground runs print readable lines to stderr.  A service writes JSON lines to stderr (journald
on Linux) and to ``<log_dir>/qcdaemon.log``, rotated at 10 MB with 5 old files kept.  Every
event passes :func:`redact`, so credentials never reach a log.  Call :func:`configure_logging`
once at start-up (the CLI does); everyone else calls ``get_logger(__name__)`` and logs events::

    log.info("stage_done", run_key="rf3", stage="rawtools")
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import re
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
SECRET_KEYS = frozenset({"authorization", "cookie", "set_cookie", "password", "token", "sealed", "csrf", "sid"})
# A key that contains one of these is secret too (password_hash, new_password, csrfmiddlewaretoken, api_token...).
SECRET_PARTS = ("password", "passwd", "token", "secret", "cookie", "authorization", "csrf", "session_id", "hash")
# Secrets recognisable by their shape, wherever they appear in a logged string (exception messages
# included): API tokens (40 hex), scrypt password hashes, credentials after an auth scheme, cookies.
SECRET_PATTERNS = (
    re.compile(r"scrypt\$[^\s'\",;)\]}]*"),
    re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{40}(?![0-9A-Za-z])"),
    re.compile(r"(?i)\b(token|bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)\b(qcd_session|qcd_login|csrftoken|csrfmiddlewaretoken|password)(=|:\s*)[^\s'\",;&)\]}]+"),
)
# Values a request declared secret (its token, its cookies, a submitted password): redacted by value,
# whatever the key or message they turn up in.  A context variable: each request task has its own.
_REQUEST_SECRETS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("qcd_log_secrets", default=())
MIN_SECRET_LEN = 4
# Chatty at INFO (apscheduler logs every job run); shown only when log.level = "debug".
QUIET_AT_INFO = ("apscheduler",)

_OURS = "_qcdaemon_handler"


def add_secret(*values: object) -> None:
    """Declare values secret for the rest of the current task (a request): never logged verbatim."""
    new = tuple(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LEN)
    if new:
        _REQUEST_SECRETS.set(_REQUEST_SECRETS.get() + new)


def _is_secret(key: object) -> bool:
    if not isinstance(key, str):
        return False
    k = key.lower().replace("-", "_")
    return k in SECRET_KEYS or any(part in k for part in SECRET_PARTS)


def scrub_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every known secret value and every secret-shaped string replaced."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def _scrub(value: Any, secrets: tuple[str, ...], depth: int = 0) -> Any:
    if depth > 20:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret(k) else _scrub(v, secrets, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(v, secrets, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub_text(repr(value) if isinstance(value, bytes) else str(value), secrets)


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace the values of secret keys (also in nested dicts such as headers),
    secret-shaped strings (tokens, hashes) and the values the current request declared secret."""
    secrets = tuple(sorted(set(_REQUEST_SECRETS.get()), key=len, reverse=True))
    for key, value in event_dict.items():
        if key in ("exc_info", "_record", "_from_structlog"):
            continue  # rendered (and then scrubbed) by the formatter
        event_dict[key] = REDACTED if _is_secret(key) else _scrub(value, secrets)
    return event_dict


class _ScrubbedRenderer:
    """The last step: whatever the renderer produced is scrubbed once more as text."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        return scrub_text(str(self.renderer(logger, method, event_dict)), _REQUEST_SECRETS.get())


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
    """Exceptions are rendered without frame variables (``show_locals=False``: a frame's locals hold
    headers, user rows, passwords), then the rendered text passes :func:`redact` like any value."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)
    )
    exceptions: Any = (
        structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        if json
        else structlog.processors.format_exc_info
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, exceptions, redact,
                    _ScrubbedRenderer(renderer)],
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
