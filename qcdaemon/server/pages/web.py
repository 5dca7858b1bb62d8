"""What every HTML page shares: Jinja2 templates (autoescaped), the static files, the security
headers on every response, and the HTML 404 page for browsers.

Templates live in ``pages/templates``, static files (our CSS/JS and the vendored uPlot) in
``pages/static`` and are served under ``/static/``.  Nothing is loaded from elsewhere: the
Content-Security-Policy allows scripts, styles, images and requests from this origin only.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from qcdaemon import __version__
from qcdaemon.server.keys import SESSION, USER, Handler

HERE = Path(__file__).parent
STATIC = HERE / "static"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response (pages, static files, JSON, errors) carries the same four headers.

    ``Referrer-Policy: same-origin`` keeps the Referer for our own requests, which the CSRF check
    of cookie sessions needs, and sends nothing to other sites."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def wants_html(request: web.Request) -> bool:
    """A browser navigation (not an API client): HTML 404 pages only for these."""
    if request.method not in ("GET", "HEAD"):  # a navigation is a GET; a form to a wrong URL is an API error
        return False
    if request.path.startswith("/api/") or request.path.startswith("/static/"):
        return False
    return "text/html" in request.headers.get("Accept", "")


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown routes answer an HTML 404 page to browsers (JSON ``{"detail"}`` to everyone else)."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if not wants_html(request):
            raise
        return render(request, "404.html", {"title": "Not found", "what": "This page does not exist."}, status=404)


def _html_time(value: Any) -> str:
    """A valid global date and time string for ``<time datetime>``: UTC, whole seconds (HTML
    allows at most three digits of a second's fraction; an ISO time may carry six)."""
    t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    t = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(value: Any) -> str:
    """``3 h ago`` for an ISO time (or datetime); ``-`` for none."""
    if not value:
        return "-"
    t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    s = (dt.datetime.now(dt.UTC) - t).total_seconds()
    if s < 0:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if s >= size:
            return f"{int(s // size)} {unit} ago"
    return f"{int(s)} s ago"


def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    user = request.get(USER)
    session = request.get(SESSION)
    base = {"user": user, "csrf": session["csrf"] if session else "", "version": __version__}
    response = aiohttp_jinja2.render_template(template, request, base | context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ago"] = _ago
    env.filters["htmltime"] = _html_time
    app.middlewares.append(html_errors)
    app.on_response_prepare.append(_security_headers)
    _add_static(app)


def _add_static(app: web.Application) -> None:
    """``/static/<path>``: only the files shipped in ``pages/static`` (listed once at start-up), so
    no client path ever reaches the file system; anything else is a 404 ``{"detail"}`` (aiohttp's
    own static route answers a missing file with an empty, non-JSON 404)."""
    files = {f.relative_to(STATIC).as_posix(): f for f in STATIC.rglob("*") if f.is_file()}

    async def static_file(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["path"])
        if path is None:
            raise web.HTTPNotFound(text="no such static file")
        return web.FileResponse(path)

    app.router.add_get("/static/{path:.+}", static_file, name="static")
