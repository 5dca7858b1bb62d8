"""The store's quality-control tables on a real DuckDB file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from qcdaemon.errors import Conflict, NotFound
from qcdaemon.store import Store


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "qc.duckdb")
    yield s
    s.close()


def _pipeline(store: Store) -> tuple[int, int]:
    uid = store.create_user("lab@example.org", None)
    proj = store.create_project("Lab", "lab", "", uid)
    p = store.create_pipeline(proj, "HeLa", "hela", "/x", rawtools_args="-p", created_by=uid)
    return uid, p["id"]


def test_guide_sets_annotations_exclusions_settings_round_trip(tmp_path: Path):
    store = Store(tmp_path / "qc.duckdb")
    uid, pid = _pipeline(store)
    t0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    g = store.add_guide_set(pid, label="first week", start=t0, end=t0 + dt.timedelta(days=7),
                            run_keys=None, created_by=uid)
    assert g["start_at"] == dt.datetime(2026, 3, 1, 6, 0)  # stored as naive UTC
    g2 = store.add_guide_set(pid, label="", start=None, end=None, run_keys=["rf1", "rf2"], created_by=uid)
    assert [x["run_keys"] for x in store.guide_sets_of(pid)] == [None, ["rf1", "rf2"]]
    store.delete_guide_set(pid, g["id"])
    assert [x["id"] for x in store.guide_sets_of(pid)] == [g2["id"]]
    with pytest.raises(NotFound):
        store.delete_guide_set(pid, g["id"])

    kinds = {k["name"]: k["resets_baseline"] for k in store.annotation_kinds()}
    assert kinds["column_change"] is True and kinds["maintenance"] is False and len(kinds) == 6
    store.add_annotation_kind("spray_needle", "Spray needle changed", True)
    with pytest.raises(Conflict):
        store.add_annotation_kind("spray_needle", "again", False)
    a = store.add_annotation(pid, kind="column_change", at=t0, text="new C18", author_id=uid)
    assert a["author"] == "lab@example.org" and a["happened_at"] == dt.datetime(2026, 3, 1, 6, 0)
    assert [x["text"] for x in store.annotations_of(pid)] == ["new C18"]

    run = store.create_run(pid, "a.raw", source="upload", owner_id=uid)
    store.set_exclusions(pid, [run["id"]], "NumMs2Scans", excluded=True, reason="spray", created_by=uid)
    store.set_exclusions(pid, [run["id"]], "NumMs2Scans", excluded=True, reason="spray", created_by=uid)
    assert [(e["run_key"], e["metric"]) for e in store.exclusions_of(pid)] == [(run["run_key"], "NumMs2Scans")]
    store.set_exclusions(pid, [run["id"]], "NumMs2Scans", excluded=False)
    assert store.exclusions_of(pid) == []

    store.put_metric_settings(pid, "NumMs2Scans", rules=[{"rule": "robust"}], overrides={"shown": True},
                              updated_by=uid)
    store.put_metric_settings(pid, "NumMs2Scans", rules=[{"rule": "westgard"}], overrides=None, updated_by=uid)
    (ms,) = store.metric_settings_of(pid)
    assert ms["rules"] == [{"rule": "westgard"}] and ms["overrides"] is None
    store.put_metric_settings(pid, "NumMs2Scans", rules=None, overrides=None, updated_by=uid)
    assert store.metric_settings_of(pid) == []
    store.put_pipeline_qc_settings(pid, auto_guide_runs=10, offline_hours=24.0, updated_by=uid)
    store.put_pipeline_qc_settings(pid, auto_guide_runs=12, offline_hours=None, updated_by=uid)
    assert store.pipeline_qc_settings(pid)["auto_guide_runs"] == 12

    store.close()
    reopened = Store(tmp_path / "qc.duckdb")
    try:
        assert len(reopened.annotation_kinds()) == 7
        assert reopened.pipeline_qc_settings(pid)["auto_guide_runs"] == 12
    finally:
        reopened.close()


def test_verdicts_replace_and_go_with_their_run(store: Store):
    uid, pid = _pipeline(store)
    r1 = store.create_run(pid, "a.raw", source="upload", owner_id=uid)
    r2 = store.create_run(pid, "b.raw", source="upload", owner_id=uid)
    v = lambda rid, word: {"run_id": rid, "verdict": word, "summary": word, "detail": {"reasons": []},  # noqa: E731
                           "guide_set": "auto-1"}
    store.put_verdicts(pid, [v(r1["id"], "pass"), v(r2["id"], "fail")])
    store.put_verdicts(pid, [v(r2["id"], "warn")])
    got = store.verdicts_of(pid)
    assert {k: x["verdict"] for k, x in got.items()} == {r1["id"]: "pass", r2["id"]: "warn"}
    assert got[r2["id"]]["detail"] == {"reasons": []}
    store.put_verdicts(pid, [v(r1["id"], "fail")], replace_all=True)
    assert {k: x["verdict"] for k, x in store.verdicts_of(pid).items()} == {r1["id"]: "fail"}
    assert list(store.verdicts_of(pid, [r2["id"]])) == []
    store.set_run_fields([r1["id"]], {"use_downstream": False})
    runs = store.qc_runs(pid)
    assert [(r["run_key"], r["rejected"]) for r in runs] == [(r1["run_key"], True), (r2["run_key"], False)]
    store.delete_run(r1["id"])
    assert store.verdicts_of(pid) == {}


def test_metric_values_filtered_by_name(store: Store):
    uid, pid = _pipeline(store)
    r = store.create_run(pid, "a.raw", source="upload", owner_id=uid)
    store.put_qc_values(r["id"], "rawtools", {"NumMs2Scans": 10, "RawFile": "a.raw", "X": None})
    assert store.qc_metric_values([r["id"]], ["NumMs2Scans", "X"]) == [
        (r["id"], "rawtools", "NumMs2Scans", 10), (r["id"], "rawtools", "X", None)]
    assert store.qc_metric_values([r["id"]], []) == []
    assert len(store.qc_metric_values([r["id"]])) == 3
