"""``/api/changes``: the change cursor a hub pulls by (issue 17), against a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import ADMIN, DEMO_PROJECT, DEMO_SA001, DEMO_USER, LAB_PIPELINE, MEMBER, OTHER, OTHER_PROJECT, Api, World

from qcdaemon.store import Store


async def pull_all(api: Api, since: int = 0, limit: int = 2, who: str = ADMIN) -> tuple[list[dict[str, Any]], int]:
    """Every page after ``since``; each page's changes strictly increase and exceed the cursor."""
    got: list[dict[str, Any]] = []
    while True:
        page = await api.ok(f"/api/changes?since={since}&limit={limit}", method="GET", who=who)
        changes = [r["change"] for r in page["runs"]]
        assert changes == sorted(set(changes)) and all(c > since for c in changes)
        assert len(changes) <= limit
        got += page["runs"]
        assert page["next"] == (changes[-1] if changes else since)
        since = page["next"]
        if not page["more"]:
            return got, since


async def all_run_keys(world: World) -> set[str]:
    rows = await world.store.read(Store.rows, "SELECT 'rf' || id AS k FROM runs")
    return {r["k"] for r in rows}


async def test_full_pull_lists_every_run_once_with_identity_and_values(api: Api, world: World) -> None:
    runs, cursor = await pull_all(api)
    keys = [r["run_key"] for r in runs]
    assert len(keys) == len(set(keys)) and set(keys) == await all_run_keys(world)
    sa001 = next(r for r in runs if r["run_key"] == world.runs["sa001"])
    assert sa001["name"] == DEMO_SA001 and sa001["project"] == DEMO_PROJECT and sa001["pipeline"] == "tmt-qc-demo"
    assert sa001["pipeline_uuid"] and sa001["state"] == "done" and sa001["flagged"] is False
    # its values as the store holds them, per source (RawTools' table and MaxQuant's)
    stored = await world.store.read(Store.qc_values, [int(sa001["run_key"][2:])])
    assert sum(len(v) for v in sa001["values"].values()) == len(stored) > 0
    for _, source, name, value in stored:
        assert sa001["values"][source][name] == value
    # nothing new: an empty page that keeps the cursor
    page = await api.ok(f"/api/changes?since={cursor}", method="GET", who=ADMIN)
    assert page == {"runs": [], "deleted": [], "next": cursor, "more": False}


async def test_a_change_after_the_cursor_brings_the_run_again(api: Api, world: World) -> None:
    _, cursor = await pull_all(api)
    key = world.runs["sa001"]
    await api.ok("/api/flag/create", {"project": DEMO_PROJECT, "pipeline": "tmt-qc-demo", "run_keys": [key]})
    runs, cursor2 = await pull_all(api, cursor)
    assert [(r["run_key"], r["flagged"]) for r in runs] == [(key, True)] and cursor2 > cursor
    await world.store.call(Store.put_qc_values, int(key[2:]), "extra", {"MyMetric": 1.5})
    runs, cursor3 = await pull_all(api, cursor2)
    assert [r["run_key"] for r in runs] == [key] and runs[0]["values"]["extra"] == {"MyMetric": 1.5}
    # a POST in the style of the other routes gives the same answer
    page = await api.ok("/api/changes", {"since": cursor2}, who=ADMIN)
    assert [r["run_key"] for r in page["runs"]] == [key] and page["next"] == cursor3


async def test_a_token_sees_only_its_projects_runs(api: Api, world: World) -> None:
    for who, project in ((OTHER, {OTHER_PROJECT}), (MEMBER, {DEMO_PROJECT}), (DEMO_USER, {DEMO_PROJECT})):
        runs, _ = await pull_all(api, who=who, limit=1000)
        assert runs and {r["project"] for r in runs} == project
    r = await api.call("/api/changes", method="GET", who=None)
    assert r.status == 401


@pytest.mark.parametrize("query", ["since=abc", "since=-1", "limit=0", "limit=x", "since=" + "9" * 40])
async def test_bad_cursor_or_limit_is_400(api: Api, query: str) -> None:
    r = await api.call(f"/api/changes?{query}", method="GET", who=ADMIN)
    assert r.status == 400 and r.is_json and "detail" in r.data


async def test_pulling_during_writes_misses_no_final_state(api: Api, world: World) -> None:
    """Writes go on while a client pages through: what it saw last of each run is the run's end state."""
    pipeline = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    seen: dict[str, dict[str, Any]] = {}
    cursor = 0
    done = asyncio.Event()

    async def writer() -> None:
        for i in range(12):
            run = await world.svc.new_run(pipeline, f"w-{i}.raw", source="upload", owner_id=world.users[DEMO_USER]["id"],
                                          stored_path=f"/nowhere/w-{i}.raw", size=1, sha256="0" * 64)
            await world.store.call(Store.put_qc_values, int(run["run_key"][2:]), "native", {"n": i})
            await world.store.call(Store.set_run_fields, [int(run["run_key"][2:])], {"flagged": i % 2 == 0})
        done.set()

    task = asyncio.create_task(writer())
    while not done.is_set():
        runs, cursor = await pull_all(api, cursor, limit=3)
        seen.update({r["run_key"]: r for r in runs})
    await task
    runs, cursor = await pull_all(api, cursor, limit=3)
    seen.update({r["run_key"]: r for r in runs})
    assert set(seen) == await all_run_keys(world)
    for key, r in seen.items():
        row = await world.store.read(Store.run, int(key[2:]))
        assert (r["flagged"], r["state"]) == (row["flagged"], row["state"])
        if r["name"].startswith("w-"):
            assert r["values"]["native"] == {"n": int(r["name"][2:-4])}


async def test_run_data_pages_are_the_runs_data_scoped_like_the_feed(api: Api, world: World) -> None:
    key = world.runs["sa001"]
    rid = int(key[2:])
    names = await world.store.read(Store.protein_names, [rid], False, False)
    assert len(names) > 7
    got: list[dict[str, Any]] = []
    offset, more = 0, True
    while more:  # pages of seven, in the stored order
        page = await api.ok(f"/api/changes/run?run_key={key}&part=protein_groups&offset={offset}&limit=7",
                            method="GET", who=ADMIN)
        assert len(page["rows"]) <= 7 and page["run_key"] == key and page["part"] == "protein_groups"
        got += page["rows"]
        offset, more = page["next"], page["more"]
    assert [g["idx"] for g in got] == sorted(g["idx"] for g in got)
    assert sorted(g["majority_ids"] for g in got) == sorted(n["majority_ids"] for n in names)
    chroms = await api.ok(f"/api/changes/run?run_key={key}&part=chromatograms", method="GET", who=DEMO_USER)
    stored = await world.store.read(Store.chromatograms, rid)
    assert set(chroms["rows"]) == set(stored) and chroms["more"] is False
    # another project's member sees no such run; no token, no answer; bad parameters are 400
    r = await api.call(f"/api/changes/run?run_key={key}&part=psms", method="GET", who=OTHER)
    assert r.status == 404 and "detail" in r.data
    assert (await api.call(f"/api/changes/run?run_key={key}&part=psms", method="GET", who=None)).status == 401
    for query in (f"run_key={key}&part=stages", "run_key=12&part=psms", f"run_key={key}&part=psms&offset=-1"):
        r = await api.call(f"/api/changes/run?{query}", method="GET", who=ADMIN)
        assert r.status == 400 and r.is_json and "detail" in r.data, query
    r = await api.call("/api/changes/run?run_key=rf999999&part=psms", method="GET", who=ADMIN)
    assert r.status == 404
