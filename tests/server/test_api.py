"""The /api/* read routes of contract.md and decisions.md over a real server and a real DuckDB file.

Every route is exercised with JSON, urlencoded and multipart bodies (``enc``), which must give the
same answers.  Authentication here is by token; ``test_auth.py`` covers sessions and CSRF.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ADMIN,
    DEMO_PIPELINE,
    DEMO_PROJECT,
    DEMO_SA001,
    DEMO_SA002,
    DEMO_SMALL2,
    DEMO_USER,
    EMPTY_PIPELINE,
    ENCODINGS,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    OTHER_PIPELINE,
    OTHER_PROJECT,
    SHARED_PROJECT,
    Api,
    World,
    read_only_world,
)

from qcdaemon.service.demo import DESCRIPTION

# Nothing here changes the world: one server for the module.
pytestmark = pytest.mark.asyncio(loop_scope="module")
each_encoding = pytest.mark.parametrize("enc", ENCODINGS)


# Nothing here changes the world: every test reads the module's one server and world.
api, world = read_only_world()


DEMO = {"project": DEMO_PROJECT, "pipeline": DEMO_PIPELINE}
LAB = {"project": DEMO_PROJECT, "pipeline": LAB_PIPELINE}


def stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".raw") else name


# ------------------------------------------------------------------------------- projects


@each_encoding
async def test_projects_visible_to_the_user_ordered_by_name(api: Api, world: World, enc: str) -> None:
    data = await api.ok("/api/projects", {}, enc=enc)
    assert [p["slug"] for p in data] == [SHARED_PROJECT, DEMO_PROJECT]  # by name, not by creation
    demo = data[1]
    assert set(demo) == {"pk", "name", "description", "slug"}
    assert demo["name"] == "Demo Project" and demo["description"] == DESCRIPTION
    assert isinstance(demo["pk"], int)


@each_encoding
@pytest.mark.parametrize(("who", "slugs"), [
    (ADMIN, [SHARED_PROJECT, DEMO_PROJECT, OTHER_PROJECT, "zulu-admin-only"]),  # admin: everything
    (OTHER, [OTHER_PROJECT]),  # creator
    (MEMBER, [DEMO_PROJECT]),  # member
])
async def test_projects_scoping(api: Api, enc: str, who: str, slugs: list[str]) -> None:
    assert [p["slug"] for p in await api.ok("/api/projects", {}, enc=enc, who=who)] == slugs


async def test_projects_without_a_body(api: Api) -> None:
    r = await api.call("/api/projects", None)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert [p["slug"] for p in r.data] == [SHARED_PROJECT, DEMO_PROJECT]


# ------------------------------------------------------------------------------- pipelines


@each_encoding
async def test_pipelines_of_a_visible_project(api: Api, world: World, enc: str) -> None:
    data = await api.ok("/api/pipelines", {"project": DEMO_PROJECT}, enc=enc)
    by_slug = {p["slug"]: p for p in data}
    assert set(by_slug) == {DEMO_PIPELINE, LAB_PIPELINE}
    demo = by_slug[DEMO_PIPELINE]
    assert set(demo) == {"uuid", "slug", "name", "path_as_str"}
    assert demo["name"] == "TMT QC Demo"
    assert demo["uuid"] == world.pipeline(DEMO_PROJECT, DEMO_PIPELINE)["uuid"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", demo["uuid"])
    folder = Path(by_slug[LAB_PIPELINE]["path_as_str"])
    assert folder.is_dir() and world.data_dir in folder.parents


@each_encoding
@pytest.mark.parametrize("body", [
    {"project": OTHER_PROJECT},  # exists, invisible
    {"project": "no-such-project"},
    {},  # missing
    {"project": ""},
])
async def test_pipelines_unknown_or_invisible_project_is_empty(api: Api, enc: str, body: dict) -> None:
    assert await api.ok("/api/pipelines", body, enc=enc) == []


@each_encoding
async def test_pipelines_admin_sees_other_projects(api: Api, enc: str) -> None:
    data = await api.ok("/api/pipelines", {"project": OTHER_PROJECT}, enc=enc, who=ADMIN)
    assert [p["slug"] for p in data] == [OTHER_PIPELINE]


# ------------------------------------------------------------------------------- uploaders


@each_encoding
async def test_pipeline_uploaders(api: Api, enc: str) -> None:
    assert await api.ok("/api/pipeline-uploaders", DEMO, enc=enc) == [{"label": DEMO_USER, "value": DEMO_USER}]
    # distinct owners, sorted; a member sees them all (reads are project-wide)
    expected = [{"label": e, "value": e} for e in sorted([DEMO_USER, MEMBER])]
    assert await api.ok("/api/pipeline-uploaders", LAB, enc=enc, who=MEMBER) == expected


@each_encoding
@pytest.mark.parametrize(("who", "body"), [
    (DEMO_USER, {"project": DEMO_PROJECT}),  # pipeline missing
    (DEMO_USER, {"pipeline": DEMO_PIPELINE}),  # project missing
    (DEMO_USER, {"project": OTHER_PROJECT, "pipeline": OTHER_PIPELINE}),  # invisible
    (OTHER, DEMO),  # invisible
    (DEMO_USER, {"project": DEMO_PROJECT, "pipeline": "nope"}),
    (DEMO_USER, {"project": SHARED_PROJECT, "pipeline": EMPTY_PIPELINE}),  # no runs
])
async def test_pipeline_uploaders_empty(api: Api, enc: str, who: str, body: dict) -> None:
    assert await api.ok("/api/pipeline-uploaders", body, enc=enc, who=who) == []


# ------------------------------------------------------------------------------- qc-data

SUMMARY = ("MS", "MS/MS", "MS3", "MS/MS Submitted", "MS/MS Identified", "MS/MS Identified [%]",
           "Peptide Sequences Identified", "Av. Absolute Mass Deviation [mDa]", "Mass Standard Deviation [mDa]")
CALENDAR = ("Date", "Day", "Week", "Month", "Year")
META = ("RunKey", "RawFile", "Index", "DateAcquired", "Flagged", "Use Downstream", "Uploader")
TMT = tuple(f"TMT{n}_{kind}" for kind in ("missing_values", "peptide_count", "protein_group_count")
            for n in range(1, 12))
SOME_RAWTOOLS = ("Instrument", "TotalScans", "NumMs2Scans", "MedianMassDrift(ppm)", "RawFilePath")
SOME_MAXQUANT = ("N_protein_groups", "N_protein_true_hits", "N_peptides", "Oxidations [%]",
                 "Missed Cleavages [%]", "N_missed_cleavages_gt_3 [%]", "reporter_intensity_corrected_qc1_cv")


@each_encoding
async def test_qc_data_columns_and_values(api: Api, world: World, enc: str) -> None:
    data = await api.qc(enc=enc)
    for col in META + CALENDAR + SUMMARY + TMT + SOME_RAWTOOLS + SOME_MAXQUANT:
        assert col in data, col
    assert {len(v) for v in data.values()} == {3}
    # oldest to newest by acquisition; the MaxQuant-only run has no date and falls back to ingestion time
    assert data["RawFile"] == [stem(DEMO_SMALL2), stem(DEMO_SA001), stem(DEMO_SA002)]
    assert data["RunKey"] == [world.runs["small2"], world.runs["sa001"], world.runs["sa002"]]
    assert data["Index"] == [1, 2, 3]
    assert data["Uploader"] == [DEMO_USER] * 3
    assert data["Flagged"] == [False] * 3 and data["Use Downstream"] == [True] * 3
    # DateAcquired: epoch nanoseconds of the (naive) acquisition time, 10/25/2019 17:40:21 for SA001
    sa001 = dt.datetime(2019, 10, 25, 17, 40, 21, tzinfo=dt.UTC)
    assert data["DateAcquired"][1] == int(sa001.timestamp()) * 1_000_000_000
    assert data["DateAcquired"][2] is None
    assert data["DateAcquired"][0] < data["DateAcquired"][1]
    for ns, date, month, year in zip(data["DateAcquired"][:2], data["Date"], data["Month"], data["Year"]):
        t = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)
        assert (date, month, year) == (t.strftime("%Y-%m-%d"), t.strftime("%Y-%m"), t.strftime("%Y"))
    assert data["Day"][1] == "2019-298" and data["Week"][1] == "2019-43"
    # the summary.txt metrics the original dropped (verified values of example-0 = SA002)
    assert data["MS/MS Identified [%]"][2] == 32
    assert data["MS/MS Identified"][2] == 7179
    assert data["N_protein_groups"][2] == 1272
    assert [data[f"TMT{n}_missing_values"][2] for n in range(1, 12)] == [11, 11, 11, 11, 11, 13, 11, 15, 12, 13, 11]
    assert data["Instrument"][:2] == ["Orbitrap Velos Pro", "Orbitrap Fusion Lumos"]
    assert data["Instrument"][2] is None  # no RawTools output for that run


@each_encoding
async def test_qc_data_column_order_puts_identity_first(api: Api, enc: str) -> None:
    cols = list(await api.qc(enc=enc))
    assert cols[:3] == ["RawFile", "Index", "DateAcquired"]
    tmt_missing = [c for c in cols if c.endswith("_missing_values") and c.startswith("TMT")]
    assert tmt_missing == [f"TMT{n}_missing_values" for n in range(1, 12)]


@each_encoding
@pytest.mark.parametrize(("data_range", "labels"), [
    (1, ["sa002"]),
    (2, ["sa001", "sa002"]),
    (3, ["small2", "sa001", "sa002"]),
    (100, ["small2", "sa001", "sa002"]),
    (None, ["small2", "sa001", "sa002"]),
    ("2", ["sa001", "sa002"]),  # a numeric string is an integer in both encodings
])
async def test_qc_data_range_keeps_the_newest_n(api: Api, world: World, enc: str, data_range: Any,
                                                labels: list[str]) -> None:
    data = await api.qc(enc=enc, data_range=data_range)
    assert data["RunKey"] == [world.runs[label] for label in labels]
    assert data["Index"] == list(range(1, len(labels) + 1))


@each_encoding
async def test_qc_data_range_absent_keeps_all(api: Api, enc: str) -> None:
    assert len((await api.ok("/api/qc-data", DEMO, enc=enc))["RunKey"]) == 3


@each_encoding
async def test_qc_data_range_zero_and_no_runs_give_empty_object(api: Api, enc: str) -> None:
    assert await api.qc(enc=enc, data_range=0) == {}
    assert await api.qc(EMPTY_PIPELINE, SHARED_PROJECT, enc=enc) == {}


@each_encoding
async def test_qc_data_columns_selection(api: Api, world: World, enc: str) -> None:
    data = await api.qc(enc=enc, data_range=2, columns=["RunKey", "MS/MS Identified [%]", "No Such Column"])
    assert list(data) == ["RunKey", "MS/MS Identified [%]", "No Such Column"]
    assert data["RunKey"] == [world.runs["sa001"], world.runs["sa002"]]
    assert data["MS/MS Identified [%]"] == [None, 32]
    assert data["No Such Column"] == [None, None]


@each_encoding
async def test_qc_data_reports_tmt_channels_beyond_11(api: Api, world: World, enc: str) -> None:
    data = await api.qc(LAB_PIPELINE, enc=enc)
    i = data["RunKey"].index(world.runs["lab_user"])
    assert data["TMT16_missing_values"][i] == 16 and data["TMT12_protein_group_count"][i] == 3
    cols = [c for c in data if c.startswith("TMT") and c.endswith("_missing_values")]
    assert cols == [f"TMT{n}_missing_values" for n in range(1, 17)]


@each_encoding
async def test_qc_data_is_project_wide_for_members(api: Api, world: World, enc: str) -> None:
    """A member who owns no run still sees every run of the project's pipelines (decisions.md)."""
    data = await api.qc(enc=enc, who=MEMBER, columns=["RunKey", "Uploader"])
    assert len(data["RunKey"]) == 3 and set(data["Uploader"]) == {DEMO_USER}


