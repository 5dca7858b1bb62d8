"""The config file's [[qc]] settings applied to a real store, and seen through a real server: the
file wins at each start for what it names, the API refuses to change those settings, applying the
same file again changes nothing, and what the file stops naming goes back to the defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import OTHER, OTHER_PIPELINE, OTHER_PROJECT, TEST_DATA, Api, World

from qcdaemon.config import config_from_dict
from qcdaemon.engine.stages.common import StageContext, record_scan_values
from qcdaemon.errors import ConfigError
from qcdaemon.service.qcconfig import PIPELINE_SETTINGS, apply_qc_config
from qcdaemon.store import Store
from qcdaemon.tools.rawtools_parse import parse_qc_data_table

HELA = TEST_DATA / "rawtools" / "rawtools-docs-example" / "QcDataTable.csv"
SCOPE = {"project": OTHER_PROJECT, "pipeline": OTHER_PIPELINE}
MS1, MS2 = "Ms1MedianSummedIntensity", "NumMs2Scans"
FILE = "/etc/qcdaemon/qcdaemon.toml"


async def record(world: World, tmp_path: Path, n: int) -> list[str]:
    """The first ``n`` HeLa runs as runs of OTHER's pipeline, recorded as the engine records them."""
    p = world.pipeline(OTHER_PROJECT, OTHER_PIPELINE)
    await world.store.call(Store.delete_run, int(world.runs["other"][2:]))
    ctx = StageContext(store=world.store, cfg=world.cfg, pid_dir=tmp_path, values_recorded=world.svc.quality.record)
    keys = []
    for row in parse_qc_data_table(HELA)[:n]:
        name = Path(str(row["RawFile"]).replace("\\", "/")).name
        run = await world.store.call(Store.create_run, p["id"], name, source="upload",
                                     owner_id=world.users[OTHER]["id"], state="done")
        await record_scan_values(ctx, run, "rawtools", dict(row))
        keys.append(run["run_key"])
    return keys


def with_qc(world: World, qc: list[dict], source: str = FILE):
    return dataclasses.replace(world.cfg, qc=config_from_dict({"qc": qc}).qc, source=source)


def metric(listing: dict, name: str) -> dict:
    return next(m for m in listing["metrics"] if m["column"] == name)


async def test_the_file_wins_for_what_it_names_and_only_for_that(api: Api, world: World, tmp_path: Path) -> None:
    keys = await record(world, tmp_path, 8)
    # set through the API before the file says anything: a metric the file will not name
    await api.ok("/api/qc/rules", {**SCOPE, "metric": MS2, "rules": ["robust"]}, who=OTHER)
    qc = [{"pipeline": f"{OTHER_PROJECT}/{OTHER_PIPELINE}", "auto_guide_runs": 5, "offline_hours": 6,
           "metrics": {MS1: {"rules": [{"rule": "cutoff", "max": 1000}], "direction": "both", "label": "MS1 level"}}}]
    applied = await apply_qc_config(world.store, with_qc(world, qc))
    (change,) = applied
    assert change["changed"] == [MS1, PIPELINE_SETTINGS] and change["recomputed"] == 8

    listing = await api.ok("/api/qc/metrics", SCOPE, who=OTHER)
    ms1 = metric(listing, MS1)
    assert ms1["rules"] == [{"rule": "cutoff", "min": None, "max": 1000.0, "warn_min": None, "warn_max": None}]
    assert (ms1["direction"], ms1["label"], ms1["config_file"]) == ("both", "MS1 level", FILE)
    assert metric(listing, MS2)["rules"] == [{"rule": "robust", "warn": 2.0, "fail": 3.0}]
    assert metric(listing, MS2)["config_file"] is None  # the API's setting stays as the API left it
    assert (listing["auto_guide_runs"], listing["offline_hours"], listing["config_file"]) == (5, 6.0, FILE)

    # every HeLa MS1 intensity is above 1000 (about 1e6 to 1e8): the file's cutoff fails each run
    verdicts = (await api.ok("/api/qc/verdicts", SCOPE, who=OTHER))["runs"]
    assert [v["run_key"] for v in verdicts] == keys
    for v in verdicts:
        (r,) = [r for r in v["reasons"] if r["metric"] == MS1]
        assert (r["rule"], r["severity"], r["high"]) == ("cutoff", "fail", 1000.0) and r["value"] > 1000

    # the API refuses to change what the file sets (it would be undone at the next start) ...
    r = await api.call("/api/qc/rules", {**SCOPE, "metric": MS1, "rules": ["off"]}, who=OTHER)
    assert r.status == 409 and FILE in r.data["detail"] and "[[qc]]" in r.data["detail"]
    r = await api.call("/api/qc/settings", {**SCOPE, "auto_guide_runs": 20}, who=OTHER)
    assert r.status == 409 and FILE in r.data["detail"]
    # ... and not what it does not set
    assert (await api.ok("/api/qc/rules", {**SCOPE, "metric": MS2, "rules": ["plot_only"]}, who=OTHER))["recomputed"] == 8

    # the same file again: nothing changes, nothing is recomputed
    before = {v["run_key"]: v["computed_at"] for v in (await api.ok("/api/qc/verdicts", SCOPE, who=OTHER))["runs"]}
    assert await apply_qc_config(world.store, with_qc(world, qc)) == []
    after = {v["run_key"]: v["computed_at"] for v in (await api.ok("/api/qc/verdicts", SCOPE, who=OTHER))["runs"]}
    assert after == before

    # the file no longer names the pipeline: its settings go back to the defaults, the API's stay
    (change,) = await apply_qc_config(world.store, with_qc(world, []))
    assert change["changed"] == [MS1, PIPELINE_SETTINGS]
    listing = await api.ok("/api/qc/metrics", SCOPE, who=OTHER)
    ms1 = metric(listing, MS1)
    assert [x["rule"] for x in ms1["rules"]] == ["levey_jennings", "westgard"] and ms1["config_file"] is None
    assert ms1["direction"] == "higher" and ms1["label"] != "MS1 level"
    assert metric(listing, MS2)["rules"] == [{"rule": "plot_only"}]
    assert (listing["auto_guide_runs"], listing["offline_hours"], listing["config_file"]) == (20, None, None)
    assert all(not [r for r in v["reasons"] if r["rule"] == "cutoff"]
               for v in (await api.ok("/api/qc/verdicts", SCOPE, who=OTHER))["runs"])
    assert (await api.ok("/api/qc/rules", {**SCOPE, "metric": MS1, "rules": ["robust"]}, who=OTHER))["recomputed"] == 8


async def test_a_qc_table_naming_no_pipeline_stops_start_up_naming_the_key(world: World) -> None:
    with pytest.raises(ConfigError, match=r"^qc\[0\]\.pipeline: no pipeline 'nope/nothing'"):
        await apply_qc_config(world.store, with_qc(world, [{"pipeline": "nope/nothing"}]))
    same = [{"pipeline": f"{OTHER_PROJECT}/{OTHER_PIPELINE}"}, {"pipeline": world.pipeline(OTHER_PROJECT, OTHER_PIPELINE)["uuid"]}]
    with pytest.raises(ConfigError, match=r"^qc\[1\]\.pipeline: .* is the pipeline of qc\[0\] too"):
        await apply_qc_config(world.store, with_qc(world, same))
