"""The DuckDB store: migrations, persistence, the single-writer lock, and query semantics."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from conftest import REPO, subprocess_env

from qcdaemon.errors import Conflict
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.schema import MIGRATIONS


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "qcdaemon.duckdb"


def test_migrations_apply_once_and_are_idempotent_on_reopen(db: Path) -> None:
    store = Store(db)
    assert store.schema_version() == len(MIGRATIONS)
    store.close()
    for _ in range(2):
        store = Store(db)
        assert store.schema_version() == len(MIGRATIONS)
        rows = store.rows("SELECT version, name FROM schema_version ORDER BY version")
        assert rows == [{"version": i, "name": name} for i, (name, _sql) in enumerate(MIGRATIONS, start=1)]
        store.close()


def test_a_partly_migrated_database_is_completed(db: Path) -> None:
    """A database that recorded fewer migrations gets the missing ones, in order, once."""
    store = Store(db)
    store.close()
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM schema_version WHERE version = ?", [len(MIGRATIONS)])
    if len(MIGRATIONS) == 1:
        # the initial migration creates everything: undo it so that it can run again
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_name <> "
                                    "'schema_version'").fetchall():
            con.execute(f'DROP TABLE "{table}"')
        for (seq,) in con.execute("SELECT sequence_name FROM duckdb_sequences()").fetchall():
            con.execute(f'DROP SEQUENCE "{seq}"')
    con.close()
    store = Store(db)
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert store.scalar("SELECT count(*) FROM schema_version") == len(MIGRATIONS)
        assert store.scalar("SELECT count(*) FROM users") == 0
    finally:
        store.close()


def test_everything_persists_across_reopen(db: Path) -> None:
    store = Store(db)
    uid = store.create_user("Lab@Example.org", "scrypt$x", is_admin=True)
    pid = store.create_project("Lab", "lab", "desc", uid)
    store.add_member(pid, uid)
    pl = store.create_pipeline(pid, "QC", "qc", "/tmp/qc", rawtools_args="-p")
    run = store.create_run(pl["id"], "a.raw", source="upload", owner_id=uid, stages=["native", ("rawtools", "off")])
    store.put_qc_values(run["id"], "native", {"TotalScans": 95, "Instrument": "Velos", "When": dt.datetime(2024, 1, 2)})
    store.put_token(uid, "d" * 64, "sealed")
    store.close()

    store = Store(db)
    try:
        user = store.user_by_email("lab@example.org")
        assert user is not None and user["id"] == uid and user["is_admin"] is True
        assert store.project_by_slug("lab")["description"] == "desc"
        assert store.find_pipeline("lab/qc")["uuid"] == pl["uuid"]
        assert store.find_pipeline(pl["uuid"])["id"] == pl["id"]
        again = store.run(run["id"])
        assert again["name"] == "a.raw" and again["owner_email"] == "lab@example.org"
        assert [(s["stage"], s["state"], s["error"]) for s in store.stages(run["id"])] == [
            ("native", "queued", None), ("rawtools", "skipped", "off")]
        assert store.qc_values([run["id"]]) == [
            (run["id"], "native", "TotalScans", 95), (run["id"], "native", "Instrument", "Velos"),
            (run["id"], "native", "When", "2024-01-02T00:00:00")]
        assert store.user_by_token_digest("d" * 64)["id"] == uid
        # ids keep counting after a reopen (sequences persist)
        assert store.create_user("second@example.org", None) == uid + 1
    finally:
        store.close()


def test_uniqueness_is_reported_as_conflict(db: Path) -> None:
    store = Store(db)
    try:
        store.create_user("a@example.org", None)
        with pytest.raises(Conflict):
            store.create_user("A@example.org", None)
        pid = store.create_project("Lab", "lab", "", None)
        with pytest.raises(Conflict):
            store.create_project("Lab", "lab-2", "", None)
        store.create_pipeline(pid, "QC", "qc", "/x", rawtools_args="")
        with pytest.raises(Conflict):
            store.create_pipeline(pid, "QC again", "qc", "/y", rawtools_args="")
    finally:
        store.close()


def test_selected_runs_order_and_newest_n(db: Path) -> None:
    store = Store(db)
    try:
        pid = store.create_project("Lab", "lab", "", None)
        pl = store.create_pipeline(pid, "QC", "qc", "/x", rawtools_args="")
        t = dt.datetime(2024, 5, 1)
        made = {}
        for name, acquired in [("c", t + dt.timedelta(days=2)), ("a", t), ("none", None), ("b", t + dt.timedelta(days=1)),
                               ("b-twin", t + dt.timedelta(days=1))]:
            made[name] = store.create_run(pl["id"], name + ".raw", source="upload", owner_id=None,
                                          acquired_at=acquired)["id"]
        order = [r["name"] for r in store.selected_runs(pl["id"], None)]
        # acquisition time, ties by id, runs without a date by ingestion time (now: newest)
        assert order == ["a.raw", "b.raw", "b-twin.raw", "c.raw", "none.raw"]
        assert [r["name"] for r in store.selected_runs(pl["id"], 2)] == ["c.raw", "none.raw"]
        assert store.selected_runs(pl["id"], 0) == []
        assert len(store.selected_runs(pl["id"], 10**30)) == 5
    finally:
        store.close()


def test_put_qc_values_replaces_per_source(db: Path) -> None:
    store = Store(db)
    try:
        pid = store.create_project("Lab", "lab", "", None)
        pl = store.create_pipeline(pid, "QC", "qc", "/x", rawtools_args="")
        rid = store.create_run(pl["id"], "a.raw", source="upload", owner_id=None)["id"]
        store.put_qc_values(rid, "native", {"A": 1, "B": 2})
        store.put_qc_values(rid, "rawtools", {"A": 10})
        store.put_qc_values(rid, "native", {"A": 3})  # a re-run stage overwrites its own source only
        assert sorted(store.qc_values([rid])) == [(rid, "native", "A", 3), (rid, "rawtools", "A", 10)]
    finally:
        store.close()


def test_a_failed_transaction_changes_nothing(db: Path) -> None:
    store = Store(db)
    try:
        pid = store.create_project("Lab", "lab", "", None)
        pl = store.create_pipeline(pid, "QC", "qc", "/x", rawtools_args="")
        with pytest.raises(Exception):
            # the second stage repeats the first: the primary key fails inside create_run's transaction
            store.create_run(pl["id"], "a.raw", source="upload", owner_id=None, stages=["native", "native"])
        assert store.runs_of(pl["id"]) == []
        assert store.scalar("SELECT count(*) FROM stages") == 0
    finally:
        store.close()


LOCK_PROBE = textwrap.dedent("""
    import sys, duckdb
    try:
        duckdb.connect(sys.argv[1]).close()
    except duckdb.IOException as exc:
        print("LOCKED:", exc)
        sys.exit(3)
    print("OPENED")
