"""Quality control through the real store, service and server: the 140-run HeLa series recorded
the way the engine records RawTools values (one run after another, each verdict computed as its
values arrive), guide sets, annotations, exclusions and rules over ``/api/qc/*``, and who may do what."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import (
    ADMIN,
    DEMO_PROJECT,
    DEMO_USER,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    OTHER_PIPELINE,
    OTHER_PROJECT,
    TEST_DATA,
    Api,
    World,
)

from qcdaemon.engine.stages.common import StageContext, record_scan_values
from qcdaemon.store import Store
from qcdaemon.tools.rawtools_parse import parse_qc_data_table

HELA = TEST_DATA / "rawtools" / "rawtools-docs-example" / "QcDataTable.csv"
IDS, DRIFT, MS1 = "IdentificationRate(IDs/Ms2Scan)", "MedianMassDrift(ppm)", "Ms1MedianSummedIntensity"
SCOPE = {"project": OTHER_PROJECT, "pipeline": OTHER_PIPELINE}


async def record_hela(world: World, tmp_path: Path) -> list[str]:
    """Each HeLa run as a new run of OTHER's pipeline whose RawTools values arrive through the
    engine's recording path (values, acquisition time, then the verdict)."""
    p = world.pipeline(OTHER_PROJECT, OTHER_PIPELINE)
    ctx = StageContext(store=world.store, cfg=world.cfg, pid_dir=tmp_path, values_recorded=world.svc.quality.record)
    keys = []
    for row in parse_qc_data_table(HELA):
        name = Path(str(row["RawFile"]).replace("\\", "/")).name
        run = await world.store.call(Store.create_run, p["id"], name, source="upload",
                                     owner_id=world.users[OTHER]["id"], state="done")
        await record_scan_values(ctx, run, "rawtools", dict(row))
        keys.append(run["run_key"])
    return keys


@pytest.fixture
async def hela(api: Api, world: World, tmp_path: Path) -> list[str]:
    # the world's own run of this pipeline (acquired 2024, after the 2018 series) is not HeLa
    await world.store.call(Store.delete_run, int(world.runs["other"][2:]))
    return await record_hela(world, tmp_path)


def fails(verdict: dict, metric: str) -> set[str]:
    return {r["rule"] for r in verdict.get("reasons") or [] if r["metric"] == metric and r["severity"] == "fail"}


async def test_hela_series_with_a_guide_set_of_its_first_20_runs(api: Api, hela: list[str]) -> None:
    # as recorded (automatic guide set: first 20 accepted runs), every run already has a verdict
    first = await api.ok("/api/qc/verdicts", SCOPE, who=OTHER)
    assert all(r["verdict"] is not None for r in first["runs"] if r["run_key"] in hela)
    # the incremental verdicts are those a full recomputation gives
    await api.ok("/api/qc/recompute", SCOPE, who=OTHER)
    again = await api.ok("/api/qc/verdicts", SCOPE, who=OTHER)
    strip = lambda d: [{k: v for k, v in r.items() if k != "computed_at"} for r in d["runs"]]  # noqa: E731
    assert strip(first) == strip(again)

    gs = await api.ok("/api/qc/guide-sets/create", {**SCOPE, "label": "first 20", "run_keys": hela[:20]}, who=OTHER)
    assert gs["id"].startswith("gs") and gs["recomputed"] == 140
    data = await api.ok("/api/qc/verdicts", SCOPE, who=OTHER)
    by_key = {r["run_key"]: r for r in data["runs"]}
    last20 = [by_key[k] for k in hela[-20:]]
    assert all(v["verdict"] == "fail" and v["guide_set"] == gs["id"] for v in last20)
    assert all(fails(v, IDS) for v in last20[-10:])  # identification rate decline
    assert all(fails(v, DRIFT) for v in last20)  # mass accuracy drift (about +4 ppm)
    assert all(fails(v, MS1) for v in last20)  # MS1 intensity fall
    reason = next(r for r in last20[-1]["reasons"] if r["metric"] == IDS and r["rule"] == "levey_jennings")
    assert reason["z"] < -3 and reason["value"] < reason["low"] and reason["guide_set"] == gs["id"]
    assert "Identification rate" in reason["text"]
    assert last20[-1]["basis"] == "id-free"

    # /api/qc-data carries the same verdicts, and no display range changes them
    qc = await api.qc(OTHER_PIPELINE, OTHER_PROJECT, who=OTHER)
    verdict_of = dict(zip(qc["RunKey"], qc["Verdict"], strict=True))
    assert all(verdict_of[k] == by_key[k]["verdict"] for k in hela)
    small = await api.qc(OTHER_PIPELINE, OTHER_PROJECT, who=OTHER, data_range=40)
    assert small["Verdict"] == [by_key[k]["verdict"] for k in small["RunKey"]]
    for v, t in zip(small["Verdict"], small["Verdict reasons"], strict=True):
        assert bool(t) == (v != "pass")  # reasons for fail and warn, why not for "not enough data"

    chart = await api.ok("/api/qc/chart", {**SCOPE, "metric": IDS}, who=OTHER)
    (lim,) = [x for x in chart["limits"] if x["guide_set"] == gs["id"]]
    assert lim["n"] == 20 and lim["rules"]["levey_jennings"]["fail_low"] < lim["mean"]
    assert chart["points"][-1]["verdict"] == "fail" and chart["points"][-1]["violations"]
    cusum = await api.ok("/api/qc/chart", {**SCOPE, "metric": MS1, "kind": "cusum_mean"}, who=OTHER)
    assert cusum["points"][-1]["cusum_neg"] > 5 and cusum["scale"] == "sd"

    status = await api.ok("/api/qc/status", SCOPE, who=OTHER)
    (st,) = status["pipelines"]
    assert st["status"] == "DANGER" and st["latest_run"]["run"] == hela[-1]


