"""The protein dictionary (``proteins``, migration ``protein_dictionary``): every stored protein
group carries the id of its (Majority protein IDs, Fasta headers) pair, whichever write stored it,
the migration backfills older files, and the protein routes answer from it what a plain
aggregation over the groups' own strings gives."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REPO, lab_pipeline

from qcdaemon.store import Store
from qcdaemon.store.schema import MIGRATIONS
from qcdaemon.tools.maxquant_parse import ProteinGroup, parse_maxquant, parse_protein_groups

DATA = REPO / "tests" / "data"
EX0 = DATA / "maxquant" / "tmt11" / "example-0"
EX1 = DATA / "maxquant" / "tmt11" / "example-1" / "proteinGroups.txt"


def group(ids: str, headers: str | None, score: float, *, con: bool = False) -> ProteinGroup:
    return ProteinGroup(majority_protein_ids=ids, fasta_headers=headers, score=score, intensity=score * 10,
                        contaminant=con, reverse=False, only_by_site=False, reporter_corrected=[score, 1.0],
                        extra={"Peptides": 2})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "data" / "qcdaemon.duckdb")
    lab_pipeline(s)
    return s


def run(store: Store, name: str) -> int:
    pl = store.scalar("SELECT min(id) FROM pipelines")
    return int(store.create_run(pl, name, source="watch", owner_id=None, state="done")["id"])


def consistent(store: Store) -> None:
    """Every group has the id of its own pair; each pair is in the dictionary once."""
    assert store.scalar("SELECT count(*) FROM protein_groups WHERE pid IS NULL") == 0
    assert store.scalar("SELECT count(*) FROM protein_groups g JOIN proteins p ON p.pid = g.pid"
                        " WHERE p.majority_ids <> g.majority_ids"
                        " OR p.fasta_headers IS DISTINCT FROM g.fasta_headers") == 0
    assert store.scalar("SELECT count(*) FROM proteins") == store.scalar(
        "SELECT count(*) FROM (SELECT DISTINCT majority_ids, fasta_headers FROM proteins)")
    assert store.scalar("SELECT count(*) FROM proteins") == store.scalar(
        "SELECT count(*) FROM (SELECT DISTINCT majority_ids, fasta_headers FROM protein_groups)")


def test_every_write_path_gives_each_group_its_protein_id(store: Store) -> None:
    g0 = parse_protein_groups(EX0 / "proteinGroups.txt.gz")
    a, b, c = run(store, "a.raw"), run(store, "b.raw"), run(store, "c.raw")
    store.put_protein_groups(a, g0[:100])
    store.put_protein_groups(a, g0[100:300], first_idx=100)  # a large table in parts, as the MaxQuant stage writes it
    store.put_maxquant(b, parse_maxquant(EX0), g0[50:400])
    store.put_protein_groups(c, [group("P1", None, 1.0), group("P1", ">P1 one", 2.0), group("P1", None, 3.0)])
    consistent(store)
    assert store.scalar("SELECT count(DISTINCT pid) FROM protein_groups WHERE run_id = ?", [c]) == 2
    before = store.scalar("SELECT count(*) FROM proteins")
    store.put_protein_groups(a, g0[:300])  # written again: no pair is added twice
    consistent(store)
    assert store.scalar("SELECT count(*) FROM proteins") == before


def test_the_migration_backfills_a_file_without_the_dictionary(store: Store, tmp_path: Path) -> None:
    g0, g1 = parse_protein_groups(EX0 / "proteinGroups.txt.gz"), parse_protein_groups(EX1)
    a, b = run(store, "a.raw"), run(store, "b.raw")
    store.put_protein_groups(a, g0)
    store.put_protein_groups(b, [*g1, group("CON__X", ">X", 9.0, con=True), group("REV__Y", None, 8.0)])
    ids = [a, b]
    answer = store.protein_names_json(ids, True, True)
    # the file as the version before the dictionary left it: groups without ids, no dictionary
    version = next(i for i, (name, _) in enumerate(MIGRATIONS, start=1) if name == "protein_dictionary")
    store.con.execute("DROP TABLE proteins")
    store.con.execute("ALTER TABLE protein_groups DROP COLUMN pid")
    store.con.execute("DELETE FROM schema_version WHERE version >= ?", [version])
    path = store.path
    store.close()
    again = Store(path)
    try:
        assert again.schema_version() == len(MIGRATIONS)
        consistent(again)
        assert again.protein_names_json(ids, True, True) == answer
        n = again.scalar("SELECT count(*) FROM proteins")
        again.con.execute(MIGRATIONS[version - 1][1])  # idempotent: a second run adds nothing
        assert again.scalar("SELECT count(*) FROM proteins") == n
        for flag, prefix in (("con_prefix", "CON__"), ("rev_prefix", "REV__")):
            assert again.scalar(f"SELECT count(*) FROM proteins WHERE {flag}") == again.scalar(
                "SELECT count(*) FROM (SELECT DISTINCT majority_ids, fasta_headers FROM protein_groups"
                " WHERE starts_with(majority_ids, ?))", [prefix]) > 0
    finally:
        again.close()


@pytest.mark.parametrize(("con", "rev"), [(False, False), (True, True), (True, False), (False, True)])
def test_protein_names_are_the_plain_aggregation_of_the_groups(store: Store, con: bool, rev: bool) -> None:
    """Independent basis: the groups' own strings grouped in SQL (the query before the dictionary)."""
    a, b = run(store, "a.raw"), run(store, "b.raw")
    g1 = parse_protein_groups(EX1)
    store.put_protein_groups(a, [*g1, group("CON__X", ">X", 9.0), group("Q1", None, 1.0), group("Q1", ">q", 1.5)])
    store.put_protein_groups(b, [*g1[:20], group("REV__Y", None, 8.0), group("Z", ">z", 7.0, con=True),
                                 group("Q1", None, 3.0)])
    where = ["run_id IN (?, ?)"]
    if con:
        where.append("NOT contaminant AND majority_ids NOT LIKE 'CON\\_\\_%' ESCAPE '\\'")
    if rev:
        where.append("NOT reverse AND majority_ids NOT LIKE 'REV\\_\\_%' ESCAPE '\\'")
    plain = store.rows(
        "SELECT majority_ids, fasta_headers, avg(score) AS score, avg(intensity) AS intensity FROM protein_groups"
        f" WHERE {' AND '.join(where)} GROUP BY majority_ids, fasta_headers"
        " ORDER BY score DESC NULLS LAST, majority_ids, fasta_headers", [a, b])
    assert store.protein_names([a, b], con, rev) == plain
    got = json.loads(store.protein_names_json([a, b], con, rev))
    assert got["protein_names"] == [r["majority_ids"] for r in plain]
    assert got["Fasta headers"] == [r["fasta_headers"] for r in plain]
    assert [h for n, h in zip(got["protein_names"], got["Fasta headers"], strict=True) if n == "Q1"] == [None, ">q"]


