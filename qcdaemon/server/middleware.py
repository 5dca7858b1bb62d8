"""The middlewares (errors, Host, identity) and the checks handlers call (CSRF, signed-in user, sign-in throttle)."""

from __future__ import annotations

import socket
import time
from collections import deque
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from qcdaemon.config import Config
from qcdaemon.core import security
from qcdaemon.errors import Forbidden, QcdaemonError, Unauthorized
from qcdaemon.server.keys import (
    _TOKEN,
    AUTH_KIND,
    COOKIE,
    FORM_CSRF,
    SERVICE,
    SESSION,
    STATE,
    UNSAFE,
    USER,
    Handler,
)
from qcdaemon.store import Store
from qcdaemon.store.rows import UserRow

log = structlog.get_logger("qcdaemon.server")


def json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON ``{"detail": ...}``; nothing a client sends gives a 500."""
    try:
        return await handler(request)
    except Unauthorized as exc:
        return json_error(401, str(exc), {"WWW-Authenticate": "Token"})
    except QcdaemonError as exc:
        if 400 <= exc.status < 500 or exc.status == 507:  # 507: the daemon's disk is (nearly) full
            return json_error(exc.status, str(exc))
        log.exception("request_failed", method=request.method, path=request.path)
        return json_error(500, "internal error; the daemon's log has the details")
    except ConnectionResetError:  # the client went away (e.g. an aborted upload): nothing to answer
        log.info("client_disconnected", method=request.method, path=request.path)
        return json_error(400, "the connection was closed before the request was complete")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate", "location")}
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_error(exc.status, reason, headers)
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        return json_error(500, "internal error; the daemon's log has the details")


def allowed_hosts(cfg: Config) -> set[str]:
    names = {"localhost", "127.0.0.1", "::1", "[::1]", cfg.server.host, *cfg.server.allowed_hosts}
    if cfg.server.host not in ("127.0.0.1", "localhost", "::1"):
        host = socket.gethostname()
        names |= {host, host.lower()}
        if cfg.server.host in ("0.0.0.0", "::"):
            try:
                names |= {str(a[4][0]) for a in socket.getaddrinfo(host, None)}
            except OSError:
                pass
    return {n.lower() for n in names if n}


def _host_only(value: str) -> str:
    if value.startswith("["):
        return value[: value.find("]") + 1].lower()
    return value.rsplit(":", 1)[0].lower() if value.count(":") == 1 else value.lower()


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests for Host names this daemon does not serve (DNS rebinding)."""
    hosts: set[str] = request.app[STATE]["hosts"]
    if _host_only(request.host or "") not in hosts:
        return json_error(400, f"Host {request.host!r} is not served here; add it to [server] allowed_hosts")
    return await handler(request)


@web.middleware
async def identity_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the user from ``Authorization: Token`` or the session cookie; enforce CSRF on cookies."""
    svc = request.app[SERVICE]
    request[USER] = None
    request[SESSION] = None
    request[AUTH_KIND] = None
    header = request.headers.get("Authorization", "")
    if request.path == "/metrics":  # its own Bearer token ([metrics]), not a user's API token
        return await handler(request)
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            raise Unauthorized("Invalid Authorization header: use 'Authorization: Token <token>'.")
        if not _TOKEN.fullmatch(token.strip()):
            raise Unauthorized("Invalid token.")
        user = await svc.user_for_token(token.strip())
        if user is None:
            raise Unauthorized("Invalid token.")
        request[USER], request[AUTH_KIND] = user, "token"
        return await handler(request)
    sid = request.cookies.get(COOKIE)
    if sid:
        session = await svc.store.call(Store.session, security.digest(sid))
        # only signed-in sessions count: anonymous visitors get no session row (the sign-in form is
        # protected by the signed ``qcd_login`` cookie); anonymous rows left by older versions are ignored
        if session and session["user_id"] is not None:
            request[SESSION] = session
            request[USER] = await svc.store.call(Store.user, session["user_id"])
            request[AUTH_KIND] = "session" if request[USER] else None
    return await handler(request)


def check_csrf(request: web.Request, form_token: str | None = None) -> None:
    """Cookie-authenticated unsafe requests need the session's CSRF token and a same-origin source."""
    session = request[SESSION]
    given = request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token") or form_token
    if session is None or not security.same(given, session["csrf"]):
        raise Forbidden("CSRF Failed: CSRF token missing or incorrect.")
    site = request.headers.get("Sec-Fetch-Site")
    if site and site not in ("same-origin", "none"):
        raise Forbidden("CSRF Failed: cross-site request.")
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        raise Forbidden("CSRF Failed: Referer checking failed - no Referer.")
    if urlsplit(source).netloc.lower() != (request.host or "").lower():
        raise Forbidden(f"CSRF Failed: Referer checking failed - {source} does not match the host.")


def require_user(request: web.Request) -> UserRow:
    """The authenticated user of an API request (with CSRF checked for cookie sessions)."""
    user = request[USER]
    if user is None:
        raise Unauthorized("Authentication credentials were not provided.")
    if request[AUTH_KIND] == "session" and request.method in UNSAFE:
        check_csrf(request, request.get(FORM_CSRF))
    return user


class LoginLimiter:
    """Sign-in attempts per client address within a sliding minute.

    An attempt is counted when it *starts* (before the password hash is checked), so parallel
    guesses cannot all slip past the limit; a successful sign-in clears the address's count.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.attempts: dict[str, deque[float]] = {}

    def try_start(self, addr: str) -> bool:
        """Count an attempt; False when the address is over the limit (then nothing is counted)."""
        now = time.monotonic()
        for key in [k for k, q in self.attempts.items() if not q or now - q[-1] > 60]:
            del self.attempts[key]  # forget idle addresses: the table does not grow without bound
        q = self.attempts.setdefault(addr, deque())
        while q and now - q[0] > 60:
            q.popleft()
        if len(q) >= self.per_minute:
            return False
        q.append(now)
        return True

    def succeeded(self, addr: str) -> None:
        self.attempts.pop(addr, None)


