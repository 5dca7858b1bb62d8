"""The ingest writes with fewer statements (issue 13): what each one returns and leaves behind is
what the longer way gave: ``create_run``'s row is ``run()``'s and its state ``_refresh_run``'s,
a source's values put back around another's merge as ``qc_cells``' migration merges them, and the
protein dictionary's copy in memory survives a rolled-back transaction."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import lab_pipeline

from qcdaemon.errors import NotFound
from qcdaemon.store import Store
from qcdaemon.store.schema import MIGRATIONS
from qcdaemon.tools.maxquant_parse import ProteinGroup


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "data" / "qcdaemon.duckdb")
    lab_pipeline(s)
    return s


def pipeline(store: Store) -> int:
    return int(store.scalar("SELECT min(id) FROM pipelines"))


PLANS = [
    [],
    ["native", "rawtools"],
    [("native", None), ("rawtools", "RawTools is not configured"), ("maxquant", None)],
    [("native", "switched off"), ("rawtools", "not configured")],  # every stage skipped
]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("owner", [True, False])
def test_create_run_returns_what_run_reads_and_refresh_would_derive(store: Store, plan: list, owner: bool) -> None:
    uid = store.scalar("SELECT min(id) FROM users") if owner else None
    ledger = {"watch_path": "/w", "path": "/w/a.raw", "size": 5, "mtime_ns": 7, "sha256": "ab"}
    got = store.create_run(pipeline(store), "a.raw", source="watch", owner_id=uid, stored_path="/s/a.raw", size=5,
                           sha256="ab", stages=plan, state="done", acquired_at=dt.datetime(2024, 1, 2, 3, 4, 5),
                           ledger=ledger)  # type: ignore[arg-type]
    again = store.create_run(pipeline(store), "b.raw", source="watch", owner_id=uid, stages=plan)  # names kept
    for row in (got, again):
        assert row == store.run(row["id"]) and list(row) == list(store.run(row["id"]))
        before = store.run(row["id"])["state"]
        store._refresh_run(row["id"])  # the state the stages give, derived again from the stored stages
        assert store.run(row["id"])["state"] == before
    assert got["owner_email"] == ("lab@example.org" if owner else None) and got["pipeline_slug"] == "qc"
    assert store.scalar("SELECT state FROM files WHERE run_id = ?", [got["id"]]) == got["state"]
    assert got["state"] == ("done" if not plan else "queued" if any(
        isinstance(s, str) or s[1] is None for s in plan) else "done")


def test_create_run_of_a_missing_pipeline_creates_nothing(store: Store) -> None:
    with pytest.raises(NotFound):
        store.create_run(9999, "a.raw", source="watch", owner_id=None, stages=["native"])
    assert store.scalar("SELECT count(*) FROM runs") == 0 and store.scalar("SELECT count(*) FROM stages") == 0


def cells_by_migration(store: Store, run_id: int) -> list[tuple]:
    """The run's merged cells as migration ``qc_cells`` computes them in SQL from its values."""
    sql = next(sql for name, sql in MIGRATIONS if name == "qc_cells")
    select = sql[sql.index("INSERT INTO qc_cells") + len("INSERT INTO qc_cells"):].strip().rstrip(";")
    return sorted(store.con.execute(f"SELECT * FROM ({select}) WHERE run_id = ?", [run_id]).fetchall())


def test_each_source_written_again_leaves_the_others_and_the_merge(store: Store) -> None:
    rid = store.create_run(pipeline(store), "a.raw", source="watch", owner_id=None, state="done")["id"]
    store.put_qc_values(rid, "rawtools", {"MS1": 1.5, "Shared": None, "Only RT": "x"})
    store.put_qc_values(rid, "native", {"Shared": 2, "MS1": 3.0})
    store.put_maxquant(rid, {"Peptides": 10, "Shared": [1, 2]}, [])
    store.put_qc_values(rid, "rawtools", {"MS1": 7.5, "Shared": 4})  # a re-run stage overwrites its own only
    assert store.qc_values([rid]) == [
        (rid, "maxquant", "Peptides", 10), (rid, "maxquant", "Shared", [1, 2]),
        (rid, "native", "Shared", 2), (rid, "native", "MS1", 3.0),
        (rid, "rawtools", "MS1", 7.5), (rid, "rawtools", "Shared", 4),
    ]
    stored = sorted(store.con.execute("SELECT * FROM qc_cells WHERE run_id = ?", [rid]).fetchall())
    assert stored == cells_by_migration(store, rid) and len(stored) == 3
    store.put_qc_values(rid, "maxquant", {})  # a source's values dropped (as the hub does)
    assert {s for _, s, _, _ in store.qc_values([rid])} == {"native", "rawtools"}
    assert sorted(store.con.execute("SELECT * FROM qc_cells WHERE run_id = ?", [rid]).fetchall()) == \
        cells_by_migration(store, rid)


def group(ids: str) -> ProteinGroup:
    return ProteinGroup(majority_protein_ids=ids, fasta_headers=None, score=1.0, intensity=2.0, contaminant=False,
                        reverse=False, only_by_site=False, reporter_corrected=[1.0], extra={})


def test_pairs_of_a_transaction_that_rolled_back_after_they_were_used_again_are_not_kept(store: Store) -> None:
    """Within one transaction the copy's new pairs are used without a check (a group of calls);
    once that transaction rolled back, the next one reads the dictionary again."""
    rid = store.create_run(pipeline(store), "a.raw", source="watch", owner_id=None, state="done")["id"]
    store.put_protein_groups(rid, [group("P1")])
    store.put_protein_groups(rid, [group("P1")])  # a later transaction: P1 known committed
    with pytest.raises(RuntimeError), store.transaction():
        store.put_protein_groups(rid, [group("NEW"), group("P1")])
        store.put_protein_groups(rid, [group("NEW"), group("P2")])  # same transaction: copy used as is
        raise RuntimeError("the group fails")
    assert store.scalar("SELECT count(*) FROM proteins") == 1
    store.put_protein_groups(rid, [group("P2"), group("NEW"), group("P1")])
    pids = store.con.execute("SELECT g.majority_ids, p.majority_ids FROM protein_groups g"
                             " JOIN proteins p ON p.pid = g.pid ORDER BY g.idx").fetchall()
    assert pids == [("P2", "P2"), ("NEW", "NEW"), ("P1", "P1")]
    assert store._protein_ids(pa.table({"majority_ids": ["P1"], "fasta_headers": pa.array([None], pa.string())})
                              ).to_pylist() == [store.scalar("SELECT pid FROM proteins WHERE majority_ids = 'P1'")]
