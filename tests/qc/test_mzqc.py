"""``POST /api/mzqc``: the seeded demo as an mzQC 1.0.0 document, over a real server.

Checks the structure rules of the mzQC schema and validation guide (shared/spec/mzqc.md), the
values of the demo runs, run selection and scoping; then ``build_mzqc`` directly for the cases the
demo does not have (stored paths, duplicate names, placeholders).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from conftest import (
    DEMO_PIPELINE,
    DEMO_PROJECT,
    DEMO_SA002,
    DEMO_SMALL2,
    EMPTY_PIPELINE,
    ENCODINGS,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    SHARED_PROJECT,
    Api,
    World,
    read_only_world,
)

from qcdaemon import __version__
from qcdaemon.errors import NotFound
from qcdaemon.qc.mzqc import METRICS, build_mzqc, file_uri

# The server tests only read: one server for the module, in the module's event loop.
in_module_loop = pytest.mark.asyncio(loop_scope="module")
each_encoding = pytest.mark.parametrize("enc", ENCODINGS)

DEMO = {"project": DEMO_PROJECT, "pipeline": DEMO_PIPELINE}
LAB = {"project": DEMO_PROJECT, "pipeline": LAB_PIPELINE}
ACCESSION = re.compile(r"^[A-Z]+:[A-Z0-9]+$")
VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# every term the export may use, with its psi-ms.obo / UO name
KNOWN_TERMS = {
    **{m.accession: m.name for m in METRICS},
    "MS:1000563": "Thermo RAW format", "MS:1000747": "completion time", "MS:1003151": "SHA-256",
    "MS:1000031": "instrument model", "MS:1000799": "custom unreleased software tool", "MS:1001583": "MaxQuant",
    "MS:1001348": "FASTA format",
    "UO:0000189": "count unit", "UO:0000010": "second", "UO:0000169": "parts per million",
}


# Nothing here changes the world: every test reads the module's one server and world.
api, world = read_only_world()


async def export(api: Api, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    r = await api.call("/api/mzqc", DEMO if body is None else body, **kw)
    assert r.status == 200, (r.status, r.text)
    assert r.is_json
    return r.data


def by_label(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["metadata"]["label"]: q for q in doc["mzQC"]["runQualities"]}


def metrics(quality: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["accession"]: m for m in quality["qualityMetrics"]}


def cv_params(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every cvParameter of the document: metrics, units, file formats and properties, software."""
    out = []
    for q in doc["mzQC"]["runQualities"]:
        for m in q["qualityMetrics"]:
            out.append(m)
            units = m.get("unit", [])
            out.extend(units if isinstance(units, list) else [units])
        for f in q["metadata"]["inputFiles"]:
            out.append(f["fileFormat"])
            out.extend(f.get("fileProperties", []))
        out.extend(q["metadata"]["analysisSoftware"])
    return out


def assert_valid_structure(doc: dict[str, Any]) -> None:
    """The mzQC 1.0.0 schema's structure and the validator's file-level rules."""
    assert set(doc) == {"mzQC"}
    root = doc["mzQC"]
    assert set(root) <= {"version", "creationDate", "description", "contactName", "contactAddress",
                         "runQualities", "setQualities", "controlledVocabularies"}
    assert VERSION.match(root["version"]) and root["version"] == "1.0.0"
    created = dt.datetime.fromisoformat(root["creationDate"])
    assert created.tzinfo is not None and created.utcoffset() is not None
    cvs = root["controlledVocabularies"]
    assert cvs and all(set(cv) <= {"name", "uri", "version"} and cv["name"] and cv["uri"] for cv in cvs)
    assert any("psi-ms" in cv["uri"] for cv in cvs) and any(cv["uri"].endswith("uo.obo") for cv in cvs)
    qualities = root["runQualities"]
    assert qualities
    labels = [q["metadata"]["label"] for q in qualities]
    assert len(labels) == len(set(labels))
    names, locations = [], []
    for q in qualities:
        assert set(q) == {"metadata", "qualityMetrics"}
        meta = q["metadata"]
        assert set(meta) <= {"label", "inputFiles", "analysisSoftware", "cvParameters"}
        assert meta["inputFiles"] and meta["analysisSoftware"]
        for f in meta["inputFiles"]:
            assert set(f) <= {"name", "location", "fileFormat", "fileProperties"}
            assert f["name"] and f["location"]
            assert f.get("fileProperties", [None])  # minItems 1 when present
            names.append(f["name"])
            locations.append(f["location"])
        for sw in meta["analysisSoftware"]:
            assert isinstance(sw["version"], str) and sw["version"]
            assert isinstance(sw["uri"], str) and re.match(r"^[a-z][a-z0-9+.-]*:", sw["uri"])
        assert q["qualityMetrics"]  # minItems 1
        accessions = [m["accession"] for m in q["qualityMetrics"]]
        assert len(accessions) == len(set(accessions)), "a metric may appear only once per run"
        assert all(m["value"] is not None for m in q["qualityMetrics"])
    assert len(names) == len(set(names)), "inputFile names are unique in the file"
    assert len(locations) == len(set(locations)), "inputFile locations are unique"
    for p in cv_params(doc):
        assert ACCESSION.match(p["accession"]), p
        assert KNOWN_TERMS.get(p["accession"]) == p["name"], p