@each_encoding
@pytest.mark.parametrize(("who", "body"), [
    (OTHER, DEMO),  # exists, invisible
    (DEMO_USER, {"project": OTHER_PROJECT, "pipeline": OTHER_PIPELINE}),
    (DEMO_USER, {"project": DEMO_PROJECT, "pipeline": "no-such-pipeline"}),  # same answer as invisible
    (DEMO_USER, {"project": "no-such-project", "pipeline": DEMO_PIPELINE}),
])
async def test_qc_data_invisible_pipeline_is_403(api: Api, enc: str, who: str, body: dict) -> None:
    r = await api.call("/api/qc-data", {**body, "data_range": 3}, enc=enc, who=who)
    assert r.status == 403 and r.is_json
    assert r.data["detail"] == "Missing permissions for requested pipeline."


@each_encoding
@pytest.mark.parametrize("missing", ["project", "pipeline"])
@pytest.mark.parametrize("route", ["/api/qc-data", "/api/protein-names", "/api/rawfile"])
async def test_missing_scope_field_is_400_naming_it(api: Api, enc: str, route: str, missing: str) -> None:
    body = {**DEMO, "data_range": 3, "action": "flag", "run_keys": ["rf1"]}
    del body[missing]
    r = await api.call(route, body, enc=enc)
    assert r.status == 400 and r.is_json
    assert missing in r.data["detail"]


