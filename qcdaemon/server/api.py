"""The ``/api/*`` handlers: parse the body, call the service, answer JSON.  Thin by design."""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from qcdaemon import __version__
from qcdaemon.alerts import ops as alert_ops
from qcdaemon.errors import BadRequest, NotFound, QcdaemonError
from qcdaemon.server.body import Body, read_body, scope
from qcdaemon.server.jsonout import answer_response, json_response
from qcdaemon.server.keys import CONFIG, SERVICE, STATE, Handler
from qcdaemon.server.middleware import require_user
from qcdaemon.store import Store, hubdata


async def projects(request: web.Request) -> web.Response:
    await read_body(request)
    user = require_user(request)
    return json_response(await request.app[SERVICE].projects(user))


async def pipelines(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await request.app[SERVICE].pipelines(user, body.text("project")))


async def pipeline_uploaders(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    svc = request.app[SERVICE]
    return json_response(await svc.pipeline_uploaders(user, body.text("project"), body.text("pipeline")))


async def qc_data(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    columns = body.list("columns")
    data = await request.app[SERVICE].qc_data_json(
        user, project, pipeline, body.int_or_none("data_range"), [str(c) for c in columns] if columns else None
    )
    return await answer_response(request, data)


async def protein_names(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    data = await request.app[SERVICE].protein_names_json(
        user, project, pipeline, body.int_or_none("data_range"), body.list("raw_files"),
        body.flag("remove_contaminants"), body.flag("remove_reversed_sequences"),
    )
    return await answer_response(request, data)


async def protein_groups(request: web.Request) -> web.StreamResponse:
    body = await read_body(request)
    user = require_user(request)
    if "columns" not in body or "protein_names" not in body:
        return web.Response(text="alive", content_type="text/plain")
    project, pipeline = scope(body)
    names = body.list("protein_names") or []
    columns = body.list("columns") or []
    data = await request.app[SERVICE].protein_groups_json(
        user, project, pipeline, body.int_or_none("data_range"), body.list("raw_files"),
        [str(n) for n in names], [str(c) for c in columns],
    )
    return await answer_response(request, data)


def _selector(body: Body) -> dict[str, Any]:
    sel = {"run_keys": body.list("run_keys"), "raw_file_ids": body.list("raw_file_ids"),
           "raw_files": body.list("raw_files")}
    given = [k for k, v in sel.items() if v is not None]
    if len(given) > 1:
        raise BadRequest(f"give only one of run_keys, raw_file_ids, raw_files (got {', '.join(given)})")
    return sel


def _run_state_handler(action: str | None) -> Handler:
    """/api/rawfile (``action`` from the body) and /api/flag/create|delete (fixed action)."""

    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request)
        user = require_user(request)
        try:
            project, pipeline = scope(body)
            chosen = action or body.text("action", required=True)
            result = await request.app[SERVICE].rawfile_action(user, project, pipeline, chosen, **_selector(body))
        except QcdaemonError as exc:
            if not 400 <= exc.status < 500:
                raise
            # the original's dashboard reads response["status"] after a mutation: its refusal carries one too
            # (docs/api.md, "Compatibility with the original's clients")
            status = "Missing permissions" if exc.status == 403 else "failed"
            return json_response({"detail": str(exc), "status": status}, status=exc.status)
        return json_response(result)

    return handler


async def token_create(request: web.Request) -> web.Response:
    await read_body(request)
    user = require_user(request)
    token, created = await request.app[SERVICE].token_create(user)
    return json_response({"token": token, "created": created}, status=201 if created else 200)


async def token_delete(request: web.Request) -> web.Response:
    await read_body(request)
    user = require_user(request)
    revoked = await request.app[SERVICE].token_revoke(user)
    return json_response({"revoked": revoked})


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def status(request: web.Request) -> web.Response:
    user = require_user(request)
    state = request.app[STATE]
    svc = request.app[SERVICE]
    # a non-admin learns only of failures in runs they may see (decisions.md, "Who sees what")
    projects = None if user["is_admin"] else [p["id"] for p in await svc.store.call(Store.visible_projects, user)]
    info: dict[str, Any] = {
        "version": __version__,
        "uptime_seconds": round(time.time() - state["started"], 1),
        "queue": await svc.store.call(Store.queue_depth, projects),
        "last_error": await svc.store.call(Store.last_error, projects),
        "watched_folders": [],
    }
    if user["is_admin"]:
        info["data_dir"] = str(request.app[CONFIG].data_dir)
    if state["status"] is not None:
        info.update(await state["status"]())
        if projects is not None:  # the engine's count is of every project's stages: a non-admin gets theirs
            info["running_stages"] = info["queue"]["running"]
    info["alert_channels"] = await alert_ops.channel_status(svc.store, request.app[CONFIG], details=bool(user["is_admin"]))
    if not user["is_admin"]:  # only the folders that feed pipelines the user can see
        visible = {p["slug"] for p in await svc.store.call(Store.visible_projects, user)}
        kept = []
        for w in info["watched_folders"]:
            p = await svc.store.call(Store.find_pipeline, w["pipeline"])
            if p is not None and p["project_slug"] in visible:
                kept.append(w)
        info["watched_folders"] = kept
    return json_response(info)


async def runs(request: web.Request) -> web.Response:
    body = await read_body(request) if request.method == "POST" else None
    user = require_user(request)
    project = body.text("project") if body else request.query.get("project")
    pipeline = body.text("pipeline") if body else request.query.get("pipeline")
    limit = body.int_or_none("limit") if body else _query_int(request, "limit")
    limit = 100 if limit is None else limit
    data = await request.app[SERVICE].runs_overview(user, project, pipeline, min(limit, 1000))
    return json_response(data)


async def changes(request: web.Request) -> web.Response:
    """Runs changed after a cursor, with their values (docs/api.md, "Change cursor"): what a hub pulls."""
    body = await read_body(request) if request.method == "POST" else None
    user = require_user(request)
    since = body.int_or_none("since") if body else _query_int(request, "since")
    limit = body.int_or_none("limit") if body else _query_int(request, "limit")
    if (since is not None and since < 0) or (limit is not None and limit < 1):
        raise BadRequest("since: expected an integer >= 0; limit: expected an integer >= 1")
    store = request.app[SERVICE].store
    projects = None if user["is_admin"] else [p["id"] for p in await store.read(Store.visible_projects, user)]
    return json_response(await store.read(Store.changes_since, since or 0, min(limit or 200, 1000), projects))


async def change_run_data(request: web.Request) -> web.Response:
    """One page of a run's protein groups, PSMs or chromatograms (docs/api.md, "Change cursor"):
    what a hub fetches for a run whose data fingerprint changed.  Scoped like ``/api/changes``."""
    user = require_user(request)
    key = request.query.get("run_key", "").strip()
    part = request.query.get("part", "")
    if not re.fullmatch(r"rf[0-9]{1,18}", key):
        raise BadRequest(f"run_key: expected a run key like rf12, got {key[:40]!r}")
    if part not in hubdata.PARTS:
        raise BadRequest(f"part: expected one of {', '.join(hubdata.PARTS)}, got {part[:40]!r}")
    offset, limit = _query_int(request, "offset") or 0, _query_int(request, "limit")
    store = request.app[SERVICE].store
    run_id = int(key[2:])
    project = await store.read(Store.run_project, run_id)
    visible = user["is_admin"] or project in {p["id"] for p in await store.read(Store.visible_projects, user)}
    if project is None or not visible:
        raise NotFound(f"run {key} does not exist")
    page = await store.read(Store.run_data_page, run_id, part, offset, limit or hubdata.MAX_PAGE[part])
    return json_response({"run_key": key, **page})


def _query_int(request: web.Request, name: str) -> int | None:
    """A non-negative integer query parameter (400 naming it when it is not one)."""
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise BadRequest(f"{name}: expected a non-negative integer, got {value[:40]!r}")
    return int(value)


async def run_retry(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    stages = body.list("stages")
    return json_response(await request.app[SERVICE].retry(user, body.text("run_key", required=True), stages))


async def run_cancel(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await request.app[SERVICE].cancel(user, body.text("run_key", required=True)))


async def mzqc_export(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    run_keys = body.list("run_keys")
    doc = await request.app[SERVICE].mzqc_export(
        user, project, pipeline, body.int_or_none("data_range"), [str(k) for k in run_keys] if run_keys else None
    )
    response = json_response(doc)
    # the pipeline passed the visibility check, so it is a stored slug: safe in a header
    response.headers["Content-Disposition"] = f'attachment; filename="{pipeline}.mzQC"'
    return response


async def chromatograms(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    project, pipeline = scope(body)
    run_key = body.text("run_key", required=True)
    return json_response(await request.app[SERVICE].chromatograms(user, project, pipeline, run_key))


async def run_delete(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    return json_response(await request.app[SERVICE].delete_run(user, body.text("run_key", required=True)))


async def rejected(request: web.Request) -> web.Response:
    user = require_user(request)
    limit = _query_int(request, "limit")
    return json_response(await request.app[SERVICE].rejected_files(user, min(100 if limit is None else limit, 1000)))


def add_routes(app: web.Application) -> None:
    post = {
        "/api/projects": projects,
        "/api/pipelines": pipelines,
        "/api/pipeline-uploaders": pipeline_uploaders,
        "/api/qc-data": qc_data,
        "/api/protein-names": protein_names,
        "/api/protein-groups": protein_groups,
        "/api/rawfile": _run_state_handler(None),
        "/api/flag/create": _run_state_handler("flag"),
        "/api/flag/delete": _run_state_handler("unflag"),
        "/api/runs/retry": run_retry,
        "/api/runs/cancel": run_cancel,
        "/api/mzqc": mzqc_export,
        "/api/chromatograms": chromatograms,
    }
    for path, handler in post.items():
        app.router.add_post(path, handler)
    app.router.add_post("/api/token", token_create)
    app.router.add_delete("/api/token", token_delete)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/runs", runs)
    app.router.add_post("/api/runs", runs)
    app.router.add_post("/api/runs/delete", run_delete)
    app.router.add_get("/api/changes", changes)
    app.router.add_post("/api/changes", changes)
    app.router.add_get("/api/changes/run", change_run_data)
    app.router.add_get("/api/rejected", rejected)
