"""The web pages: login on ``/`` (as the original server scripts it), a home page, logout, and the
home page's retry/cancel buttons.

The sign-in form writes nothing to the database: its CSRF token is *stateless*, a signed token
``<issued>-<nonce>.<hmac(key, "login:" + <issued>-<nonce>)>`` that is both the ``qcd_login`` cookie
and the form's ``csrfmiddlewaretoken``.  ``POST /`` accepts the form only when the two are equal and
the signature is the daemon's (and not older than ``LOGIN_HOURS``).  A server-side session, with its
own CSRF token, exists only after a successful sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
import structlog
from aiohttp import web
from markupsafe import Markup

from qcdaemon import __version__
from qcdaemon.core import security
from qcdaemon.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from qcdaemon.server.alerts import home_section as alerts_section
from qcdaemon.server.body import read_form
from qcdaemon.server.keys import (
    AUTH_KIND,
    CONFIG,
    COOKIE,
    LOGIN_COOKIE,
    SERVICE,
    SESSION,
    STATE,
    USER,
)
from qcdaemon.server.middleware import check_csrf
from qcdaemon.server.pages.html import is_text, pipeline_url, safe_next
from qcdaemon.store import Store
from qcdaemon.store.rows import RunOverview, UserRow

log = structlog.get_logger("qcdaemon.server")
LOGIN_FAILED = "X-Login-Failed"  # on a refused sign-in (401, or 429 when rate-limited), for scripts

async def _new_session(request: web.Request, response: web.StreamResponse, user_id: int) -> str:
    """A signed-in session (the only kind stored): cookie on ``response``, its CSRF token returned."""
    svc = request.app[SERVICE]
    cfg = request.app[CONFIG]
    sid, csrf = security.new_session_id(), security.new_csrf()
    hours = cfg.server.session_hours
    await svc.store.call(Store.create_session, security.digest(sid), user_id, csrf, hours)
    response.set_cookie(
        COOKIE, sid, httponly=True, samesite="Strict", path="/", secure=bool(cfg.server.tls_cert),
        max_age=int(hours * 3600),
    )
    return csrf


# -- the sign-in form's stateless CSRF token ---------------------------------------------------

LOGIN_HOURS = 12
_LOGIN_TOKEN = re.compile(r"([0-9]{1,12})-[0-9a-f]{32}\.([0-9a-f]{64})")
_CLOCK_SKEW = 300  # seconds a token may appear to come from the future (clock adjustments)


def _login_mac(key: bytes, nonce: str) -> str:
    return hmac.new(key, b"login:" + nonce.encode("ascii"), hashlib.sha256).hexdigest()


def new_login_token(key: bytes, issued: float | None = None) -> str:
    """``<issued>-<nonce>.<hmac>``: only this daemon's key makes one that verifies."""
    nonce = f"{int(time.time() if issued is None else issued)}-{secrets.token_hex(16)}"
    return f"{nonce}.{_login_mac(key, nonce)}"


def login_token_age(key: bytes, token: str | None) -> float | None:
    """Seconds since a valid, unexpired login token was issued; None for anything else."""
    if not isinstance(token, str) or len(token) > 128:
        return None
    m = _LOGIN_TOKEN.fullmatch(token)
    if m is None:
        return None
    if not security.same(m.group(2), _login_mac(key, token[: m.start(2) - 1])):
        return None
    age = time.time() - int(m.group(1))
    if age < -_CLOCK_SKEW or age > LOGIN_HOURS * 3600:
        return None
    return max(age, 0.0)


def _login_token(request: web.Request, response: web.StreamResponse) -> str:
    """The visitor's login token: the cookie's when still valid for an hour or more, else a new one
    (set as the ``qcd_login`` cookie on ``response``).  Nothing is written to the database."""
    key = request.app[SERVICE].key
    current = request.cookies.get(LOGIN_COOKIE)
    age = login_token_age(key, current)
    if current and age is not None and age < (LOGIN_HOURS - 1) * 3600:
        return current
    token = new_login_token(key)
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/",
        secure=bool(request.app[CONFIG].server.tls_cert), max_age=LOGIN_HOURS * 3600,
    )
    return token


def _login_form(request: web.Request, csrf: str, next_url: str, error: str = "") -> str:
    return aiohttp_jinja2.render_string("login.html", request, {
        "title": "qcdaemon: sign in", "user": None, "csrf": "", "version": __version__,
        "login_csrf": csrf, "next_url": next_url, "error": error})


async def home(request: web.Request) -> web.Response:
    session = request[SESSION]
    user = request[USER]
    response = web.Response(content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})
    if user is None or request[AUTH_KIND] != "session":
        response.text = _login_form(request, _login_token(request, response), safe_next(request.query.get("next")))
        return response
    response.text = await _home_page(request, user, session["csrf"] if session else "", notice=_notice(request.query))
    return response