@each_encoding
@pytest.mark.parametrize("bad", ["abc", 1.5, -1, "1e3"])
async def test_qc_data_range_of_wrong_type_is_400(api: Api, enc: str, bad: Any) -> None:
    r = await api.call("/api/qc-data", {**DEMO, "data_range": bad}, enc=enc)
    assert r.status == 400 and "data_range" in r.data["detail"]


async def test_qc_data_range_json_only_wrong_types(api: Api) -> None:
    """Lists, objects and booleans exist in JSON only."""
    for bad in ([3], {"n": 3}, True):
        r = await api.call("/api/qc-data", {**DEMO, "data_range": bad})
        assert r.status == 400 and "data_range" in r.data["detail"], bad


# ------------------------------------------------------------------------------- protein-names


def names_body(**kw: Any) -> dict[str, Any]:
    return {**DEMO, "data_range": None, "raw_files": [], "remove_contaminants": False,
            "remove_reversed_sequences": False, **kw}


@each_encoding
async def test_protein_names_shape_and_order(api: Api, enc: str) -> None:
    data = await api.ok("/api/protein-names", names_body(), enc=enc)
    assert set(data) == {"protein_names", "Fasta headers", "Score", "Intensity"}
    n = len(data["protein_names"])
    assert n > 1000 and all(len(v) == n for v in data.values())
    assert data["Score"] == sorted(data["Score"], reverse=True)
    assert any(p.startswith("CON__") for p in data["protein_names"])
    assert any(p.startswith("REV__") for p in data["protein_names"])


