"""Errors that carry meaning; each edge (HTTP, CLI, engine) translates them once."""

from __future__ import annotations


class QcdaemonError(Exception):
    """Base class; ``status`` is the HTTP status the server answers with."""

    status = 500


class ConfigError(QcdaemonError):
    """The configuration file is wrong; the message names the key."""


class BadRequest(QcdaemonError):
    status = 400


class Unauthorized(QcdaemonError):
    status = 401


class Forbidden(QcdaemonError):
    status = 403


class NotFound(QcdaemonError):
    status = 404


class Conflict(QcdaemonError):
    status = 409


class TooLarge(QcdaemonError):
    status = 413


class ParseError(QcdaemonError):
    """A tool's output could not be read; the stage fails with this reason."""


class ToolError(QcdaemonError):
    """An external tool failed (non-zero exit, timeout, missing output)."""


class StoreBusy(QcdaemonError):
    """The DuckDB file is held by another process (normally the running daemon)."""


class PortUnavailable(QcdaemonError):
    """The server cannot listen on its configured address (port taken, address not on this host)."""