# ------------------------------------------------------------------------------- structure and values


@in_module_loop
@each_encoding
async def test_demo_export_is_a_valid_mzqc_document(api: Api, world: World, enc: str) -> None:
    r = await api.call("/api/mzqc", DEMO, enc=enc)
    assert r.status == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Content-Disposition"] == f'attachment; filename="{DEMO_PIPELINE}.mzQC"'
    doc = r.data
    assert_valid_structure(doc)
    assert list(by_label(doc)) == (await api.qc(columns=["RunKey"]))["RunKey"]  # every demo run, oldest first


@in_module_loop
async def test_encodings_give_the_same_document(api: Api) -> None:
    body = {**DEMO, "run_keys": [api.world.runs["small2"], api.world.runs["sa002"]]}
    docs = []
    for enc in ENCODINGS:
        doc = await export(api, body, enc=enc)
        doc["mzQC"].pop("creationDate")
        docs.append(doc)
    assert docs[0] == docs[1] == docs[2]


@in_module_loop
async def test_small2_values(api: Api, world: World) -> None:
    q = by_label(await export(api))[world.runs["small2"]]
    m = metrics(q)
    assert m["MS:4000059"]["value"] == 46 and isinstance(m["MS:4000059"]["value"], int)
    assert m["MS:4000059"]["unit"] == {"accession": "UO:0000189", "name": "count unit"}
    assert m["MS:4000060"]["value"] == 49
    duration = m["MS:4000067"]
    assert duration["name"] == "MS run duration"
    assert duration["value"] == pytest.approx(0.9876 * 60, abs=0.01)
    assert duration["unit"] == {"accession": "UO:0000010", "name": "second"}
    assert not set(m) & {"MS:1003251", "MS:1003250", "MS:1003327"}  # RawTools only: no identifications
    [raw] = q["metadata"]["inputFiles"]
    assert raw["name"] == DEMO_SMALL2
    assert raw["location"] == world.runs["small2"]  # the demo has no stored file
    assert raw["fileFormat"] == {"accession": "MS:1000563", "name": "Thermo RAW format"}
    props = {p["accession"]: p["value"] for p in raw["fileProperties"]}
    assert props == {"MS:1000747": "2018-04-03T21:15:49Z", "MS:1000031": "Orbitrap Velos Pro"}
    software = {sw.get("value", sw["name"]): sw for sw in q["metadata"]["analysisSoftware"]}
    assert set(software) == {f"qcdaemon {__version__}", "RawTools"}
    assert software[f"qcdaemon {__version__}"]["version"] == __version__


@in_module_loop
async def test_maxquant_only_run(api: Api, world: World) -> None:
    q = by_label(await export(api))[world.runs["sa002"]]
    assert {k: v["value"] for k, v in metrics(q).items()} == {
        "MS:1003251": 7179, "MS:1003250": 5873, "MS:1003327": 1272}
    [raw] = q["metadata"]["inputFiles"]
    assert raw["name"] == DEMO_SA002 and "fileProperties" not in raw  # no acquisition time, hash, model
    names = [sw["name"] for sw in q["metadata"]["analysisSoftware"]]
    assert names == ["custom unreleased software tool", "MaxQuant"]


@in_module_loop
async def test_rawtools_and_maxquant_run(api: Api, world: World) -> None:
    q = by_label(await export(api))[world.runs["sa001"]]
    m = metrics(q)
    assert m["MS:4000059"]["value"] == 7499 and m["MS:4000060"]["value"] == 23404
    assert m["MS:1003327"]["value"] == 19
    assert m["MS:4000067"]["value"] == pytest.approx(89.9249755405167 * 60)
    assert [sw.get("value", sw["name"]) for sw in q["metadata"]["analysisSoftware"]] == [
        f"qcdaemon {__version__}", "RawTools", "MaxQuant"]