async def test_edits_recompute_and_annotations_reset_baselines(api: Api, hela: list[str]) -> None:
    await api.ok("/api/qc/guide-sets/create", {**SCOPE, "run_keys": hela[:20]}, who=OTHER)
    chart = await api.ok("/api/qc/chart", {**SCOPE, "metric": MS1}, who=OTHER)
    before = next(x for x in chart["limits"] if x["guide_set"].startswith("gs"))
    z_before = chart["points"][-1]["z"]
    # run 3's MS1 intensity is 250x below its neighbours: exclude it from that metric's limits
    out = await api.ok("/api/qc/exclusions/create", {**SCOPE, "metric": MS1, "run_keys": [hela[2]], "reason": "spray"},
                       who=OTHER)
    assert out["recomputed"] == 140
    chart = await api.ok("/api/qc/chart", {**SCOPE, "metric": MS1}, who=OTHER)
    lim = next(x for x in chart["limits"] if x["guide_set"].startswith("gs"))
    assert lim["n"] == before["n"] - 1 and lim["sd"] < 0.7 * before["sd"]  # the outlier inflated the SD
    assert chart["points"][2]["excluded"] and not chart["points"][2]["training"]
    assert chart["points"][-1]["z"] < z_before - 0.5 < 0  # the fall stands out more clearly
    # a column change after run 120 starts a new automatic guide set: the new level is normal there
    async def id_fails() -> int:
        data = await api.ok("/api/qc/verdicts", {**SCOPE, "run_keys": hela[-20:]}, who=OTHER)
        return sum(1 for v in data["runs"] if fails(v, IDS))

    fails_before = await id_fails()
    t = (await api.ok("/api/qc/chart", {**SCOPE, "metric": IDS}, who=OTHER))["points"][-21]["time"]
    ann = await api.ok("/api/qc/annotations/create", {**SCOPE, "kind": "column_change", "time": t,
                                                     "text": "new column"}, who=OTHER)
    assert ann["author"] == OTHER and ann["recomputed"] == 140
    v = (await api.ok("/api/qc/verdicts", {**SCOPE, "run_keys": [hela[-1]]}, who=OTHER))["runs"][0]
    assert v["guide_set"] == "auto-2"
    assert all(r["guide_set"] == "auto-2" for r in v["reasons"] if r["guide_set"])
    assert await id_fails() < fails_before
    anns = await api.ok("/api/qc/annotations", SCOPE, who=OTHER)
    assert [a["kind"] for a in anns["annotations"]] == ["column_change"]
    chart = await api.ok("/api/qc/chart", {**SCOPE, "metric": IDS}, who=OTHER)
    assert chart["annotations"][0]["text"] == "new column"
    # rules: plot only for the identification rate; then back to the defaults
    await api.ok("/api/qc/annotations/delete", {**SCOPE, "id": ann["id"]}, who=OTHER)
    await api.ok("/api/qc/rules", {**SCOPE, "metric": IDS, "rules": ["plot_only"]}, who=OTHER)
    v = (await api.ok("/api/qc/verdicts", {**SCOPE, "run_keys": [hela[-1]]}, who=OTHER))["runs"][0]
    assert not fails(v, IDS) and v["verdict"] == "fail"
    await api.ok("/api/qc/rules", {**SCOPE, "metric": IDS, "rules": None}, who=OTHER)
    v = (await api.ok("/api/qc/verdicts", {**SCOPE, "run_keys": [hela[-1]]}, who=OTHER))["runs"][0]
    assert fails(v, IDS)
    metrics = await api.ok("/api/qc/metrics", SCOPE, who=OTHER)
    ids = next(m for m in metrics["metrics"] if m["column"] == IDS)
    assert ids["direction"] == "higher" and ids["has_values"] and not ids["custom_rules"]


