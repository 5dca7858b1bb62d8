"""The hub's puller in process: one seeded world served for real on 127.0.0.1 is the source, another
world is the hub; bad sources are real HTTP servers on loopback answering what a broken or hostile
instance could."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from conftest import ADMIN, OTHER, World
from liveserver import free_port, live_server

from qcdaemon.hubcfg import HubConfig, HubSource
from qcdaemon.server.hub import HubPuller
from qcdaemon.store import Store


def _puller(hub: World, *sources: HubSource) -> HubPuller:
    cfg = dataclasses.replace(hub.cfg, hub=HubConfig(sources=sources, batch=2, timeout_seconds=5))
    return HubPuller(hub.svc, cfg)


async def _origins(world: World) -> list[tuple[str, str]]:
    rows = await world.store.read(Store.rows, "SELECT origin, origin_key FROM runs WHERE origin IS NOT NULL ORDER BY 1, 2")
    return [(r["origin"], r["origin_key"]) for r in rows]


@asynccontextmanager
async def bad_source(answer: Callable[[], web.Response]) -> AsyncIterator[str]:
    app = web.Application()

    async def changes(_: web.Request) -> web.Response:
        return answer()

    app.router.add_get("/api/changes", changes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_pull_takes_every_visible_run_once(world_factory: Callable[..., Awaitable[World]]) -> None:
    source = await world_factory(server={"port": free_port()})
    hub = await world_factory()
    async with live_server(source) as port:
        url = f"http://127.0.0.1:{port}"
        puller = _puller(hub, HubSource("all", url, token=await source.token(ADMIN)),
                         HubSource("other", url, token=await source.token(OTHER)))
        counts = await puller.pull_all()
        again = await puller.pull_all()
    keys = {r["k"] for r in await source.store.read(Store.rows, "SELECT 'rf' || id AS k FROM runs")}
    other = {r["k"] for r in await source.store.read(
        Store.rows, "SELECT 'rf' || r.id AS k FROM runs r JOIN pipelines pl ON pl.id = r.pipeline_id"
        " JOIN projects p ON p.id = pl.project_id WHERE p.slug = 'other-lab'")}
    assert other and other < keys
    assert counts == {"all": len(keys), "other": len(other)} and again == {"all": 0, "other": 0}
    assert await _origins(hub) == sorted([("all", k) for k in keys] + [("other", k) for k in other])
    assert puller.status == {"all": {"ok": True, "new_runs": 0}, "other": {"ok": True, "new_runs": 0}}
    # the hub judged them: the verdicts its [alerts] verdict and outlier rules read cover every pulled run
    pulled = {r["id"] for r in await hub.store.read(Store.rows, "SELECT id FROM runs WHERE origin IS NOT NULL")}
    judged = {v["run_id"] for v in await hub.store.call(Store.verdicts_since, dt.datetime(2000, 1, 1))}
    assert pulled and pulled <= judged


def _page(**run: Any) -> web.Response:
    base = {"run_key": "rf1", "name": "x.raw", "project": "lab", "pipeline": "qc", "state": "done", "values": {}}
    return web.json_response({"runs": [{**base, **run}], "next": 5, "more": False})


@pytest.mark.parametrize("answer", [
    lambda: web.Response(status=500, text="boom"),
    lambda: web.Response(status=401, text='{"detail": "no"}'),
    lambda: web.Response(text="<html>not json</html>", content_type="text/html"),
    lambda: web.json_response({"runs": [], "next": -3, "more": False}),
    lambda: web.json_response({"runs": "all", "next": 5, "more": False}),
    lambda: _page(project="../etc"),
    lambda: _page(values={"native": [1, 2]}),
    lambda: _page(acquired_at="yesterday"),
    lambda: web.Response(text=json.dumps({"runs": [{"run_key": "rf1", "name": "x", "project": "lab", "pipeline": "qc",
                                                    "state": "done", "values": {"native": {"m": float("nan")}}}],
                                          "next": 5, "more": False}), content_type="application/json"),
])
async def test_a_bad_source_changes_nothing_and_the_others_go_on(
    world_factory: Callable[..., Awaitable[World]], answer: Callable[[], web.Response]
) -> None:
    source = await world_factory(server={"port": free_port()})
    hub = await world_factory()
    async with live_server(source) as port, bad_source(answer) as bad:
        puller = _puller(hub, HubSource("bad", bad, token="t"),
                         HubSource("good", f"http://127.0.0.1:{port}", token=await source.token(OTHER)))
        counts = await puller.pull_all()
    assert "bad" not in counts and counts["good"] > 0
    assert puller.status["bad"]["ok"] is False and puller.status["good"]["ok"] is True
    assert await hub.store.read(Store.hub_cursor, "bad") == 0
    assert {o for o, _ in await _origins(hub)} == {"good"}
