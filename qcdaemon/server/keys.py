"""Typed keys of the application and the request, cookie names, the handler type."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from qcdaemon.config import Config
from qcdaemon.service.qcservice import QcService

SERVICE = web.AppKey("service", QcService)
CONFIG = web.AppKey("config", Config)
STATE = web.AppKey("state", dict)
USER = web.RequestKey("qcd_user", Any)  # the authenticated user's row, or None
SESSION = web.RequestKey("qcd_session", Any)  # the signed-in session's row, or None
AUTH_KIND = web.RequestKey("qcd_auth_kind", Any)  # "token", "session" or None
FORM_CSRF = web.RequestKey("qcd_form_csrf", Any)  # csrfmiddlewaretoken of a form body
COOKIE = "qcd_session"
LOGIN_COOKIE = "qcd_login"  # the sign-in form's stateless CSRF token (signed, nothing stored)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_TOKEN = re.compile(r"[0-9a-fA-F]{40}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


