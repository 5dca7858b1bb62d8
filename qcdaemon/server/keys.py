"""Typed keys of the application and the request, cookie names, the handler type."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web

from qcdaemon.config import Config
from qcdaemon.service.qcservice import QcService
from qcdaemon.store.rows import SessionRow, UserRow

AuthKind = Literal["token", "session"]

SERVICE = web.AppKey("service", QcService)
CONFIG = web.AppKey("config", Config)
STATE: web.AppKey[dict[str, Any]] = web.AppKey("state")
USER: web.RequestKey[UserRow | None] = web.RequestKey("qcd_user")  # the authenticated user's row, or None
SESSION: web.RequestKey[SessionRow | None] = web.RequestKey("qcd_session")  # the signed-in session's row, or None
AUTH_KIND: web.RequestKey[AuthKind | None] = web.RequestKey("qcd_auth_kind")  # how the user authenticated
FORM_CSRF: web.RequestKey[str | None] = web.RequestKey("qcd_form_csrf")  # csrfmiddlewaretoken of a form body
COOKIE = "qcd_session"
LOGIN_COOKIE = "qcd_login"  # the sign-in form's stateless CSRF token (signed, nothing stored)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_TOKEN = re.compile(r"[0-9a-fA-F]{40}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


