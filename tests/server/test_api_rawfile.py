"""Run state changes: /api/rawfile, /api/flag/create, /api/flag/delete (each test on its own world).

What a change did is read back through /api/qc-data (``Flagged``, ``Use Downstream``).
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import (
    ADMIN,
    DEMO_PIPELINE,
    DEMO_PROJECT,
    DEMO_SA001,
    DEMO_USER,
    ENCODINGS,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    OTHER_PIPELINE,
    OTHER_PROJECT,
    Api,
    World,
)

from qcdaemon.store import Store

DEMO = {"project": DEMO_PROJECT, "pipeline": DEMO_PIPELINE}
LAB = {"project": DEMO_PROJECT, "pipeline": LAB_PIPELINE}
UNTOUCHED = {"Flagged": False, "Use Downstream": True}

parametrize_enc = pytest.mark.parametrize("enc", ENCODINGS)


async def states(api: Api, pipeline: str = LAB_PIPELINE) -> dict[str, dict[str, Any]]:
    """run key -> Flagged / Use Downstream, as /api/qc-data (asked by the admin) reports them."""
    project = OTHER_PROJECT if pipeline == OTHER_PIPELINE else DEMO_PROJECT
    data = await api.qc(pipeline, project, columns=["RunKey", "Flagged", "Use Downstream"], who=ADMIN)
    return {k: {"Flagged": f, "Use Downstream": u} for k, f, u in zip(data["RunKey"], data["Flagged"],
                                                                        data["Use Downstream"])}


FLAGGED_REJECTED = {"Flagged": True, "Use Downstream": False}


@parametrize_enc
@pytest.mark.parametrize(("action", "start", "after"), [
    ("flag", UNTOUCHED, {"Flagged": True, "Use Downstream": True}),
    ("reject", UNTOUCHED, {"Flagged": False, "Use Downstream": False}),
    ("accept", FLAGGED_REJECTED, {"Flagged": True, "Use Downstream": True}),
    ("unflag", FLAGGED_REJECTED, {"Flagged": False, "Use Downstream": False}),
])
async def test_rawfile_actions_change_qc_data(api: Api, world: World, enc: str, action: str,
                                              start: dict[str, bool], after: dict[str, bool]) -> None:
    rf1 = world.runs["sa001"]
    if start != UNTOUCHED:
        await world.store.call(Store.set_run_fields, [int(rf1[2:])], {"flagged": True, "use_downstream": False})
    before = await states(api, DEMO_PIPELINE)
    assert before[rf1] == start
    data = await api.ok("/api/rawfile", {**DEMO, "action": action, "run_keys": [rf1]}, enc=enc)
    assert data == {"status": "success", "updated": [rf1]}
    now = await states(api, DEMO_PIPELINE)
    assert now[rf1] == after
    assert {k: v for k, v in now.items() if k != rf1} == {k: v for k, v in before.items() if k != rf1}


@parametrize_enc
async def test_rawfile_contract_example_accept(api: Api, world: World, enc: str) -> None:
    """contract.md: action accept, run_keys ["rf1"] on the demo (rf1 is the first seeded run)."""
    assert world.runs["sa001"] == "rf1"
    await api.ok("/api/rawfile", {**DEMO, "action": "reject", "run_keys": ["rf1"]}, enc=enc)
    assert (await states(api, DEMO_PIPELINE))["rf1"]["Use Downstream"] is False
    assert await api.ok("/api/rawfile", {**DEMO, "action": "accept", "run_keys": ["rf1"]}, enc=enc) == {
        "status": "success", "updated": ["rf1"]}
    assert (await states(api, DEMO_PIPELINE))["rf1"]["Use Downstream"] is True


@parametrize_enc
async def test_rawfile_several_run_keys(api: Api, world: World, enc: str) -> None:
    keys = [world.runs["lab_user"], world.runs["dup_a"]]
    data = await api.ok("/api/rawfile", {**LAB, "action": "flag", "run_keys": keys}, enc=enc)
    assert sorted(data["updated"]) == sorted(keys)
    now = await states(api)
    assert [k for k, v in now.items() if v["Flagged"]] == sorted(keys, key=lambda k: int(k[2:]))


@parametrize_enc
async def test_rawfile_by_raw_file_ids(api: Api, world: World, enc: str) -> None:
    rid = int(world.runs["lab_user"][2:])
    data = await api.ok("/api/rawfile", {**LAB, "action": "flag", "raw_file_ids": [rid]}, enc=enc)
    assert data["updated"] == [world.runs["lab_user"]]
    assert (await states(api))[world.runs["lab_user"]]["Flagged"] is True


@parametrize_enc
@pytest.mark.parametrize("name", [DEMO_SA001, DEMO_SA001[:-4]])
async def test_rawfile_by_legacy_raw_files(api: Api, world: World, enc: str, name: str) -> None:
    data = await api.ok("/api/rawfile", {**DEMO, "action": "flag", "raw_files": [name]}, enc=enc)
    assert data["updated"] == [world.runs["sa001"]]
    assert (await states(api, DEMO_PIPELINE))[world.runs["sa001"]]["Flagged"] is True


@parametrize_enc
async def test_rawfile_legacy_name_matching_several_runs_selects_all(api: Api, world: World, enc: str) -> None:
    data = await api.ok("/api/rawfile", {**LAB, "action": "reject", "raw_files": ["dup.raw"]}, enc=enc)
    assert sorted(data["updated"]) == sorted([world.runs["dup_a"], world.runs["dup_b"]])
    now = await states(api)
    assert {k for k, v in now.items() if v["Use Downstream"] is False} == {world.runs["dup_a"], world.runs["dup_b"]}


@parametrize_enc
@pytest.mark.parametrize("body", [
    {"action": "explode", "run_keys": ["rf1"]},
    {"action": "", "run_keys": ["rf1"]},
    {"run_keys": ["rf1"]},  # no action
    {"action": "flag"},  # no selector
    {"action": "flag", "run_keys": ["rf1"], "raw_files": [DEMO_SA001]},  # two selectors
    {"action": "flag", "raw_file_ids": ["one"]},
])
async def test_rawfile_bad_requests_are_400_and_change_nothing(api: Api, enc: str, body: dict) -> None:
    before = await states(api, DEMO_PIPELINE)
    r = await api.call("/api/rawfile", {**DEMO, **body}, enc=enc)
    assert r.status == 400 and r.is_json and r.data["detail"]
    if "action" not in body or not body["action"]:
        assert "action" in r.data["detail"]
    assert await states(api, DEMO_PIPELINE) == before


@parametrize_enc
@pytest.mark.parametrize("selector", [
    {"run_keys": ["rf999"]},
    {"run_keys": ["rf1", "rf999"]},  # one good, one unknown: nothing changes
    {"run_keys": ["nonsense"]},
    {"raw_file_ids": [1, 999]},
    {"raw_files": [DEMO_SA001, "missing.raw"]},
])
async def test_rawfile_unknown_key_is_404_and_changes_nothing(api: Api, enc: str, selector: dict) -> None:
    before = await states(api, DEMO_PIPELINE)
    r = await api.call("/api/rawfile", {**DEMO, "action": "flag", **selector}, enc=enc)
    assert r.status == 404 and r.is_json and r.data["detail"]
    assert await states(api, DEMO_PIPELINE) == before


async def test_rawfile_key_of_another_pipeline_is_404(api: Api, world: World) -> None:
    """A run key names a run of the named pipeline only."""
    r = await api.call("/api/rawfile", {**DEMO, "action": "flag", "run_keys": [world.runs["lab_user"]]})
    assert r.status == 404
    assert (await states(api))[world.runs["lab_user"]] == UNTOUCHED


@parametrize_enc
async def test_rawfile_someone_elses_run_is_403_and_changes_nothing(api: Api, world: World, enc: str) -> None:
    before = await states(api, DEMO_PIPELINE)
    r = await api.call("/api/rawfile", {**DEMO, "action": "flag", "run_keys": [world.runs["sa001"]]}, enc=enc,
                       who=MEMBER)
    assert r.status == 403 and r.data["detail"]
    assert await states(api, DEMO_PIPELINE) == before


@parametrize_enc
async def test_rawfile_mixed_selection_is_all_or_nothing(api: Api, world: World, enc: str) -> None:
    mine, theirs = world.runs["lab_member"], world.runs["lab_user"]
    r = await api.call("/api/rawfile", {**LAB, "action": "flag", "run_keys": [mine, theirs]}, enc=enc, who=MEMBER)
    assert r.status == 403
    now = await states(api)
    assert now[mine] == UNTOUCHED and now[theirs] == UNTOUCHED
    # the member's own run alone is fine
    assert (await api.ok("/api/rawfile", {**LAB, "action": "flag", "run_keys": [mine]}, enc=enc,
                         who=MEMBER))["updated"] == [mine]
    assert (await states(api))[mine]["Flagged"] is True


@parametrize_enc
async def test_rawfile_admin_changes_anyones_run(api: Api, world: World, enc: str) -> None:
    keys = [world.runs["lab_member"], world.runs["lab_user"]]
    data = await api.ok("/api/rawfile", {**LAB, "action": "reject", "run_keys": keys}, enc=enc, who=ADMIN)
    assert sorted(data["updated"]) == sorted(keys)
    now = await states(api)
    assert all(now[k]["Use Downstream"] is False for k in keys)


@parametrize_enc
async def test_rawfile_invisible_pipeline_is_403(api: Api, world: World, enc: str) -> None:
    r = await api.call("/api/rawfile", {**DEMO, "action": "flag", "run_keys": ["rf1"]}, enc=enc, who=OTHER)
    assert r.status == 403
    r = await api.call("/api/rawfile", {"project": OTHER_PROJECT, "pipeline": OTHER_PIPELINE, "action": "flag",
                                        "run_keys": [world.runs["other"]]}, enc=enc)
    assert r.status == 403
    assert (await states(api, OTHER_PIPELINE))[world.runs["other"]] == UNTOUCHED


# ------------------------------------------------------------------------------- flag/create, flag/delete


async def test_flag_create_and_delete_with_the_contracts_form_encoding(api: Api, world: World) -> None:
    """contract.md: curl -X POST -d 'project=demo-project' -d 'pipeline=tmt-qc-demo' -d 'run_keys=rf1'."""
    token = await world.token(DEMO_USER)
    body = "project=demo-project&pipeline=tmt-qc-demo&run_keys=rf1"
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/x-www-form-urlencoded"}
    async with api.client.post("/api/flag/create", data=body, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "success", "updated": ["rf1"]}
    assert (await states(api, DEMO_PIPELINE))["rf1"]["Flagged"] is True
    async with api.client.post("/api/flag/delete", data=body, headers=headers) as resp:
        assert resp.status == 200
    assert (await states(api, DEMO_PIPELINE))["rf1"]["Flagged"] is False


@parametrize_enc
async def test_flag_routes_repeated_keys_and_selectors(api: Api, world: World, enc: str) -> None:
    keys = [world.runs["dup_a"], world.runs["lab_user"]]
    assert sorted((await api.ok("/api/flag/create", {**LAB, "run_keys": keys}, enc=enc))["updated"]) == sorted(keys)
    now = await states(api)
    assert all(now[k]["Flagged"] for k in keys)
    data = await api.ok("/api/flag/delete", {**LAB, "raw_files": ["dup"]}, enc=enc)
    assert sorted(data["updated"]) == sorted([world.runs["dup_a"], world.runs["dup_b"]])
    now = await states(api)
    assert not now[world.runs["dup_a"]]["Flagged"] and now[world.runs["lab_user"]]["Flagged"]


@parametrize_enc
async def test_flag_routes_share_the_rules(api: Api, world: World, enc: str) -> None:
    r = await api.call("/api/flag/create", {**DEMO, "run_keys": ["rf999"]}, enc=enc)
    assert r.status == 404
    r = await api.call("/api/flag/create", {**DEMO, "run_keys": [world.runs["sa001"]]}, enc=enc, who=MEMBER)
    assert r.status == 403
    r = await api.call("/api/flag/delete", {**DEMO, "run_keys": ["rf1"]}, enc=enc, who=OTHER)
    assert r.status == 403
    r = await api.call("/api/flag/create", {**DEMO}, enc=enc)
    assert r.status == 400
    r = await api.call("/api/flag/create", {"pipeline": DEMO_PIPELINE, "run_keys": ["rf1"]}, enc=enc)
    assert r.status == 400 and "project" in r.data["detail"]
    assert all(v == UNTOUCHED for v in (await states(api, DEMO_PIPELINE)).values())
