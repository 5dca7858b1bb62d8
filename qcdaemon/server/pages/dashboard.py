"""The dashboard's pages: a pipeline's control charts, one run, the protein explorer, project
members, the account (API token).  Each page is a template; its figures come from the JSON routes
(``/api/qc/*``, ``/api/chromatograms``, ``/api/protein-*``), fetched by our scripts in ``static/``,
so every number on screen can be had by a script too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from qcdaemon.errors import BadRequest, NotFound
from qcdaemon.server.keys import AUTH_KIND, SERVICE, USER
from qcdaemon.server.pages.html import pipeline_url
from qcdaemon.server.pages.web import render
from qcdaemon.service.dashboard import DashboardService
from qcdaemon.store import Store
from qcdaemon.store.rows import UserRow

RETRYABLE = frozenset({"failed", "cancelled"})
CANCELLABLE = frozenset({"queued", "running"})


def _signed_in(request: web.Request) -> UserRow | None:
    user = request[USER]
    return user if user is not None and request[AUTH_KIND] == "session" else None


def _to_sign_in(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/?next=" + quote(request.path_qs, safe="/")})


def _not_visible(request: web.Request, what: str) -> web.Response:
    return render(request, "404.html", {"title": "Not found", "what": f"{what}: not found or not visible to you."},
                  status=404)


async def _pipeline(request: web.Request, user: UserRow) -> dict[str, Any] | None:
    project, pipeline = request.match_info["project"], request.match_info["pipeline"]
    p = await request.app[SERVICE].store.call(Store.visible_pipeline, user, project, pipeline)
    if p is None:
        return None
    proj = await request.app[SERVICE].store.call(Store.project_by_slug, project)
    manage = bool(user["is_admin"] or (proj is not None and proj["created_by"] == user["id"]))
    return {"project": project, "project_name": proj["name"] if proj else project, "slug": pipeline,
            "name": p["name"], "uuid": p["uuid"], "url": pipeline_url(project, pipeline), "manage": manage,
            "read_only": bool(p.get("read_only"))}


def _pipeline_page(template: str, title: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        user = _signed_in(request)
        if user is None:
            return _to_sign_in(request)
        pl = await _pipeline(request, user)
        if pl is None:
            return _not_visible(request, f"Pipeline {request.match_info['project']}/{request.match_info['pipeline']}")
        return render(request, template, {"title": f"{pl['name']}: {title}", "pl": pl})

    return handler


async def run_page(request: web.Request) -> web.StreamResponse:
    user = _signed_in(request)
    if user is None:
        return _to_sign_in(request)
    key = request.match_info["run_key"]
    try:
        run = await DashboardService(request.app[SERVICE].store).visible_run(user, key)
    except (NotFound, BadRequest):
        return _not_visible(request, f"Run {key}")
    pl = await _pipeline_info(request, user, run)
    may_change = bool(user["is_admin"] or run["owner_id"] == user["id"])
    stages = []
    for s in run["stages"]:
        took = None
        if s.get("started_at") and s.get("ended_at"):
            took = round((s["ended_at"] - s["started_at"]).total_seconds(), 1)
        stages.append(s | {"took": took, "where": ran_on(s)})
    states = {s["state"] for s in run["stages"]}
    context = {"title": f"{run['name']} ({run['run_key']})", "run": run, "pl": pl, "stages": stages,
               "may_retry": may_change and bool(states & RETRYABLE) and "running" not in states,
               "may_cancel": may_change and bool(states & CANCELLABLE)}
    return render(request, "run.html", context)


def ran_on(stage: Mapping[str, Any]) -> str:
    """Where the stage's (last) attempt ran: the Dask worker and job key of a remote stage (issue
    17), "local" for one the daemon ran itself, "not started" before its first attempt."""
    worker, key = stage.get("worker"), stage.get("remote_key")
    if key:
        return f"Dask worker {worker}, job {key}" if worker else f"Dask job {key} (worker not known yet)"
    if worker:
        return f"Dask worker {worker}"
    return "local" if stage.get("started_at") else "not started"


async def _pipeline_info(request: web.Request, user: UserRow, run: dict[str, Any]) -> dict[str, Any]:
    p = await request.app[SERVICE].store.call(Store.visible_pipeline, user, run["project_slug"], run["pipeline_slug"])
    return {"project": run["project_slug"], "slug": run["pipeline_slug"], "name": p["name"] if p else run["pipeline_slug"],
            "url": pipeline_url(run["project_slug"], run["pipeline_slug"])}


async def account_page(request: web.Request) -> web.StreamResponse:
    user = _signed_in(request)
    if user is None:
        return _to_sign_in(request)
    token = await request.app[SERVICE].store.call(Store.token_of, user["id"])
    return render(request, "account.html", {"title": "Account", "has_token": token is not None})


def add_routes(app: web.Application) -> None:
    base = "/pipelines/{project}/{pipeline}"
    app.router.add_get(base + "/dashboard", _pipeline_page("pipeline.html", "QC dashboard"))
    app.router.add_get(base + "/proteins", _pipeline_page("explorer.html", "protein explorer"))
    app.router.add_get(base + "/members", _pipeline_page("members.html", "project members"))
    app.router.add_get("/runs/{run_key:rf[0-9]{1,18}}", run_page)
    app.router.add_get("/account", account_page)
