"""The web pages: login on ``/`` (as the original server scripts it), a home page, logout."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from .. import __version__, security
from ..errors import Forbidden
from .app import CONFIG, COOKIE, SERVICE, STATE, USER, SESSION, check_csrf
from .body import read_form

log = structlog.get_logger("qcdaemon.server")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}th,td{border-bottom:1px solid #ddd;
padding:.3rem .5rem;text-align:left;font-size:.9rem}th{background:#f4f4f4}.failed{color:#b00020}
.done{color:#176f2c}.running,.processing{color:#8a5a00}.muted{color:#777}form.inline{display:inline}
input{margin:.2rem 0;padding:.3rem}code{background:#f4f4f4;padding:0 .2rem}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{body}"
        f"<p class=muted>qcdaemon {__version__}</p></body></html>"
    )


def _safe_next(value: str | None) -> str:
    """Only same-site paths: never a scheme, host or protocol-relative URL."""
    if not value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if not value.isascii() or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/"  # a Location header cannot carry these (CR/LF would split the header)
    return value


async def _new_session(request: web.Request, response: web.StreamResponse, user_id: int | None) -> str:
    svc = request.app[SERVICE]
    cfg = request.app[CONFIG]
    sid, csrf = security.new_session_id(), security.new_csrf()
    hours = cfg.server.session_hours if user_id is not None else 12
    await svc.store.create_session(security.digest(sid), user_id, csrf, hours)
    response.set_cookie(
        COOKIE, sid, httponly=True, samesite="Strict", path="/", secure=bool(cfg.server.tls_cert),
        max_age=int(hours * 3600),
    )
    return csrf


def _is_text(value: str) -> bool:
    """Storable text (form bytes that were not UTF-8 arrive as lone surrogates)."""
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _login_form(csrf: str, next_url: str, error: str = "") -> str:
    err = f"<p class=failed>{html.escape(error)}</p>" if error else ""
    return _page(
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
    response = web.Response(content_type="text/html", charset="utf-8")
    if user is None or request["qcd_auth_kind"] != "session":
        csrf = session["csrf"] if session and session["user_id"] is None else await _new_session(request, response, None)
        response.text = _login_form(csrf, _safe_next(request.query.get("next")))
        return response
    response.text = await _home_page(request, user, session["csrf"])
    return response


async def _home_page(request: web.Request, user: dict[str, Any], csrf: str) -> str:
    svc = request.app[SERVICE]
    parts = [
        f"<h1>qcdaemon</h1><p>Signed in as <b>{html.escape(user['email'])}</b>"
        + (" (admin)" if user["is_admin"] else "")
        + ' &middot; <form class=inline method="post" action="/logout">'
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf)}">'
        '<button type="submit">Sign out</button></form></p>',
        "<h2>Projects and pipelines</h2><table><tr><th>Project</th><th>Pipeline</th><th>uuid (pid)</th>"
        "<th>Folder</th></tr>",
    ]
    projects = await svc.projects(user)
    for p in projects:
        pipes = await svc.pipelines(user, p["slug"])
        for pl in pipes or [{"name": "-", "slug": "", "uuid": "", "path_as_str": ""}]:
            parts.append(
                f"<tr><td>{html.escape(p['name'])} <code>{html.escape(p['slug'])}</code></td>"
                f"<td>{html.escape(pl['name'])} <code>{html.escape(pl['slug'])}</code></td>"
                f"<td><code>{html.escape(pl['uuid'])}</code></td><td>{html.escape(pl['path_as_str'])}</td></tr>"
            )
    if not projects:
        parts.append("<tr><td colspan=4 class=muted>No projects yet: ask an admin to add you to one.</td></tr>")
    parts.append("</table><h2>Recent runs</h2><table><tr><th>Run</th><th>File</th><th>Pipeline</th>"
                 "<th>Owner</th><th>State</th><th>Stages</th></tr>")
    for r in await svc.runs_overview(user, limit=25):
        stages = ", ".join(
            f"<span class={html.escape(s['state'])} title=\"{html.escape(s['error'] or '')}\">"
            f"{html.escape(s['stage'])}: {html.escape(s['state'])}</span>" for s in r["stages"]
        )
        parts.append(
            f"<tr><td>{r['run_key']}</td><td>{html.escape(r['name'])}</td>"
            f"<td>{html.escape(r['project'])}/{html.escape(r['pipeline'])}</td>"
            f"<td>{html.escape(r['owner'] or '')}</td><td class={html.escape(r['state'])}>{html.escape(r['state'])}"
            f"</td><td>{stages}</td></tr>"
        )
    parts.append(
        "</table><p>API: send <code>Authorization: Token &lt;token&gt;</code>, or this session with the "
        "<code>X-CSRFToken</code> header. Create a token with <code>POST /api/token</code>.</p>"
        f'<form><input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf)}"></form>'
    )
    return _page("qcdaemon", "".join(parts))


async def login(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    form = await read_form(request)
    addr = request.remote or "?"
    session = request[SESSION]
    token = form.get("csrfmiddlewaretoken")
    if session is None or not isinstance(token, str) or not security.same(token, session["csrf"]):
        raise Forbidden("CSRF Failed: CSRF token missing or incorrect. Load the sign-in page first.")
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source and urlsplit(source).netloc.lower() != (request.host or "").lower():
        raise Forbidden("CSRF Failed: Referer checking failed.")
    next_url = _safe_next(form.get("next") if isinstance(form.get("next"), str) else None)  # type: ignore[arg-type]
    if state["limiter"].blocked(addr):
        log.warning("login_rate_limited", remote=addr)
        return web.Response(text=_login_form(session["csrf"], next_url, "Too many failed sign-ins; wait a minute."),
                            status=429, content_type="text/html")
    email, password = form.get("username"), form.get("password")
    user = None
    if isinstance(email, str) and isinstance(password, str) and email and password \
            and _is_text(email) and _is_text(password):
        user = await request.app[SERVICE].login(email, password)
    if user is None:
        state["limiter"].failed(addr)
        log.warning("login_failed", remote=addr, email=email if isinstance(email, str) else None)
        return web.Response(text=_login_form(session["csrf"], next_url, "Wrong e-mail or password."),
                            status=200, content_type="text/html")
    await request.app[SERVICE].store.delete_session(session["digest"])
    response = web.Response(status=302, headers={"Location": next_url})
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
    await request.app[SERVICE].store.delete_session(session["digest"])
    response = web.Response(status=302, headers={"Location": "/"})
    response.del_cookie(COOKIE, path="/")
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_post("/", login)
    app.router.add_post("/logout", logout)