def test_protein_groups_select_by_name_every_pair_of_it(store: Store) -> None:
    """A name stored with two header texts is two dictionary entries: both are answered."""
    a = run(store, "a.raw")
    store.put_protein_groups(a, [group("Q1", None, 1.0), group("Q2", ">2", 2.0), group("Q1", ">q", 1.5)])
    got = json.loads(store.protein_groups_json([(a, "a")], ["Q1"], ["Score", "Fasta headers"]))
    assert got["Majority protein IDs"] == {"0": "Q1", "1": "Q1"}
    assert got["Score"] == {"0": 1.0, "1": 1.5} and got["Fasta headers"] == {"0": None, "1": ">q"}
    assert got["RawFile"] == {"0": "a", "1": "a"}


def test_a_rolled_back_batch_leaves_no_stale_protein_id(store: Store) -> None:
    """The writer's copy of the dictionary is checked before use: pairs a failed transaction
    added are gone, and written again they get ids the table holds."""
    a = run(store, "a.raw")
    store.put_protein_groups(a, [group("P1", None, 1.0)])
    store.con.execute("BEGIN TRANSACTION")  # a batch's ids taken, then its transaction fails
    ids = store._protein_ids(pa.table({"majority_ids": ["NEW", "P1"], "fasta_headers": [">n", None]}))
    assert store.scalar("SELECT count(*) FROM proteins") == 2 and len(set(ids.to_pylist())) == 2
    store.con.execute("ROLLBACK")
    assert store.scalar("SELECT count(*) FROM proteins") == 1
    store.put_protein_groups(a, [group("NEW", ">n", 2.0), group("P1", None, 1.0)])
    consistent(store)
    got = json.loads(store.protein_names_json([a], False, False))
    assert got["protein_names"] == ["NEW", "P1"] and got["Score"] == [2.0, 1.0]
