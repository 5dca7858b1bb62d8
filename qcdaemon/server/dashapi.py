"""The JSON routes the dashboard needs beyond the contract and ``/api/qc/*`` (``docs/api.md``,
"Dashboard"): one run's QC report and its stages' tool logs, a page of runs with verdicts, project membership.  Same auth,
CSRF and scoping as every route; errors are ``{"detail"}``."""

from __future__ import annotations

from aiohttp import web

from qcdaemon.errors import BadRequest
from qcdaemon.server.body import read_body, scope
from qcdaemon.server.jsonout import json_response
from qcdaemon.server.keys import SERVICE, Handler
from qcdaemon.server.middleware import require_user
from qcdaemon.service.dashboard import DashboardService


def _dash(request: web.Request) -> DashboardService:
    return DashboardService(request.app[SERVICE].store, request.app[SERVICE].cfg.files)


async def run_report(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await _dash(request).run_metrics(user, body.text("run_key", required=True)))


async def stage_logs(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await _dash(request).stage_logs(user, body.text("run_key", required=True),
                                                         body.text("stage", required=True)))


async def runs_page(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    offset = body.int_or_none("offset") or 0
    limit = body.int_or_none("limit")
    limit = 50 if limit is None else limit
    if offset < 0 or not 1 <= limit <= 1000:
        raise BadRequest("offset: 0 or more; limit: 1..1000")
    return json_response(await _dash(request).runs_page(user, project, pipeline, offset, limit))


async def members(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await _dash(request).members(user, body.text("project", required=True)))


def _member_handler(member: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request)
        user = require_user(request)
        out = await _dash(request).set_member(user, body.text("project", required=True),
                                              body.text("email", required=True), member)
        return json_response(out)

    return handler


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/qc/run", run_report)
    app.router.add_post("/api/qc/run/logs", stage_logs)
    app.router.add_post("/api/qc/runs", runs_page)
    app.router.add_post("/api/members", members)
    app.router.add_post("/api/members/add", _member_handler(True))
    app.router.add_post("/api/members/remove", _member_handler(False))