@each_encoding
async def test_protein_names_filters(api: Api, enc: str) -> None:
    everything = await api.ok("/api/protein-names", names_body(), enc=enc)
    no_con = await api.ok("/api/protein-names", names_body(remove_contaminants=True), enc=enc)
    no_rev = await api.ok("/api/protein-names", names_body(remove_reversed_sequences=True), enc=enc)
    neither = await api.ok("/api/protein-names", names_body(remove_contaminants=True,
                                                            remove_reversed_sequences=True), enc=enc)
    assert not any("CON__" in p for p in no_con["protein_names"])
    assert any(p.startswith("REV__") for p in no_con["protein_names"])
    assert not any(p.startswith("REV__") for p in no_rev["protein_names"])
    assert any(p.startswith("CON__") for p in no_rev["protein_names"])
    assert len(neither["protein_names"]) < min(len(no_con["protein_names"]), len(no_rev["protein_names"]))
    assert len(no_con["protein_names"]) < len(everything["protein_names"])
    assert set(neither["protein_names"]) <= set(no_con["protein_names"]) & set(no_rev["protein_names"])


@each_encoding
@pytest.mark.parametrize("name", [stem(DEMO_SA001), DEMO_SA001, stem(DEMO_SA001) + ".RAW"])
async def test_protein_names_raw_files_narrow(api: Api, enc: str, name: str) -> None:
    data = await api.ok("/api/protein-names", names_body(raw_files=[name]), enc=enc)
    assert len(data["protein_names"]) == 19  # example-1: 19 groups, all contaminants
    none_left = await api.ok("/api/protein-names", names_body(raw_files=[name], remove_contaminants=True), enc=enc)
    assert none_left == {}