async def test_rejecting_a_run_takes_it_out_of_the_limits(api: Api, hela: list[str]) -> None:
    await api.ok("/api/qc/guide-sets/create", {**SCOPE, "run_keys": hela[:20]}, who=OTHER)
    before = (await api.ok("/api/qc/chart", {**SCOPE, "metric": MS1}, who=OTHER))["limits"]
    await api.ok("/api/rawfile", {**SCOPE, "action": "reject", "run_keys": [hela[2]]}, who=OTHER)
    after = (await api.ok("/api/qc/chart", {**SCOPE, "metric": MS1}, who=OTHER))["limits"]
    gs = lambda rows: next(x for x in rows if x["guide_set"].startswith("gs"))  # noqa: E731
    assert gs(after)["n"] == gs(before)["n"] - 1 and gs(after)["mean"] > gs(before)["mean"]
    # a guide set in force from run 61 recomputes only the verdicts from there on, and those are
    # the verdicts a full recomputation gives
    out = await api.ok("/api/qc/guide-sets/create", {**SCOPE, "run_keys": hela[60:80]}, who=OTHER)
    assert out["recomputed"] == 80
    partial = await api.ok("/api/qc/verdicts", SCOPE, who=OTHER)
    assert {r["guide_set"] for r in partial["runs"][60:]} == {out["id"]}
    await api.ok("/api/qc/recompute", SCOPE, who=OTHER)
    full = await api.ok("/api/qc/verdicts", SCOPE, who=OTHER)
    strip = lambda d: [{k: v for k, v in r.items() if k != "computed_at"} for r in d["runs"]]  # noqa: E731
    assert strip(partial) == strip(full)


LAB = {"project": DEMO_PROJECT, "pipeline": LAB_PIPELINE}
T = "2024-01-01T09:30:00Z"


async def test_who_may_do_what(api: Api) -> None:
    # a member annotates; rules, guide sets and exclusions need the project's creator or an admin
    r = await api.call("/api/qc/annotations/create", {**LAB, "kind": "maintenance", "time": T}, who=MEMBER)
    assert r.status == 201 and r.data["author"] == MEMBER
    for path, extra in [("/api/qc/guide-sets/create", {"start": T, "end": T}),
                        ("/api/qc/rules", {"metric": IDS, "rules": ["robust"]}),
                        ("/api/qc/exclusions/create", {"metric": IDS, "run_keys": ["rf1"]}),
                        ("/api/qc/settings", {"auto_guide_runs": 5}),
                        ("/api/qc/recompute", {})]:
        r = await api.call(path, {**LAB, **extra}, who=MEMBER)
        assert r.status == 403 and "creator or an admin" in r.data["detail"], path
    r = await api.call("/api/qc/annotations/delete", {**LAB, "id": 999999}, who=MEMBER)
    assert r.status == 404
    mine = (await api.ok("/api/qc/annotations", LAB, who=MEMBER))["annotations"][0]["id"]
    r = await api.call("/api/qc/annotations/delete", {**LAB, "id": mine}, who=DEMO_USER)  # the creator may
    assert r.status == 200
    assert (await api.call("/api/qc/guide-sets/create", {**LAB, "start": T, "end": T}, who=DEMO_USER)).status == 201
    assert (await api.call("/api/qc/settings", {**LAB, "auto_guide_runs": 5, "offline_hours": 48},
                           who=ADMIN)).status == 200
    # another lab sees nothing of it
    for path in ("/api/qc/verdicts", "/api/qc/chart", "/api/qc/annotations", "/api/qc/guide-sets", "/api/qc/metrics"):
        r = await api.call(path, {**LAB, "metric": IDS}, who=OTHER)
        assert r.status == 403, path
    st = await api.ok("/api/qc/status", method="GET", who=OTHER)
    assert {(p["project"], p["pipeline"]) for p in st["pipelines"]} == {(OTHER_PROJECT, OTHER_PIPELINE)}
    r = await api.call("/api/qc/annotation-kinds/create", {"name": "needle", "label": "Needle"}, who=DEMO_USER)
    assert r.status == 403
    r = await api.call("/api/qc/annotation-kinds/create", {"name": "needle", "label": "Spray needle",
                                                          "resets_baseline": True}, who=ADMIN)
    assert r.status == 201
    kinds = await api.ok("/api/qc/annotation-kinds", method="GET", who=MEMBER)
    assert {"name": "needle", "label": "Spray needle", "resets_baseline": True} in kinds["kinds"]
    assert (await api.call("/api/qc/verdicts", LAB, who=None)).status == 401


