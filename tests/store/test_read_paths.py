"""The read routes' SQL assembly (``Store.*_json``) against the reference assembly in Python
(``qcdaemon.qc.qcdata``), the protein-groups migration, and the reader cursors of the gate.

The reference functions are the specification here: the SQL path must give the same JSON
document, key order included, on real parsed tool outputs and on the awkward cases (sources
overriding each other, a RawTools null over a native value, runs without values or without an
acquisition time, unknown columns, Windows paths).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import REPO

from qcdaemon.qc import qcdata
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.schema import MIGRATIONS
from qcdaemon.tools.maxquant_parse import parse_maxquant, parse_protein_groups
from qcdaemon.tools.rawtools_parse import parse_qc_data_table

DATA = REPO / "tests" / "data"
EX0 = DATA / "maxquant" / "tmt11" / "example-0"
EX1 = DATA / "maxquant" / "tmt11" / "example-1" / "proteinGroups.txt"
QC_TABLE = DATA / "rawtools" / "rawtools-docs-example" / "QcDataTable.csv"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, int]:
    store = Store(tmp_path_factory.mktemp("reads") / "data" / "qcdaemon.duckdb")
    uid = store.create_user("lab@example.org", None, True)
    pid = store.create_project("Lab", "lab", "", uid)
    pl = store.create_pipeline(pid, "QC", "qc", "/tmp/qc", rawtools_args="")["id"]
    other = store.create_pipeline(pid, "Other", "other", "/tmp/other", rawtools_args="")["id"]
    rows = parse_qc_data_table(QC_TABLE)
    mq = parse_maxquant(EX0)
    g0, g1 = parse_protein_groups(EX0 / "proteinGroups.txt.gz"), parse_protein_groups(EX1)
    t0 = dt.datetime(2024, 12, 30, 23, 59, 58, 123456)  # ISO week 1 of 2025, calendar year 2024

    def run(name: str, when: dt.datetime | None, path: str | None = None, owner: int | None = uid,
            pipeline: int = pl) -> int:
        return store.create_run(pipeline, name, source="watch", owner_id=owner, state="done", acquired_at=when,
                                stored_path=path)["id"]

    a = run("A-run.RAW", t0, "/data/in/A-run.RAW")
    store.put_qc_values(a, "native", {"TotalScans": 5, "Instrument": "native-only", "X_native": 1.5})
    store.put_qc_values(a, "rawtools", {**rows[0], "Instrument": None, "RawFilePath": "", "X_rt": "é/ü"})
    store.put_qc_values(a, "maxquant", mq)
    store.put_protein_groups(a, g0)
    b = run("b.raw", t0 - dt.timedelta(days=400), "C:\\lab\\in\\b.raw", owner=None)
    store.put_qc_values(b, "native", {"TotalScans": 7, "TMT3_extra_count": 4, "TMT10_extra_count": 2})
    store.put_qc_values(b, "zeta", {"TotalScans": 9, "Unknown col": [1, 2], "Flagged": "overridden"})
    store.put_qc_values(b, "maxquant", {"TotalScans": 8, "N_peptides": 3})
    store.put_protein_groups(b, g1)
    c = run("c-no-values.raw", None, None)
    store.set_run_fields([c], {"flagged": True, "use_downstream": None})
    d = run("d.raw", t0 + dt.timedelta(hours=5), "relative.raw")
    store.put_qc_values(d, "rawtools", {**rows[5], "RawFilePath": "/instrument/x"})
    store.put_protein_groups(d, g1[:7])
    e = run("e.raw", t0, "/other/e.raw", pipeline=other)
    store.put_qc_values(e, "rawtools", rows[1])
    return store, pl


def reference_qc(store: Store, pl: int, data_range: int | None, columns: list[str] | None) -> dict[str, Any]:
    runs = store.selected_runs(pl, data_range)
    return json.loads(json.dumps(qcdata.build_qc_data(runs, store.qc_values([r["id"] for r in runs]), columns)))


@pytest.mark.parametrize(("data_range", "columns"), [
    (None, None), (2, None), (1, None), (0, None),
    (None, ["Index", "TotalScans", "Nope", "RawFilePath", "Week", "TMT3_extra_count", "Index"]),
])
def test_qc_data_json_is_the_reference_answer(world: tuple[Store, int], data_range: int | None,
                                               columns: list[str] | None) -> None:
    store, pl = world
    fast = json.loads(store.qc_data_json(pl, data_range, columns))
    ref = reference_qc(store, pl, data_range, columns)
    assert list(fast) == list(ref)
    assert fast == ref
    if data_range is None and columns is None:
        assert fast["RawFile"] == ["b", "A-run", "d", "c-no-values"]  # by acquisition, then ingestion time


def test_qc_data_json_merges_as_documented(world: tuple[Store, int]) -> None:
    store, pl = world
    fast = json.loads(store.qc_data_json(pl, None, None))
    i = {name: n for n, name in enumerate(fast["RawFile"])}
    a, b = i["A-run"], i["b"]
    assert fast["Instrument"][a] == "native-only"  # RawTools' null does not hide native's value
    assert fast["TotalScans"][b] == 9  # "zeta" after "maxquant": the later source wins
    assert fast["Flagged"][b] is False  # run metadata over any value of that name
    assert fast["RawFilePath"][b] == "C:\\lab\\in" and fast["RawFilePath"][a] == "/data/in"
    assert fast["Week"][a] == "2024-01" and fast["Day"][a] == "2024-365"
    assert fast["MetricsEngine"][a] == "rawtools" and fast["MetricsEngine"][b] == "native"
    assert list(fast).index("TMT3_extra_count") < list(fast).index("TMT10_extra_count")


@pytest.mark.parametrize(("con", "rev"), [(False, False), (True, True), (True, False)])
def test_protein_names_json_is_the_reference_answer(world: tuple[Store, int], con: bool, rev: bool) -> None:
    store, pl = world
    ids = [r["id"] for r in store.selected_runs(pl, None)]
    ref = qcdata.protein_names_answer(store.protein_names(ids, con, rev))
    fast = json.loads(store.protein_names_json(ids, con, rev))
    assert fast == json.loads(json.dumps(ref)) and list(fast) == list(ref)
    assert json.loads(store.protein_names_json([], con, rev)) == {}


@pytest.mark.parametrize("columns", [
    ["Reporter intensity corrected"],
    ["Score", "Fasta headers", "Peptides", "Not A Column", "Sequence lengths", "Q-value", "Evidence IDs"],
    ["Reporter intensity corrected 0", "Reporter intensity corrected 3", "Reporter intensity corrected",
     "RunKey", "Intensity", "Score", "Score"],
    [],
])
def test_protein_groups_json_is_the_reference_answer(world: tuple[Store, int], columns: list[str]) -> None:
    store, pl = world
    runs = store.selected_runs(pl, None)
    names = store.protein_names([r["id"] for r in runs], False, False)
    wanted = [g["majority_ids"] for g in names[:5]] + [names[-1]["majority_ids"], "not there"]
    ref = qcdata.protein_groups_answer(store.protein_rows([r["id"] for r in runs], wanted),
                                       {r["id"]: r for r in runs}, columns)
    fast = json.loads(store.protein_groups_json([(r["id"], qcdata.stem(r["name"])) for r in runs], wanted, columns))
    assert fast and list(fast) == list(ref)
    assert fast == json.loads(json.dumps(ref))
    assert store.protein_groups_json([(r["id"], "x") for r in runs], ["not there"], columns) == b"{}"


def test_the_migration_keeps_the_standard_columns_of_old_protein_groups(tmp_path: Path) -> None:
    """A database at schema 1 (groups with the JSON ``extra`` blob) is migrated in place."""
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_version (version INTEGER, name VARCHAR, applied_at TIMESTAMP)")
    con.execute(MIGRATIONS[0][1])
    con.execute("INSERT INTO schema_version VALUES (1, ?, now())", [MIGRATIONS[0][0]])
    extra = {"Peptides": 7, "Sequence lengths": "12;13", "Q-value": 0.001, "Protein IDs": "P1;P2", "id": 3}
    con.execute("INSERT INTO protein_groups VALUES (5, 0, 'P1', '>P1', 2.5, 10.0, false, false, false, [1.0, 2.0], ?)",
                [json.dumps(extra)])
    con.close()
    store = Store(db)
    try:
        assert store.schema_version() == len(MIGRATIONS)
        [row] = store.protein_rows([5], ["P1"])
        assert row["extra"] == {"Peptides": 7, "Sequence lengths": "12;13", "Q-value": 0.001, "id": 3}
        assert row["reporter"] == [1.0, 2.0] and row["score"] == 2.5
        cols = {r["column_name"] for r in store.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'protein_groups'")}
        assert "extra" not in cols and "peptides" in cols
    finally:
        store.close()


async def test_a_read_runs_beside_the_writer_on_its_own_cursor(tmp_path: Path) -> None:
    astore = AsyncStore(tmp_path / "data" / "qcdaemon.duckdb")
    started, release = threading.Event(), threading.Event()

    def slow_read(store: Store) -> int:
        started.set()
        release.wait(10)
        return int(store.scalar("SELECT count(*) FROM users"))

    try:
        reading = asyncio.ensure_future(astore.read(slow_read))
        await asyncio.to_thread(started.wait, 10)
        uid = await asyncio.wait_for(astore.call(Store.create_user, "a@b.org", None), 5)  # not queued behind it
        assert (await asyncio.wait_for(astore.read(Store.user, uid), 5)) is not None  # the other reader sees it
        release.set()
        assert await reading == 1
    finally:
        release.set()
        astore.close()


def test_protein_cells_keep_their_json_types(tmp_path: Path) -> None:
    """Each stored cell decodes to the parsed value: ints stay ints, text with separators or
    non-ASCII survives, non-finite numbers become null (as the API answers them)."""
    from qcdaemon.tools.maxquant_parse import ProteinGroup

    cells = [7, 18.5, 100, "1;2;3", "é\x1f\"x", None, float("nan"), float("inf"), "NaN"]
    groups = [ProteinGroup(majority_protein_ids=f"P{i}", fasta_headers="", score=None, intensity=None,
                           contaminant=False, reverse=False, only_by_site=False, reporter_corrected=(),
                           extra={"Peptides": v, "id": i}) for i, v in enumerate(cells)]
    store = Store(tmp_path / "x.duckdb")
    try:
        store.put_protein_groups(1, groups)
        rows = store.protein_rows([1], [g.majority_protein_ids for g in groups])
        got = [r["extra"].get("Peptides") for r in rows]
        assert got == [7, 18.5, 100, "1;2;3", "é\x1f\"x", None, None, None, "NaN"]
        assert [type(v) for v in got[:3]] == [int, float, int]
        assert [r["extra"]["id"] for r in rows] == list(range(len(cells)))
    finally:
        store.close()


async def test_one_reader_serves_every_read_route_in_turn(world: tuple[Store, int], tmp_path: Path) -> None:
    """A read leaves no result pending on its cursor (a pending one makes the next read fail)."""
    store, pl = world
    copy = tmp_path / "copy.duckdb"
    store.checkpoint()
    copy.write_bytes(store.path.read_bytes())
    astore = AsyncStore(copy, readers=1)
    try:
        runs = await astore.read(Store.selected_runs, pl, None)
        ids = [r["id"] for r in runs]
        for _ in range(2):
            names = json.loads(await astore.read(Store.protein_names_json, ids, True, True))
            assert names["protein_names"]
            groups = await astore.read(Store.protein_groups_json, [(i, "x") for i in ids], names["protein_names"][:2],
                                       ["Score"])
            assert json.loads(groups)["Score"]
            assert json.loads(await astore.read(Store.qc_data_json, pl, None, None))["RawFile"]
    finally:
        astore.close()


def test_qc_data_json_fills_verdicts_per_run(world: tuple[Store, int]) -> None:
    store, pl = world
    runs = store.selected_runs(pl, None)
    verdicts = {runs[1]["id"]: ("fail", "TotalScans above 3 SD")}
    fast = json.loads(store.qc_data_json(pl, None, ["RunKey", "Verdict", "Verdict reasons"], verdicts))
    assert fast["Verdict"] == [None, "fail", None, None]
    assert fast["Verdict reasons"] == [None, "TotalScans above 3 SD", None, None]
    assert fast["RunKey"][1] == f"rf{runs[1]['id']}"


def test_cells_merged_at_ingest_are_those_the_migration_builds(world: tuple[Store, int], tmp_path: Path) -> None:
    """``qc_cells`` as the writes keep it (merged in Python, a run's first source without a read)
    equals migration 4's SQL rebuild over ``qc_values``, also after a source is written again
    and after one is written with no values."""
    store, _ = world
    extra = store.create_run(store.selected_runs(world[1], None)[0]["pipeline_id"], "again.raw", source="watch",
                             owner_id=None, state="done")["id"]
    store.put_qc_values(extra, "zeta", {"A": 1, "B": None, "TotalScans": 3})
    store.put_qc_values(extra, "rawtools", {"B": 2, "TotalScans": None, "C": "x"})
    store.put_qc_values(extra, "native", {"TotalScans": 4, "D": [1, 2]})
    store.put_qc_values(extra, "zeta", {"TotalScans": 5, "E": 1.5})  # written again: A is gone
    store.put_qc_values(extra, "alpha", {})
    kept = store.rows("SELECT run_id, name, value, okey FROM qc_cells ORDER BY run_id, name")
    rebuild = next(sql for name, sql in MIGRATIONS if name == "qc_cells")
    store.con.execute("BEGIN TRANSACTION")
    try:
        store.con.execute(rebuild)
        rebuilt = store.rows("SELECT run_id, name, value, okey FROM qc_cells ORDER BY run_id, name")
    finally:
        store.con.execute("ROLLBACK")
    assert kept == rebuilt
    mine = {r["name"]: r["value"] for r in kept if r["run_id"] == extra}
    assert mine == {"TotalScans": "5", "B": "2", "C": '"x"', "D": "[1, 2]", "E": "1.5"}