@each_encoding
async def test_protein_names_data_range_matches_raw_file_selection(api: Api, enc: str) -> None:
    newest = await api.ok("/api/protein-names", names_body(data_range=1), enc=enc)
    by_name = await api.ok("/api/protein-names", names_body(raw_files=[stem(DEMO_SA002)]), enc=enc)
    assert newest == by_name and len(newest["protein_names"]) == 1272


@each_encoding
async def test_protein_names_unknown_raw_file_is_empty(api: Api, enc: str) -> None:
    assert await api.ok("/api/protein-names", names_body(raw_files=["nothing-like-it"]), enc=enc) == {}


@each_encoding
async def test_protein_names_means_over_runs(api: Api, enc: str) -> None:
    data = await api.ok("/api/protein-names", {**LAB, "remove_contaminants": False,
                                               "remove_reversed_sequences": False}, enc=enc)
    assert data["protein_names"] == ["CON__LAB", "LAB|SHARED", "REV__LAB"]  # by mean score, highest first
    assert data["Score"] == [50.0, 20.0, 1.0]
    assert data["Intensity"] == [5.0, 200.0, 1.0]
    assert data["Fasta headers"][1] == ">LAB|SHARED"


@each_encoding
async def test_protein_names_invisible_is_403(api: Api, enc: str) -> None:
    r = await api.call("/api/protein-names", names_body(), enc=enc, who=OTHER)
    assert r.status == 403 and r.data["detail"]


# ------------------------------------------------------------------------------- protein-groups


async def top_names(api: Api, n: int = 2, **kw: Any) -> list[str]:
    data = await api.ok("/api/protein-names", names_body(**kw))
    return data["protein_names"][:n]


@each_encoding
@pytest.mark.parametrize("body", [
    {**DEMO, "data_range": 3},
    {**DEMO, "data_range": 3, "columns": ["Score"]},
    {**DEMO, "data_range": 3, "protein_names": ["QC1|Peptide1"]},
])
async def test_protein_groups_alive_without_columns_or_names(api: Api, enc: str, body: dict) -> None:
    r = await api.call("/api/protein-groups", body, enc=enc)
    assert r.status == 200 and r.text == "alive"
    assert r.headers["Content-Type"].startswith("text/plain")


@each_encoding
async def test_protein_groups_expands_reporter_intensities(api: Api, world: World, enc: str) -> None:
    names = await top_names(api, 2, raw_files=[stem(DEMO_SA002)], remove_contaminants=True,
                            remove_reversed_sequences=True)
    body = {**DEMO, "data_range": 3, "protein_names": names, "columns": ["Reporter intensity corrected"]}
    data = await api.ok("/api/protein-groups", body, enc=enc)
    reporter = [f"Reporter intensity corrected {n}" for n in range(1, 12)]
    assert list(data) == ["RawFile", "RunKey", "Majority protein IDs", *reporter]
    rows = list(data["RawFile"])
    assert rows == [str(i) for i in range(len(rows))] and len(rows) == 2
    assert all(list(col) == rows for col in data.values())  # {column: {"0": v, "1": v}}
    assert sorted(data["Majority protein IDs"].values()) == sorted(names)
    assert set(data["RawFile"].values()) == {stem(DEMO_SA002)}
    assert set(data["RunKey"].values()) == {world.runs["sa002"]}
    assert all(isinstance(v, float) for c in reporter for v in data[c].values())