@pytest.mark.parametrize(("path", "body", "status", "word"), [
    ("/api/qc/annotations/create", {"kind": "party", "time": T}, 400, "kind"),
    ("/api/qc/annotations/create", {"kind": "other", "time": "yesterday"}, 400, "time"),
    ("/api/qc/annotations/create", {"kind": "other"}, 400, "time"),
    ("/api/qc/annotations/create", {"kind": "other", "time": T, "text": "x" * 3000}, 400, "text"),
    ("/api/qc/guide-sets/create", {"start": "2024-01-02T00:00:00Z", "end": T}, 400, "before start"),
    ("/api/qc/guide-sets/create", {"start": T}, 400, "start and end"),
    ("/api/qc/guide-sets/create", {"run_keys": ["rf999999"]}, 404, "rf999999"),
    ("/api/qc/guide-sets/create", {"run_keys": ["rf1"], "start": T}, 400, "either"),
    ("/api/qc/guide-sets/delete", {"id": "auto-1"}, 400, "automatic"),
    ("/api/qc/guide-sets/delete", {"id": "gs999"}, 404, "gs999"),
    ("/api/qc/rules", {"metric": IDS, "rules": [{"rule": "levey_jennings", "warn": 4, "fail": 3}]}, 400, "warn"),
    ("/api/qc/rules", {"metric": IDS, "rules": [{"rule": "magic"}]}, 400, "unknown rule"),
    ("/api/qc/rules", {"metric": IDS, "metric_overrides": {"direction": "sideways"}}, 400, "direction"),
    ("/api/qc/rules", {"metric": IDS}, 400, "rules"),
    ("/api/qc/settings", {"auto_guide_runs": -1}, 400, "auto_guide_runs"),
    ("/api/qc/settings", {"auto_guide_runs": 5, "offline_hours": "soon"}, 400, "offline_hours"),
    ("/api/qc/chart", {"metric": IDS, "kind": "pie"}, 400, "kind"),
    ("/api/qc/chart", {}, 400, "metric"),
    ("/api/qc/chart", {"metric": "NoSuchMetric"}, 404, "NoSuchMetric"),
    ("/api/qc/exclusions/create", {"metric": IDS, "run_keys": []}, 400, "run_keys"),
    ("/api/qc/verdicts", {"run_keys": ["rf999999"]}, 404, "rf999999"),
])
async def test_bad_input_is_a_4xx_with_detail(api: Api, path: str, body: dict, status: int, word: str) -> None:
    r = await api.call(path, {**LAB, **body}, who=DEMO_USER)
    assert r.status == status, r.text
    assert word in r.data["detail"]


async def test_status_vocabulary(api: Api, world: World) -> None:
    st = {p["pipeline"]: p for p in (await api.ok("/api/qc/status", method="GET", who=ADMIN))["pipelines"]}
    assert st["empty-pipeline"]["status"] == "NO_DATA"
    assert st[LAB_PIPELINE]["status"] in ("NO_DATA", "NO_THRESHOLD")
    await api.ok("/api/qc/settings", {**LAB, "auto_guide_runs": 20, "offline_hours": 1}, who=DEMO_USER)
    st = await api.ok("/api/qc/status", LAB, who=DEMO_USER)
    assert st["pipelines"][0]["status"] == "OFFLINE"  # the lab's last run is from 2024
    assert dt.datetime.fromisoformat(st["pipelines"][0]["latest_run"]["acquired"]).year == 2024
