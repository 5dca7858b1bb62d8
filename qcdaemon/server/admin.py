"""The local admin endpoint through which the CLI works while the daemon holds the database."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from qcdaemon.core import security
from qcdaemon.core.net import is_loopback
from qcdaemon.errors import BadRequest, Forbidden, NotFound
from qcdaemon.server.jsonout import json_response
from qcdaemon.server.keys import SERVICE, STATE
from qcdaemon.service.adminops import OPS


async def admin_op(request: web.Request) -> web.Response:
    secret = request.app[STATE].get("admin_secret")
    if not secret or not is_loopback(request.remote):
        raise NotFound("Not Found")
    if not security.same(request.headers.get("X-Qcdaemon-Admin"), secret):
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


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_admin/op", admin_op)