_RUN_KEY = re.compile(r"rf[0-9]{1,18}")
_STAGE_NAME = re.compile(r"[a-z_]{1,32}")


def _notice(query: Mapping[str, str]) -> str:
    """The message after a retry/cancel redirect, built from a fixed set of codes (a link cannot
    make the page say arbitrary things)."""
    code, run = query.get("msg"), query.get("run", "")
    if not _RUN_KEY.fullmatch(run):
        return ""
    if code == "retried":
        stages = [n for n in query.get("stages", "").split(",") if _STAGE_NAME.fullmatch(n)]
        return f"{run}: {', '.join(stages) or 'stages'} queued again."
    if code == "cancelled":
        return f"{run}: cancelled."
    if code == "stopping":
        return f"{run}: cancelled; the running stage is being stopped."
    return ""


def _excerpt(text: str, lines: int = 4, chars: int = 400) -> str:
    """The first lines of an error message."""
    all_lines = text.strip().splitlines()
    out = "\n".join(line.rstrip() for line in all_lines[:lines])
    if len(out) > chars:
        return out[:chars].rstrip() + " \u2026"
    return out + ("\n\u2026" if len(all_lines) > lines else "")


_RETRYABLE = {"failed", "cancelled"}  # a done run whose optional stage was skipped offers no Retry
_CANCELLABLE = {"queued", "running"}


def _run_buttons(r: RunOverview, user: UserRow) -> list[tuple[str, str]]:
    """Retry/Cancel for a run the user may change (its owner, or an admin)."""
    if not (user["is_admin"] or (r["owner"] is not None and r["owner"] == user["email"])):
        return []
    states = {s["state"] for s in r["stages"]}
    buttons = []
    if states & _RETRYABLE and "running" not in states:
        buttons.append(("retry", "Retry"))
    if states & _CANCELLABLE:
        buttons.append(("cancel", "Cancel"))
    return buttons


_TILE_CLASS = {"OK": "ok", "WARNING": "warn", "DANGER": "fail", "OFFLINE": "offline", "NO_DATA": "nodata",
               "NO_THRESHOLD": "nodata"}


async def overview_tiles(request: web.Request, user: UserRow) -> list[dict[str, Any]]:
    """One tile per visible pipeline: its instrument status, latest run and verdict, runs queued."""
    svc = request.app[SERVICE]
    status = {(s["project"], s["pipeline"]): s for s in await svc.quality.status(user)}
    queue = await svc.store.call(Store.queue_by_pipeline)
    tiles = []
    for p in await svc.projects(user):
        for pl in await svc.pipelines(user, p["slug"]):
            st = status.get((p["slug"], pl["slug"]), {"status": "NO_DATA", "reason": "no runs yet", "latest_run": None})
            pid = await svc.store.call(Store.find_pipeline, f"{p['slug']}/{pl['slug']}")
            q = queue.get(pid["id"], {"queued": 0, "running": 0}) if pid else {"queued": 0, "running": 0}
            tiles.append({"project": p["slug"], "project_name": p["name"], "pipeline": pl["slug"], "name": pl["name"],
                          "uuid": pl["uuid"], "folder": pl["path_as_str"], "url": pipeline_url(p["slug"], pl["slug"]),
                          "status": st["status"], "cls": _TILE_CLASS.get(st["status"], "nodata"),
                          "reason": st["reason"], "latest": st["latest_run"], **q})
    return tiles


def _run_rows(runs: list[RunOverview], user: UserRow) -> list[dict[str, Any]]:
    return [r | {"excerpts": [(s["stage"], _excerpt(s["error"])) for s in r["stages"] if s["state"] in ("failed", "done") and s["error"]],
                 "buttons": _run_buttons(r, user)} for r in runs]


async def _home_page(request: web.Request, user: UserRow, csrf: str, *, notice: str = "",
                     error: str = "") -> str:
    svc = request.app[SERVICE]
    projects = []
    for p in await svc.projects(user):
        projects.append(p | {"pipes": [pl | {"url": pipeline_url(p["slug"], pl["slug"])}
                                       for pl in await svc.pipelines(user, p["slug"])]})
    context = {
        "title": "qcdaemon", "user": user, "csrf": csrf, "version": __version__, "notice": notice, "error": error,
        "tiles": await overview_tiles(request, user), "projects": projects,
        "alerts_api": any(getattr(r, "canonical", "") == "/api/alerts" for r in request.app.router.resources()),
        "runs": _run_rows(await svc.runs_overview(user, limit=25), user),
        "rejected": await svc.rejected_files(user, limit=25),
        # the alerts issue's server-side list (escaped there): works without JavaScript
        "alerts_html": Markup(await alerts_section(request, user, csrf)),
    }
    return aiohttp_jinja2.render_string("overview.html", request, context)