@in_module_loop
async def test_runs_without_a_mappable_metric_are_left_out_and_named(api: Api, world: World) -> None:
    doc = await export(api, LAB)
    assert_valid_structure(doc)
    assert list(by_label(doc)) == [world.runs["lab_user"]]
    description = doc["mzQC"]["description"]
    for label in ("lab_member", "dup_a", "dup_b"):
        assert world.runs[label] in description


# ------------------------------------------------------------------------------- selection


@in_module_loop
async def test_run_keys_select_runs(api: Api, world: World) -> None:
    keys = [world.runs["small2"], world.runs["sa001"]]
    doc = await export(api, {**DEMO, "run_keys": keys})
    assert list(by_label(doc)) == keys  # acquisition order: small2 (2018), then sa001 (2019)
    doc = await export(api, {**DEMO, "run_keys": [world.runs["small2"]]}, enc="urlencoded")
    assert list(by_label(doc)) == [world.runs["small2"]]


@in_module_loop
async def test_data_range_keeps_the_newest_runs(api: Api) -> None:
    newest = (await api.qc(data_range=2, columns=["RunKey"]))["RunKey"]
    assert list(by_label(await export(api, {**DEMO, "data_range": 2}))) == newest


@in_module_loop
@pytest.mark.parametrize(("extra", "status"), [
    ({"run_keys": ["rf999999"]}, 404),
    ({"run_keys": ["nonsense"]}, 404),
    ({"run_keys": ["rf1"], "data_range": 1}, 400),
    ({"data_range": "x"}, 400),
    ({"data_range": 0}, 404),  # nothing selected: an mzQC file needs a run
])
async def test_bad_selection(api: Api, extra: dict, status: int) -> None:
    r = await api.call("/api/mzqc", {**DEMO, **extra})
    assert r.status == status and r.data["detail"]


@in_module_loop
async def test_run_key_of_another_pipeline_is_404(api: Api, world: World) -> None:
    r = await api.call("/api/mzqc", {**DEMO, "run_keys": [world.runs["lab_user"]]})
    assert r.status == 404


@in_module_loop
async def test_pipeline_without_runs_is_404(api: Api) -> None:
    r = await api.call("/api/mzqc", {"project": SHARED_PROJECT, "pipeline": EMPTY_PIPELINE})
    assert r.status == 404 and "no runs" in r.data["detail"]


# ------------------------------------------------------------------------------- scoping


@in_module_loop
async def test_another_labs_pipeline_is_403(api: Api) -> None:
    r = await api.call("/api/mzqc", DEMO, who=OTHER)
    assert r.status == 403 and r.data["detail"]
    assert "Content-Disposition" not in r.headers


@in_module_loop
async def test_without_a_token_is_401(api: Api) -> None:
    r = await api.call("/api/mzqc", DEMO, who=None)
    assert r.status == 401 and r.headers["WWW-Authenticate"] == "Token"


@in_module_loop
async def test_project_members_may_export(api: Api) -> None:
    assert_valid_structure(await export(api, who=MEMBER))


@in_module_loop
@pytest.mark.parametrize("missing", ["project", "pipeline"])
async def test_missing_scope_field_is_400(api: Api, missing: str) -> None:
    r = await api.call("/api/mzqc", {k: v for k, v in DEMO.items() if k != missing})
    assert r.status == 400 and missing in r.data["detail"]


@in_module_loop
async def test_get_is_405(api: Api) -> None:
    r = await api.call("/api/mzqc", method="GET")
    assert r.status == 405 and "POST" in r.headers["Allow"]


# ------------------------------------------------------------------------------- JSON schema