""")


def probe(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LOCK_PROBE, str(db)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=subprocess_env())


def test_a_second_process_cannot_open_the_file_while_it_is_held(db: Path) -> None:
    """Why the CLI talks to the running daemon instead of opening the database itself."""
    store = AsyncStore(db)
    try:
        held = probe(db)
        assert held.returncode == 3, held.stdout + held.stderr
        assert "lock" in held.stdout.lower()
        # qcdaemon's own Store turns that into StoreBusy, naming the file
        code = f"from pathlib import Path\nfrom qcdaemon.store import Store\nStore(Path({str(db)!r}))"
        busy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO,
                              env=subprocess_env())
        assert busy.returncode != 0 and "StoreBusy" in busy.stderr and str(db) in busy.stderr
    finally:
        store.close()
    free = probe(db)
    assert free.returncode == 0 and "OPENED" in free.stdout


async def test_async_store_runs_calls_on_its_thread(db: Path) -> None:
    store = AsyncStore(db)
    try:
        uid = await store.call(Store.create_user, "x@example.org", None)
        assert (await store.call(Store.user, uid))["email"] == "x@example.org"
        import threading

        names = await store.call(lambda s: threading.current_thread().name)
        assert names.startswith("duckdb")
        with pytest.raises(AttributeError):
            await store.no_such_method()
    finally:
        store.close()


async def test_snapshot_while_open_is_a_consistent_copy(db: Path, tmp_path: Path) -> None:
    store = AsyncStore(db)
    try:
        await store.call(Store.create_user, "snap@example.org", None)
        target = tmp_path / "snap.duckdb"
        await store.call(Store.snapshot, target)
    finally:
        store.close()
    copy = Store(target)
    try:
        assert copy.user_by_email("snap@example.org") is not None
        assert copy.schema_version() == len(MIGRATIONS)
    finally:
        copy.close()