@each_encoding
async def test_protein_groups_other_columns(api: Api, enc: str) -> None:
    names = await top_names(api, 1)
    body = {**DEMO, "data_range": None, "protein_names": names,
            "columns": ["Score", "Fasta headers", "Peptides", "Not A Column"]}
    data = await api.ok("/api/protein-groups", body, enc=enc)
    assert list(data) == ["RawFile", "RunKey", "Majority protein IDs", "Score", "Fasta headers", "Peptides",
                          "Not A Column"]
    assert data["Not A Column"] == {"0": None}
    assert isinstance(data["Score"]["0"], float) and isinstance(data["Peptides"]["0"], int)


@each_encoding
async def test_protein_groups_per_run_rows_average_to_protein_names(api: Api, enc: str) -> None:
    body = {**LAB, "protein_names": ["LAB|SHARED"], "columns": ["Score", "Intensity", "Reporter intensity corrected"]}
    data = await api.ok("/api/protein-groups", body, enc=enc)
    assert sorted(data["Score"].values()) == [10.0, 30.0]
    assert sorted(data["RawFile"].values()) == ["dup", "lab-user"]
    assert len([c for c in data if c.startswith("Reporter intensity corrected ")]) == 16


@each_encoding
async def test_protein_groups_raw_files_narrow(api: Api, world: World, enc: str) -> None:
    body = {**LAB, "protein_names": ["LAB|SHARED"], "columns": ["Score"], "raw_files": ["lab-user.raw"]}
    data = await api.ok("/api/protein-groups", body, enc=enc)
    assert data["RunKey"] == {"0": world.runs["lab_user"]} and data["Score"] == {"0": 10.0}


@each_encoding
async def test_protein_groups_unknown_name_is_empty(api: Api, enc: str) -> None:
    body = {**DEMO, "data_range": 3, "protein_names": ["QC1|Peptide1"], "columns": ["Reporter intensity corrected"]}
    assert await api.ok("/api/protein-groups", body, enc=enc) == {}


@each_encoding
async def test_protein_groups_invisible_is_403(api: Api, enc: str) -> None:
    body = {**DEMO, "data_range": 3, "protein_names": ["x"], "columns": ["Score"]}
    r = await api.call("/api/protein-groups", body, enc=enc, who=OTHER)
    assert r.status == 403 and r.data["detail"]


# ------------------------------------------------------------------------------- the encodings agree


ROUTE_BODIES = [
    ("/api/projects", {}),
    ("/api/pipelines", {"project": DEMO_PROJECT}),
    ("/api/pipeline-uploaders", LAB),
    ("/api/qc-data", {**DEMO, "data_range": 2, "columns": ["RunKey", "RawFile", "Flagged", "x"]}),
    ("/api/qc-data", {**DEMO, "data_range": None}),
    ("/api/protein-names", names_body(raw_files=[DEMO_SA001], remove_contaminants=True)),
    ("/api/protein-names", names_body(data_range=2, remove_reversed_sequences=True)),
    ("/api/protein-groups", {**LAB, "protein_names": ["LAB|SHARED", "CON__LAB"],
                             "columns": ["Reporter intensity corrected", "Score"]}),
    ("/api/protein-groups", {**LAB, "columns": ["Score"]}),
    ("/api/qc-data", {**DEMO, "data_range": "x"}),
    ("/api/qc-data", {"project": DEMO_PROJECT}),
    ("/api/rawfile", {**DEMO, "action": "explode", "run_keys": ["rf1"]}),
]


@each_encoding
@pytest.mark.parametrize(("route", "body"), ROUTE_BODIES)
async def test_encodings_give_identical_answers(api: Api, enc: str, route: str, body: dict) -> None:
    reference = await api.call(route, body, enc="json")
    other = await api.call(route, body, enc=enc)
    assert (other.status, other.text) == (reference.status, reference.text)