# The parts of HUPO-PSI/mzQC schema/mzqc_schema.json (v1.0.0) that constrain what we write.
_CV_PARAM = {
    "type": "object",
    "properties": {"accession": {"type": "string", "pattern": "^[A-Z]+:[A-Z0-9]+$"},
                   "name": {"type": "string"}, "description": {"type": "string"}, "value": {}},
    "required": ["accession", "name"],
}
MZQC_SCHEMA_SUBSET = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"mzQC": {
        "type": "object",
        "properties": {
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
            "creationDate": {"type": "string", "format": "date-time"},
            "description": {"type": "string"},
            "runQualities": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/baseQuality"}},
            "controlledVocabularies": {"type": "array", "minItems": 1, "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "uri": {"type": "string", "format": "uri"},
                               "version": {"type": "string"}},
                "additionalProperties": False, "required": ["name", "uri"]}},
        },
        "additionalProperties": False,
        "anyOf": [{"required": ["runQualities"]}, {"required": ["setQualities"]}],
        "required": ["version", "creationDate", "controlledVocabularies"],
    }},
    "additionalProperties": False,
    "required": ["mzQC"],
    "definitions": {
        "cvParameter": _CV_PARAM,
        "baseQuality": {
            "type": "object",
            "properties": {
                "metadata": {"$ref": "#/definitions/metadata"},
                "qualityMetrics": {"type": "array", "minItems": 1, "items": {"allOf": [
                    {"$ref": "#/definitions/cvParameter"},
                    {"properties": {"unit": {"anyOf": [
                        {"$ref": "#/definitions/cvParameter"},
                        {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/cvParameter"}}]}}}]}},
            },
            "additionalProperties": False,
            "required": ["metadata", "qualityMetrics"],
        },
        "metadata": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "inputFiles": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"}, "location": {"type": "string", "format": "uri"},
                        "fileFormat": {"$ref": "#/definitions/cvParameter"},
                        "fileProperties": {"type": "array", "minItems": 1,
                                           "items": {"$ref": "#/definitions/cvParameter"}}},
                    "additionalProperties": False,
                    "required": ["name", "location", "fileFormat"]}},
                "analysisSoftware": {"type": "array", "minItems": 1, "items": {"allOf": [
                    {"$ref": "#/definitions/cvParameter"},
                    {"properties": {"version": {"type": "string"}, "uri": {"type": "string", "format": "uri"}},
                     "required": ["version", "uri"]}]}},
                "cvParameters": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/cvParameter"}},
            },
            "additionalProperties": False,
            "required": ["inputFiles", "analysisSoftware"],
        },
    },
}


@in_module_loop
@pytest.mark.parametrize("body", [DEMO, LAB], ids=["demo", "lab"])
async def test_validates_against_the_schema(api: Api, body: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = await export(api, body)
    checker = jsonschema.FormatChecker()
    validator = jsonschema.Draft7Validator(MZQC_SCHEMA_SUBSET, format_checker=checker)
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]
    if "date-time" in checker.checkers:  # the format is checked when rfc3339-validator is installed
        assert not validator.is_valid({"mzQC": {**doc["mzQC"], "creationDate": "2025-01-02T03:04:05"}})


# ------------------------------------------------------------------------------- build_mzqc directly


T0 = dt.datetime(2024, 5, 6, 7, 8, 9)
PIPE = {"slug": "p", "project_slug": "x"}


def run(rid: int, name: str, **kw: Any) -> dict[str, Any]:
    return {"id": rid, "run_key": f"rf{rid}", "name": name, "stored_path": None, "sha256": None,
            "acquired_at": None, **kw}


def test_build_names_locations_and_properties() -> None:
    runs = [
        run(1, "dup.raw", stored_path="/data/a b/dup.raw", sha256="AB" * 32, acquired_at=T0),
        run(2, "DUP.raw", stored_path="/data/a b/dup.raw"),
        run(3, "win.raw", stored_path="D:\\Data\\QC\\win.raw"),
        run(4, "gone.raw", stored_path="relative/gone.raw"),
    ]
    values = {r["id"]: [("native", "NumMs1Scans", 10), ("native", "InstrumentModel", "Orbitrap Exploris 480")]
              for r in runs}
    doc = build_mzqc(runs, values, pipeline=PIPE, created=dt.datetime(2025, 1, 2, 3, 4, 5, 678,
                                                                          tzinfo=dt.timezone(dt.timedelta(hours=2))),
                     version="9.9.9")
    assert_valid_structure(doc)
    assert doc["mzQC"]["creationDate"] == "2025-01-02T01:04:05Z"
    files = [q["metadata"]["inputFiles"][0] for q in doc["mzQC"]["runQualities"]]
    assert [f["name"] for f in files] == ["dup (rf1).raw", "DUP (rf2).raw", "win.raw", "gone.raw"]
    assert [f["location"] for f in files] == [
        "file:///data/a%20b/dup.raw", "file:///data/a%20b/dup.raw#rf2", "file:///D:/Data/QC/win.raw", "rf4"]
    props = {p["accession"]: p["value"] for p in files[0]["fileProperties"]}
    assert props == {"MS:1000747": "2024-05-06T07:08:09Z", "MS:1003151": "ab" * 32,
                     "MS:1000031": "Orbitrap Exploris 480"}
    # only qcdaemon computed these (native values)
    assert [sw["value"] for sw in doc["mzQC"]["runQualities"][0]["metadata"]["analysisSoftware"]] == [
        "qcdaemon 9.9.9"]


def test_build_keeps_only_values_of_the_right_type() -> None:
    values = {1: [
        ("native", "NumMs1Scans", 12),
        ("rawtools", "NumMs1Scans", -1),  # RawTools wins over native, and -1 is a placeholder, not a count
        ("rawtools", "NumMs2Scans", 3.5),
        ("rawtools", "TotalAnalysisTime(min)", None),
        ("maxquant", "N_protein_groups", "not detected"),
        ("maxquant", "MS/MS Identified", True),
        ("maxquant", "Uncalibrated - Calibrated m/z [ppm] (ave)", 0.25),
        ("maxquant", "Uncalibrated - Calibrated m/z [Da] (ave)", 0.001),  # Da: no PSI-MS term
        ("rawtools", "MedianMassDrift(ppm)", 2),  # a median: no PSI-MS term
        ("native", "PeakCapacity", 30.0),
    ]}
    doc = build_mzqc([run(1, "a.raw")], values, pipeline=PIPE, created=T0, version="1")
    [q] = doc["mzQC"]["runQualities"]
    got = {m["accession"]: (m["name"], m["value"], m["unit"]["name"]) for m in q["qualityMetrics"]}
    assert got == {"MS:4000178": ("precursor ppm deviation mean", 0.25, "parts per million")}
    assert doc["mzQC"]["creationDate"] == "2024-05-06T07:08:09Z"  # naive means UTC


def test_build_without_any_mappable_metric_raises_not_found() -> None:
    with pytest.raises(NotFound):
        build_mzqc([run(1, "a.raw")], {1: [("rawtools", "PeakCapacity", 12.5)]}, pipeline=PIPE, created=T0,
                   version="1")
    with pytest.raises(NotFound):
        build_mzqc([], {}, pipeline=PIPE, created=T0, version="1")


@pytest.mark.parametrize(("path", "uri"), [
    ("/srv/raw/x.raw", "file:///srv/raw/x.raw"),
    ("C:\\Raw Files\\x.RAW", "file:///C:/Raw%20Files/x.RAW"),
    ("\\\\nas\\share\\x.raw", "file://nas/share/x.raw"),
    ("x.raw", None), ("", None), (None, None),
])
def test_file_uri(path: str | None, uri: str | None) -> None:
    assert file_uri(path) == uri


def test_a_searched_run_lists_the_fasta_and_sage_and_uses_the_search_counts() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    search = [("search", "SearchPsms", 60), ("search", "SearchPeptides", 42), ("search", "SearchProteinGroups", 0),
              ("search", "SearchEngine", "Sage (sagepy 0.4.6)"), ("search", "SearchFasta", "yeast.fasta.gz")]
    pipe = {**PIPE, "fasta_path": "/db/yeast.fasta.gz"}
    doc = build_mzqc([run(1, "a.raw", stored_path="/raw/a.raw"), run(2, "b.raw")],
                     {1: search, 2: [*search, ("maxquant", "MS/MS Identified", 7179)]},
                     pipeline=pipe, created=T0, version="1.0.0")
    assert_valid_structure(doc)
    validator = jsonschema.Draft7Validator(MZQC_SCHEMA_SUBSET)
    assert not list(validator.iter_errors(doc))
    a, b = doc["mzQC"]["runQualities"]
    assert [f["fileFormat"]["accession"] for f in a["metadata"]["inputFiles"]] == ["MS:1000563", "MS:1001348"]
    assert a["metadata"]["inputFiles"][1] == {"name": "yeast.fasta.gz", "location": "file:///db/yeast.fasta.gz",
                                              "fileFormat": {"accession": "MS:1001348", "name": "FASTA format"}}
    sage = [s for s in a["metadata"]["analysisSoftware"] if s.get("value") == "Sage"]
    assert sage and sage[0]["version"] == "sagepy 0.4.6"
    counts = {m["accession"]: m["value"] for m in a["qualityMetrics"]}
    assert counts == {"MS:1003251": 60, "MS:1003250": 42, "MS:1003327": 0}
    # MaxQuant's count comes first when both ran (a term appears once per run)
    counts_b = {m["accession"]: m["value"] for m in b["qualityMetrics"]}
    assert counts_b["MS:1003251"] == 7179 and counts_b["MS:1003250"] == 42
