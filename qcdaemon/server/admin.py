"""The admin channel through which the CLI works while the daemon holds the database.

It is its own small application on its own listener, always on ``127.0.0.1`` (a free port the
daemon records in ``daemon.json``), whatever ``[server] host`` says: the CLI runs on the same
machine, and the operations it sends (add users, make tokens, snapshots) must never be reachable
from the network.  Every request carries the random secret the daemon wrote to ``admin.secret``
(0600), so only the daemon's user (or root) can use it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from qcdaemon.core import security
from qcdaemon.core.net import is_loopback
from qcdaemon.errors import BadRequest, Forbidden, NotFound
from qcdaemon.server.jsonout import json_response
from qcdaemon.server.keys import SERVICE
from qcdaemon.server.middleware import error_middleware
from qcdaemon.service.adminops import OPS
from qcdaemon.service.qcservice import QcService

ADMIN_HOST = "127.0.0.1"
ADMIN_PATH = "/_admin/op"
ADMIN_SECRET = web.AppKey("admin_secret", str)


async def admin_op(request: web.Request) -> web.Response:
    if not is_loopback(request.remote):  # the listener is loopback-only; this is a second lock
        raise NotFound("Not Found")
    if not security.same(request.headers.get("X-Qcdaemon-Admin"), request.app[ADMIN_SECRET]):
        raise Forbidden("bad admin secret")
    try:
        payload: Any = json.loads(await request.read())
    except ValueError:
        raise BadRequest("the admin request is not JSON") from None
    if not isinstance(payload, dict) or payload.get("op") not in OPS or not isinstance(payload.get("args"), dict):
        raise BadRequest("expected {op, args} with a known op")
    try:
        result = await OPS[payload["op"]](request.app[SERVICE], **payload["args"])
    except TypeError as exc:
        raise BadRequest(f"bad arguments: {exc}") from None
    return json_response({"result": result})


def create_admin_app(service: QcService, secret: str) -> web.Application:
    """The admin channel's application: one route, errors as JSON ``{"detail": ...}``."""
    if len(secret) < 32:
        raise ValueError("the admin secret must be long and random")
    app = web.Application(middlewares=[error_middleware], client_max_size=1024 * 1024)
    app[SERVICE] = service
    app[ADMIN_SECRET] = secret
    app.router.add_post(ADMIN_PATH, admin_op)
    return app


@asynccontextmanager
async def serve_admin(service: QcService, secret: str, port: int = 0) -> AsyncIterator[str]:
    """Serve the admin channel on loopback (``port`` 0: a free one); yields the URL to post to."""
    runner = web.AppRunner(create_admin_app(service, secret), shutdown_timeout=10.0, access_log=None,
                           handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host=ADMIN_HOST, port=port)
        await site.start()
        bound = runner.addresses[0][1]
        yield f"http://{ADMIN_HOST}:{bound}{ADMIN_PATH}"
    finally:
        await runner.cleanup()
