"""Beyond the contract (decisions.md, "ours"): the run list with stage states, retry and cancel."""

from __future__ import annotations

import pytest
from conftest import (
    ADMIN,
    DEMO_PIPELINE,
    DEMO_PROJECT,
    DEMO_USER,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    OTHER_PIPELINE,
    Api,
    World,
)

from qcdaemon.server.app import create_app
from qcdaemon.store import Store

NOBODY = "nobody@elsewhere.org"


async def add_runs(world: World, n: int, pipeline: str = OTHER_PIPELINE, owner: str = OTHER) -> list[str]:
    """New uploaded-looking runs with the stage plan a real upload gets."""
    project = "other-lab" if pipeline == OTHER_PIPELINE else DEMO_PROJECT
    p = world.pipeline(project, pipeline)
    keys = []
    for i in range(n):
        run = await world.svc.new_run(p, f"new-{i}.raw", source="upload", owner_id=world.users[owner]["id"],
                                      stored_path=f"/nowhere/new-{i}.raw", size=1, sha256="0" * 64)
        keys.append(run["run_key"])
    return keys


async def test_run_list_is_scoped_before_the_limit(api: Api, world: World) -> None:
    await add_runs(world, 5)  # another lab's runs, newer than everything the member may see
    r = await api.call("/api/runs?limit=3", method="GET", who=MEMBER)
    assert r.status == 200
    assert len(r.data) == 3 and {run["project"] for run in r.data} == {DEMO_PROJECT}
    r = await api.call("/api/runs?limit=3", method="GET", who=ADMIN)
    assert [run["project"] for run in r.data] == ["other-lab"] * 3


async def test_run_list_shows_stage_states(api: Api, world: World) -> None:
    [key] = await add_runs(world, 1, LAB_PIPELINE, DEMO_USER)
    data = await api.ok("/api/runs", {"project": DEMO_PROJECT, "pipeline": LAB_PIPELINE, "limit": 1})
    assert [r["run_key"] for r in data] == [key]
    stages = {s["stage"]: s for s in data[0]["stages"]}
    assert stages["native"]["state"] == "queued"
    assert stages["rawtools"]["state"] == "skipped" and "not configured" in stages["rawtools"]["error"]
    assert data[0]["owner"] == DEMO_USER and data[0]["pipeline"] == LAB_PIPELINE


@pytest.mark.parametrize("query", ["limit=abc", "limit=-5", "limit=1.5", "limit=" + "9" * 40])
async def test_run_list_bad_limit_is_400(api: Api, query: str) -> None:
    r = await api.call(f"/api/runs?{query}", method="GET")
    assert r.status == 400 and "limit" in r.data["detail"]


async def test_run_list_of_an_invisible_pipeline_is_403(api: Api) -> None:
    r = await api.call("/api/runs", {"project": DEMO_PROJECT, "pipeline": DEMO_PIPELINE}, who=OTHER)
    assert r.status == 403


async def test_retry_and_cancel(api: Api, world: World) -> None:
    [key] = await add_runs(world, 1, LAB_PIPELINE, DEMO_USER)
    # the member may see the run but not change it
    r = await api.call("/api/runs/cancel", {"run_key": key}, who=MEMBER)
    assert r.status == 403
    # another lab does not even learn that it exists
    r = await api.call("/api/runs/cancel", {"run_key": key}, who=OTHER)
    assert r.status == 404
    data = await api.ok("/api/runs/cancel", {"run_key": key})
    assert data["run_key"] == key and data["cancelled"] is True
    assert {s["state"] for s in await world.store.call(Store.stages, int(key[2:]))} == {"cancelled", "skipped"}
    data = await api.ok("/api/runs/retry", {"run_key": key, "stages": ["native"]})
    assert data["requeued"] == ["native"]
    stages = {s["stage"]: s["state"] for s in await world.store.call(Store.stages, int(key[2:]))}
    assert stages["native"] == "queued"
    # nothing left to retry on a run that is all done
    r = await api.call("/api/runs/retry", {"run_key": world.runs["sa001"]})
    assert r.status in (404, 409)


@pytest.mark.parametrize(("body", "status"), [
    ({"run_key": "rf999999"}, 404), ({"run_key": "nonsense"}, 400), ({}, 400), ({"run_key": "rf" + "9" * 40}, 400),
])
async def test_retry_bad_keys(api: Api, body: dict, status: int) -> None:
    r = await api.call("/api/runs/retry", body, who=ADMIN)
    assert r.status == status and r.data["detail"]


async def test_status_reports_only_failures_the_user_may_see(api: Api, world: World) -> None:
    [key] = await add_runs(world, 1)  # in the other lab
    await world.store.call(Store.finish_stage, int(key[2:]), "native", "failed", error="boom in /labs/other/secret.raw")
    for who, expected in ((OTHER, key), (ADMIN, key), (MEMBER, None), (DEMO_USER, None)):
        r = await api.call("/api/status", method="GET", who=who)
        assert r.status == 200
        last = r.data["last_error"]
        assert (last["run_key"] if last else None) == expected, who
        if expected:
            assert last["stage"] == "native" and "boom" in last["error"]


async def test_status_queue_counts_only_the_projects_the_user_sees(world: World, aiohttp_client) -> None:
    async def engine_status() -> dict:  # what the daemon adds: its engine runs 7 stages of all projects
        return {"watched_folders": [], "running_stages": 7, "stopping": False}

    api = Api(await aiohttp_client(create_app(world.svc, world.cfg, status=engine_status)), world)
    world.users[NOBODY] = await world.svc.add_user(NOBODY, "nobody-pass-1")  # in no project at all
    everyone = (ADMIN, DEMO_USER, MEMBER, OTHER, NOBODY)
    for who in everyone:  # the seeded world has nothing queued
        assert (await api.ok("/api/status", method="GET", who=who))["queue"] == {"queued": 0, "running": 0}, who
    # the other lab: 3 runs, each with its native stage queued; one of them running
    other = await add_runs(world, 3)
    await world.store.call(Store.execute, "UPDATE stages SET state = 'running' WHERE run_id = ? AND stage = 'native'",
                           [int(other[0][2:])])
    # the demo project's lab pipeline: 2 runs, native queued
    await add_runs(world, 2, LAB_PIPELINE, DEMO_USER)
    queued = {s["stage"] for s in await world.store.call(Store.stages, int(other[1][2:])) if s["state"] == "queued"}
    assert queued == {"native"}  # one queued stage per new run in this configuration
    expected = {
        ADMIN: {"queued": 4, "running": 1},  # every project
        OTHER: {"queued": 2, "running": 1},  # the other lab's only
        DEMO_USER: {"queued": 2, "running": 0},  # the demo project's only
        MEMBER: {"queued": 2, "running": 0},  # a member of the demo project sees what its creator sees
        NOBODY: {"queued": 0, "running": 0},  # no project: nothing
    }
    for who in everyone:
        status = await api.ok("/api/status", method="GET", who=who)
        assert status["queue"] == expected[who], who
        # the engine's count is of every project: only an admin gets it, a user gets their running stages
        assert status["running_stages"] == (7 if who == ADMIN else expected[who]["running"]), who