async def login(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    svc = request.app[SERVICE]
    form = await read_form(request)
    addr = request.remote or "?"
    token = form.get("csrfmiddlewaretoken")
    cookie = request.cookies.get(LOGIN_COOKIE)
    # stateless double submit: the form's token must be the cookie's, and signed with our key
    if not isinstance(token, str) or not security.same(token, cookie) or login_token_age(svc.key, cookie) is None:
        raise Forbidden("CSRF Failed: CSRF token missing or incorrect. Load the sign-in page first.")
    site = request.headers.get("Sec-Fetch-Site")
    if site and site not in ("same-origin", "none"):
        raise Forbidden("CSRF Failed: cross-site request.")
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source and urlsplit(source).netloc.lower() != (request.host or "").lower():
        raise Forbidden("CSRF Failed: Referer checking failed.")
    raw_next = form.get("next")
    next_url = safe_next(raw_next if isinstance(raw_next, str) else None)
    email, password = form.get("username"), form.get("password")
    account = email if isinstance(email, str) else None
    if not state["limiter"].try_start(addr, account):  # by address and by target account (issue 12)
        log.warning("login_rate_limited", remote=addr)
        return web.Response(text=_login_form(request, token, next_url, "Too many failed sign-ins; wait a minute."),
                            status=429, content_type="text/html", headers={LOGIN_FAILED: "rate-limited"})
    user = None
    if isinstance(email, str) and isinstance(password, str) and email and password \
            and is_text(email) and is_text(password):
        user = await svc.login(email, password)
    if user is None:
        log.warning("login_failed", remote=addr, email=email if isinstance(email, str) else None)
        # the browser shows the form again; a script sees the status (docs/api.md, "Signing in")
        return web.Response(text=_login_form(request, token, next_url, "Wrong e-mail or password."),
                            status=401, content_type="text/html", headers={LOGIN_FAILED: "wrong e-mail or password"})
    if (old := request[SESSION]) is not None:  # signing in again (as someone else): the old session ends
        await svc.store.call(Store.delete_session, old["digest"])
    state["limiter"].succeeded(addr, account)
    response = web.Response(status=302, headers={"Location": next_url})
    response.del_cookie(LOGIN_COOKIE, path="/")
    await _new_session(request, response, user["id"])
    log.info("login", user=user["email"], remote=addr)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    if session is None:
        return web.Response(status=302, headers={"Location": "/"})
    form = await read_form(request)
    token = form.get("csrfmiddlewaretoken")
    check_csrf(request, token if isinstance(token, str) else None)
    await request.app[SERVICE].store.call(Store.delete_session, session["digest"])
    response = web.Response(status=302, headers={"Location": "/"})
    response.del_cookie(COOKIE, path="/")
    return response


async def _run_action(request: web.Request, action: str) -> web.StreamResponse:
    """``POST /runs/retry`` and ``/runs/cancel`` (form: ``run_key``, ``csrfmiddlewaretoken``): 302 to ``/``
    with a message; a refusal (400/403/404/409) shows the home page with the reason and that status."""
    form = await read_form(request)
    user = request[USER]
    if user is None:
        raise Unauthorized("Authentication credentials were not provided.")
    by_session = request[AUTH_KIND] == "session"
    if by_session:
        token = form.get("csrfmiddlewaretoken")
        check_csrf(request, token if isinstance(token, str) else None)
    svc = request.app[SERVICE]
    run_key = form.get("run_key")
    try:
        if not isinstance(run_key, str) or not run_key.strip():
            raise BadRequest("run_key: this field is required")
        if not is_text(run_key):
            raise BadRequest("run_key: not valid UTF-8 text")
        if action == "retry":
            result = await svc.retry(user, run_key)
            query = {"msg": "retried", "run": result["run_key"], "stages": ",".join(result["requeued"])}
        else:
            result = await svc.cancel(user, run_key)
            query = {"msg": "stopping" if result["stopping"] else "cancelled", "run": result["run_key"]}
    except (BadRequest, Forbidden, NotFound, Conflict) as exc:
        if not by_session:
            raise  # scripts get the JSON error
        session = request[SESSION]
        page = await _home_page(request, user, session["csrf"] if session else "", error=str(exc))
        return web.Response(text=page, status=exc.status, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})
    log.info("run_" + action, user=user["email"], run=query["run"])
    return web.Response(status=302, headers={"Location": "/?" + urlencode(query)})


async def run_retry(request: web.Request) -> web.StreamResponse:
    return await _run_action(request, "retry")


async def run_cancel(request: web.Request) -> web.StreamResponse:
    return await _run_action(request, "cancel")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_post("/", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/runs/retry", run_retry)
    app.router.add_post("/runs/cancel", run_cancel)
