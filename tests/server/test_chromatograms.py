"""``POST /api/chromatograms``: a run's stored TIC/BPC chromatograms for plotting, over a real server."""

from __future__ import annotations

import pytest
from conftest import (
    DEMO_PIPELINE,
    DEMO_PROJECT,
    ENCODINGS,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    Api,
    World,
    read_only_world,
)

# Nothing here changes the world: one server for the module, in the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")
each_encoding = pytest.mark.parametrize("enc", ENCODINGS)

DEMO = {"project": DEMO_PROJECT, "pipeline": DEMO_PIPELINE}


# Nothing here changes the world: every test reads the module's one server and world.
api, world = read_only_world()


@each_encoding
async def test_small2_chromatograms(api: Api, world: World, enc: str) -> None:
    key = world.runs["small2"]
    r = await api.call("/api/chromatograms", {**DEMO, "run_key": key}, enc=enc)
    assert r.status == 200 and r.is_json, r.text
    data = r.data
    assert set(data) == {"run_key", "chromatograms"} and data["run_key"] == key
    chroms = data["chromatograms"]
    assert set(chroms) == {"MS1_TIC", "MS1_BPC", "MS2_TIC", "MS2_BPC"}
    for name, trace in chroms.items():
        assert set(trace) == {"rt", "intensity"}
        assert len(trace["rt"]) == len(trace["intensity"]) > 0, name
        assert all(isinstance(v, (int, float)) for v in trace["rt"] + trace["intensity"])
        assert trace["rt"] == sorted(trace["rt"]), name
    # one point per scan of the order (small2: 46 MS1 and 49 MS2 scans, as in qc-data)
    qc = await api.qc(columns=["RunKey", "NumMs1Scans", "NumMs2Scans"])
    i = qc["RunKey"].index(key)
    assert len(chroms["MS1_TIC"]["rt"]) == len(chroms["MS1_BPC"]["rt"]) == qc["NumMs1Scans"][i] == 46
    assert len(chroms["MS2_TIC"]["rt"]) == qc["NumMs2Scans"][i] == 49
    # a base peak is never more than the total ion current of its scan
    assert all(b <= t for b, t in zip(chroms["MS1_BPC"]["intensity"], chroms["MS1_TIC"]["intensity"]))


async def test_encodings_give_identical_answers(api: Api, world: World) -> None:
    body = {**DEMO, "run_key": world.runs["small2"]}
    answers = [await api.call("/api/chromatograms", body, enc=enc) for enc in ENCODINGS]
    assert len({(a.status, a.text) for a in answers}) == 1


async def test_run_without_chromatograms_is_empty(api: Api, world: World) -> None:
    data = await api.ok("/api/chromatograms", {**DEMO, "run_key": world.runs["sa002"]})
    assert data == {"run_key": world.runs["sa002"], "chromatograms": {}}


async def test_project_members_may_read(api: Api, world: World) -> None:
    data = await api.ok("/api/chromatograms", {**DEMO, "run_key": world.runs["small2"]}, who=MEMBER)
    assert len(data["chromatograms"]) == 4


@pytest.mark.parametrize("label_or_key", ["lab_user", "other", "rf999999", "nonsense", "rf" + "9" * 40, " "])
async def test_run_key_not_in_the_pipeline_is_404(api: Api, world: World, label_or_key: str) -> None:
    key = world.runs.get(label_or_key, label_or_key)
    r = await api.call("/api/chromatograms", {**DEMO, "run_key": key})
    expected = 400 if not key.strip() else 404  # a blank key is a missing field
    assert r.status == expected and r.data["detail"]


async def test_run_key_is_looked_up_in_the_named_pipeline(api: Api, world: World) -> None:
    lab = {"project": DEMO_PROJECT, "pipeline": LAB_PIPELINE}
    r = await api.call("/api/chromatograms", {**lab, "run_key": world.runs["small2"]})
    assert r.status == 404
    assert await api.ok("/api/chromatograms", {**lab, "run_key": world.runs["lab_user"]}) == {
        "run_key": world.runs["lab_user"], "chromatograms": {}}


@pytest.mark.parametrize("missing", ["project", "pipeline", "run_key"])
async def test_missing_field_is_400_naming_it(api: Api, world: World, missing: str) -> None:
    body = {**DEMO, "run_key": world.runs["small2"]}
    del body[missing]
    r = await api.call("/api/chromatograms", body)
    assert r.status == 400 and missing in r.data["detail"]


async def test_another_labs_pipeline_is_403(api: Api, world: World) -> None:
    r = await api.call("/api/chromatograms", {**DEMO, "run_key": world.runs["small2"]}, who=OTHER)
    assert r.status == 403 and r.data["detail"]


async def test_without_a_token_is_401(api: Api, world: World) -> None:
    r = await api.call("/api/chromatograms", {**DEMO, "run_key": world.runs["small2"]}, who=None)
    assert r.status == 401 and r.headers["WWW-Authenticate"] == "Token"


async def test_get_is_405(api: Api) -> None:
    r = await api.call("/api/chromatograms", method="GET")
    assert r.status == 405
