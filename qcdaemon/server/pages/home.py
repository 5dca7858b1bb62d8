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
import html
import re
import secrets
import time
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

import structlog
from aiohttp import web

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
from qcdaemon.server.pages.html import is_text, page, pipeline_link, safe_next
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


def _login_form(csrf: str, next_url: str, error: str = "") -> str:
    err = f"<p class=failed>{html.escape(error)}</p>" if error else ""
    return page(
        "qcdaemon: sign in",
        "<h1>qcdaemon</h1><h2>Sign in</h2>" + err +
        '<form method="post" action="/">'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf)}">'
        f'<input type="hidden" name="next" value="{html.escape(next_url)}">'
        '<label>E-mail<br><input type="email" name="username" autocomplete="username" required></label><br>'
        '<label>Password<br><input type="password" name="password" autocomplete="current-password" required>'
        '</label><br><button type="submit">Sign in</button></form>',
    )


async def home(request: web.Request) -> web.Response:
    session = request[SESSION]
    user = request[USER]
    response = web.Response(content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})
    if user is None or request[AUTH_KIND] != "session":
        response.text = _login_form(_login_token(request, response), safe_next(request.query.get("next")))
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


_RETRYABLE = {"failed", "cancelled"}
_CANCELLABLE = {"queued", "running"}


def _run_buttons(r: RunOverview, user: UserRow, csrf: str) -> str:
    """Retry/Cancel forms for a run the user may change (its owner, or an admin)."""
    if not (user["is_admin"] or (r["owner"] is not None and r["owner"] == user["email"])):
        return ""
    states = {s["state"] for s in r["stages"]}
    buttons = []
    if states & _RETRYABLE and "running" not in states:
        buttons.append(("retry", "Retry"))
    if states & _CANCELLABLE:
        buttons.append(("cancel", "Cancel"))
    return "".join(
        f'<form class=inline method="post" action="/runs/{action}">'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf)}">'
        f'<input type="hidden" name="run_key" value="{html.escape(r["run_key"])}">'
        f'<button type="submit">{label}</button></form> '
        for action, label in buttons
    )


async def _home_page(request: web.Request, user: UserRow, csrf: str, *, notice: str = "",
                     error: str = "") -> str:
    svc = request.app[SERVICE]
    parts = [
        f"<h1>qcdaemon</h1><p>Signed in as <b>{html.escape(user['email'])}</b>"
        + (" (admin)" if user["is_admin"] else "")
        + ' &middot; <form class=inline method="post" action="/logout">'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf)}">'
        '<button type="submit">Sign out</button></form></p>'
        + (f"<p class=notice>{html.escape(notice)}</p>" if notice else "")
        + (f"<p class=failed>{html.escape(error)}</p>" if error else ""),
        "<h2>Projects and pipelines</h2><table><tr><th>Project</th><th>Pipeline</th><th>uuid (pid)</th>"
        "<th>Folder</th></tr>",
    ]
    projects = await svc.projects(user)
    for p in projects:
        pipes = await svc.pipelines(user, p["slug"])
        for pl in pipes or [{"name": "-", "slug": "", "uuid": "", "path_as_str": ""}]:
            parts.append(
                f"<tr><td>{html.escape(p['name'])} <code>{html.escape(p['slug'])}</code></td>"
                f"<td>{pipeline_link(p['slug'], pl)} <code>{html.escape(pl['slug'])}</code></td>"
                f"<td><code>{html.escape(pl['uuid'])}</code></td><td>{html.escape(pl['path_as_str'])}</td></tr>"
            )
    if not projects:
        parts.append("<tr><td colspan=4 class=muted>No projects yet: ask an admin to add you to one.</td></tr>")
    parts.append("</table><h2>Recent runs</h2><table><tr><th>Run</th><th>File</th><th>Pipeline</th>"
                 "<th>Owner</th><th>State</th><th>Stages</th><th></th></tr>")
    for r in await svc.runs_overview(user, limit=25):
        stages = ", ".join(
            f"<span class={html.escape(s['state'])} title=\"{html.escape(s['error'] or '')}\">"
            f"{html.escape(s['stage'])}: {html.escape(s['state'])}</span>" for s in r["stages"]
        )
        errors = "".join(
            f"<pre class=err>{html.escape(s['stage'])}: {html.escape(_excerpt(s['error']))}</pre>"
            for s in r["stages"] if s["state"] in ("failed", "done") and s["error"]  # done: a note
        )
        parts.append(
            f"<tr><td>{html.escape(r['run_key'])}</td><td>{html.escape(r['name'])}</td>"
            f"<td>{html.escape(r['project'])}/{html.escape(r['pipeline'])}</td>"
            f"<td>{html.escape(r['owner'] or '')}</td><td class={html.escape(r['state'])}>{html.escape(r['state'])}"
            f"</td><td>{stages}{errors}</td><td>{_run_buttons(r, user, csrf)}</td></tr>"
        )
    parts.append("</table>")
    rejected = await svc.rejected_files(user, limit=25)
    if rejected:
        parts.append("<h2>Rejected files</h2><p class=muted>Files in watched folders that did not become "
                     "runs.</p><table><tr><th>File</th><th>Pipeline</th><th>Size</th><th>Reason</th></tr>")
        parts.extend(
            f"<tr><td title=\"{html.escape(f['path'])}\">{html.escape(f['name'])}</td>"
            f"<td>{html.escape(f['pipeline'] or '')}</td><td>{f['size']}</td>"
            f"<td class=failed>{html.escape(f['reason'] or '')}</td></tr>" for f in rejected
        )
        parts.append("</table>")
    parts.append(await alerts_section(request, user, csrf))
    parts.append(
        "<p>API: send <code>Authorization: Token &lt;token&gt;</code>, or this session with the "
        "<code>X-CSRFToken</code> header. Create a token with <code>POST /api/token</code>.</p>"
        f'<form><input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf)}"></form>'
    )
    return page("qcdaemon", "".join(parts))


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
        return web.Response(text=_login_form(token, next_url, "Too many failed sign-ins; wait a minute."),
                            status=429, content_type="text/html", headers={LOGIN_FAILED: "rate-limited"})
    user = None
    if isinstance(email, str) and isinstance(password, str) and email and password \
            and is_text(email) and is_text(password):
        user = await svc.login(email, password)
    if user is None:
        log.warning("login_failed", remote=addr, email=email if isinstance(email, str) else None)
        # the browser shows the form again; a script sees the status (docs/api.md, "Signing in")
        return web.Response(text=_login_form(token, next_url, "Wrong e-mail or password."),
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
