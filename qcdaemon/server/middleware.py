"""The middlewares (errors, Host, identity) and the checks handlers call (CSRF, signed-in user, sign-in throttle)."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import time
from collections import deque
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from qcdaemon.config import Config
from qcdaemon.core import security
from qcdaemon.errors import Forbidden, QcdaemonError, Unauthorized
from qcdaemon.log import add_secret
from qcdaemon.server.keys import (
    _TOKEN,
    AUTH_KIND,
    CONFIG,
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
    declare_secrets(request)
    response = await _answer(request, handler)
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity") \
            and not request.content.is_eof():
        await _drain_encoded(request, response)
    return response


async def _drain_encoded(request: web.Request, response: web.StreamResponse) -> None:
    """Read (and drop) the rest of an encoded body the handler left, so that a body that does not
    decode cannot break the connection after the answer (aiohttp's lingering read would raise)."""
    response.force_close()
    loop = asyncio.get_running_loop()
    end = loop.time() + DRAIN_SECONDS
    read = 0
    try:
        while not request.content.is_eof() and read < DRAIN_BYTES and loop.time() < end:
            async with asyncio.timeout(max(0.01, end - loop.time())):
                read += len(await request.content.readany())
    except Exception:  # undecodable or cut off: the answer is already made
        pass
    if not request.content.is_eof():
        request.content._buffer.clear()
        request.content.feed_eof()


DRAIN_SECONDS = 5.0
DRAIN_BYTES = 20 * 1024 * 1024


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Unauthorized as exc:
        return json_error(401, str(exc), {"WWW-Authenticate": "Token"})
    except QcdaemonError as exc:
        if 400 <= exc.status < 500 or exc.status == 507:  # 507: the daemon's disk is (nearly) full
            return json_error(exc.status, str(exc))
        log.exception("request_failed", method=request.method, path=request.path)
        return json_error(500, "internal error; the daemon's log has the details")
    except (HttpProcessingError, RequestPayloadError) as exc:  # a body aiohttp cannot decode (Content-Encoding...)
        detail = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        return json_error(400, f"the request body could not be read: {detail}"[:300])
    except ConnectionResetError:  # the client went away (e.g. an aborted upload): nothing to answer
        log.info("client_disconnected", method=request.method, path=request.path)
        return json_error(400, "the connection was closed before the request was complete")
    except OSError as exc:
        if is_disk_full(exc):
            log.error("disk_full", method=request.method, path=request.path, error=str(exc))
            return json_error(507, "the daemon's disk is full; try again when space has been freed")
        log.exception("request_failed", method=request.method, path=request.path)
        return json_error(500, "internal error; the daemon's log has the details")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate", "location")}
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_error(exc.status, reason, headers)
    except Exception as exc:
        if is_disk_full(exc):  # e.g. the database could not write its log
            log.error("disk_full", method=request.method, path=request.path, error=str(exc))
            return json_error(507, "the daemon's disk is full; try again when space has been freed")
        log.exception("request_failed", method=request.method, path=request.path)
        return json_error(500, "internal error; the daemon's log has the details")


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` (or a database error) saying the disk is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    return "no space left on device" in str(exc).lower()


def declare_secrets(request: web.Request) -> None:
    """The request's credentials (token, cookies, CSRF token) are never logged, whatever fails."""
    headers = request.headers
    auth = headers.get("Authorization", "")
    add_secret(auth, auth.partition(" ")[2].strip(), headers.get("Cookie"), headers.get("X-CSRFToken"),
               headers.get("X-CSRF-Token"), *request.cookies.values())


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


_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` of a Host header, or None when it is not one (strict: no user info, no path)."""
    m = _HOST.fullmatch(value.strip())
    if m is None:
        return None
    port = m.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    return m.group("name").lower().rstrip("."), int(port) if port is not None else None


def host_allowed(value: str, hosts: set[str], local_port: int | None, configured: frozenset[str] | set[str] = frozenset()) -> bool:
    """A served name, and a port that is the one the request came in on (or none).  Names the
    administrator listed in ``[server] allowed_hosts`` (a reverse proxy's) may come with any port,
    or with exactly the port given there as ``name:port``."""
    parsed = split_host(value)
    if parsed is None:
        return False
    name, port = parsed
    if port is None or port == local_port:
        return name in hosts or name in configured
    return name in configured or f"{name}:{port}" in configured


def _local_port(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return int(sock[1]) if isinstance(sock, (tuple, list)) and len(sock) > 1 else None


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests for Host names (and ports) this daemon does not serve (DNS rebinding)."""
    hosts: set[str] = request.app[STATE]["hosts"]
    configured = {h.lower() for h in request.app[CONFIG].server.allowed_hosts}
    if not host_allowed(request.host or "", hosts, _local_port(request), configured):
        return json_error(400, f"Host {request.host[:100]!r} is not served here; add it to [server] allowed_hosts")
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
        session = await svc.store.light(Store.session, security.digest(sid))
        # only signed-in sessions count: anonymous visitors get no session row (the sign-in form is
        # protected by the signed ``qcd_login`` cookie); anonymous rows left by older versions are ignored
        if session and session["user_id"] is not None:
            request[SESSION] = session
            request[USER] = await svc.store.light(Store.user, session["user_id"])
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
    """Sign-in attempts per client address and per target account, each within a sliding window.

    An attempt is counted when it *starts* (before the password hash is checked), against both
    its address and the account it names, so parallel guesses cannot all slip past the limit.
    A successful sign-in takes back only its own attempt: it does not clear the address's other
    attempts, so signing in to one's own account between guesses at another gains nothing.  While
    either count is full, every attempt (the right password too) gets the throttle answer and is
    not counted, so nothing of it weighs on the account once the window has passed.
    """

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self.attempts: dict[str, deque[float]] = {}

    def _keys(self, addr: str, account: str | None) -> list[str]:
        keys = [f"addr:{addr}"]
        if account:
            keys.append(f"account:{account.strip().lower()[:320]}")
        return keys

    def try_start(self, addr: str, account: str | None = None) -> bool:
        """Count an attempt; False when the address or the account is over the limit (then nothing is counted)."""
        now = time.monotonic()
        for key in [k for k, q in self.attempts.items() if not q or now - q[-1] > self.window]:
            del self.attempts[key]  # forget idle keys: the table does not grow without bound
        queues = [self.attempts.setdefault(k, deque()) for k in self._keys(addr, account)]
        for q in queues:
            while q and now - q[0] > self.window:
                q.popleft()
        if any(len(q) >= self.per_minute for q in queues):
            return False
        for q in queues:
            q.append(now)
        return True

    def succeeded(self, addr: str, account: str | None = None) -> None:
        """The right password: this attempt is taken back (the newest of each of its keys)."""
        for key in self._keys(addr, account):
            q = self.attempts.get(key)
            if q:
                q.pop()
