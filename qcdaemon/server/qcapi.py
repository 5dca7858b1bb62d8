"""The ``/api/qc/*`` handlers: verdicts, control charts, instrument status, and the guide sets,
annotations, exclusions and rules behind them (``docs/api.md``, "Quality control").  Thin by design:
parse the body, call :class:`qcdaemon.service.quality.QualityService`, answer JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from qcdaemon.errors import BadRequest
from qcdaemon.server.body import read_body, scope
from qcdaemon.server.jsonout import json_response
from qcdaemon.server.keys import SERVICE, Handler
from qcdaemon.server.middleware import require_user
from qcdaemon.service.quality import QualityService, parse_time


def _q(request: web.Request) -> QualityService:
    return request.app[SERVICE].quality


def _keys(body: Any, name: str = "run_keys", *, required: bool = False) -> list[str] | None:
    keys = body.list(name, required=required)
    return None if keys is None else [str(k) for k in keys]


async def metrics(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await _q(request).metrics(user, *scope(body)))


async def chart(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    out = await _q(request).chart(user, project, pipeline, body.text("metric", required=True) or "",
                                  body.text("kind") or "values")
    out = window_points(out, body.int_or_none("last"), body.text("start"), body.text("end"))
    if body.flag("compact"):  # leave out what a point does not have (null, false, empty lists)
        out["points"] = [{k: v for k, v in p.items() if v is not None and v is not False and v != []}
                         for p in out["points"]]
    return json_response(out)


def window_points(out: dict[str, Any], last: int | None, start: str | None, end: str | None) -> dict[str, Any]:
    """Only the points a client draws: acquired in ``start``..``end`` and/or the newest ``last``
    (``total`` says how many there are).  Limits, violations and verdicts are those of all runs."""
    from_t = parse_time(start, "start").isoformat() if start else None
    to_t = parse_time(end, "end").isoformat() if end else None
    points = out["points"]
    out["total"] = len(points)
    if from_t or to_t:
        points = [p for p in points if (not from_t or p["time"] >= from_t) and (not to_t or p["time"] <= to_t)]
    if last:
        points = points[-last:]
    out["points"] = points
    return out


async def verdicts(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await _q(request).verdicts(user, *scope(body), _keys(body)))


async def status(request: web.Request) -> web.Response:
    body = await read_body(request) if request.method == "POST" else None
    user = require_user(request)
    project = body.text("project") if body else request.query.get("project")
    pipeline = body.text("pipeline") if body else request.query.get("pipeline")
    return json_response({"pipelines": await _q(request).status(user, project, pipeline)})


async def guide_sets(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await _q(request).guide_sets(user, *scope(body)))


async def guide_set_create(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    out = await _q(request).add_guide_set(user, project, pipeline, label=body.text("label") or "",
                                          start=body.text("start"), end=body.text("end"),
                                          run_keys=_keys(body))
    return json_response(out, status=201)


async def guide_set_delete(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    return json_response(await _q(request).delete_guide_set(user, project, pipeline, body.text("id", required=True)))


async def annotation_kinds(request: web.Request) -> web.Response:
    require_user(request)
    return json_response({"kinds": await _q(request).annotation_kinds()})


async def annotation_kind_create(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    out = await _q(request).add_annotation_kind(user, body.text("name", required=True), body.text("label", required=True),
                                                body.flag("resets_baseline"))
    return json_response(out, status=201)


async def annotation_list(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await _q(request).annotations(user, *scope(body)))


async def annotation_create(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    out = await _q(request).add_annotation(user, project, pipeline, kind=body.text("kind", required=True),
                                           time=body.text("time", required=True), text=body.text("text") or "")
    return json_response(out, status=201)


async def annotation_delete(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    return json_response(await _q(request).delete_annotation(user, project, pipeline, body.text("id", required=True)))


async def exclusions(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await _q(request).exclusions(user, *scope(body)))


def _exclusion_handler(excluded: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request)
        user = require_user(request)
        project, pipeline = scope(body)
        out = await _q(request).set_exclusions(user, project, pipeline, metric=body.text("metric", required=True),
                                               run_keys=_keys(body, required=True), excluded=excluded,
                                               reason=body.text("reason") or "")
        return json_response(out, status=201 if excluded else 200)

    return handler


async def rules(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    if "rules" not in body and "metric_overrides" not in body:
        raise BadRequest("give rules and/or metric_overrides (null: back to the defaults)")
    out = await _q(request).set_rules(user, project, pipeline, body.text("metric", required=True) or "",
                                      body.json("rules"), body.json("metric_overrides"))
    return json_response(out)


async def settings(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    if "auto_guide_runs" not in body:
        raise BadRequest("auto_guide_runs: this field is required")
    out = await _q(request).set_pipeline_settings(user, project, pipeline, auto_guide_runs=body.json("auto_guide_runs"),
                                                  offline_hours=body.json("offline_hours"))
    return json_response(out)


async def recompute(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    return json_response(await _q(request).recompute_for(user, project, pipeline))


def add_routes(app: web.Application) -> None:
    post = {
        "/api/qc/metrics": metrics,
        "/api/qc/chart": chart,
        "/api/qc/verdicts": verdicts,
        "/api/qc/status": status,
        "/api/qc/guide-sets": guide_sets,
        "/api/qc/guide-sets/create": guide_set_create,
        "/api/qc/guide-sets/delete": guide_set_delete,
        "/api/qc/annotation-kinds/create": annotation_kind_create,
        "/api/qc/annotations": annotation_list,
        "/api/qc/annotations/create": annotation_create,
        "/api/qc/annotations/delete": annotation_delete,
        "/api/qc/exclusions": exclusions,
        "/api/qc/exclusions/create": _exclusion_handler(True),
        "/api/qc/exclusions/delete": _exclusion_handler(False),
        "/api/qc/rules": rules,
        "/api/qc/settings": settings,
        "/api/qc/recompute": recompute,
    }
    for path, handler in post.items():
        app.router.add_post(path, handler)
    app.router.add_get("/api/qc/status", status)
    app.router.add_get("/api/qc/annotation-kinds", annotation_kinds)
