"""The column-wise recomputation (values merged in SQL, verdicts from numpy columns, only the runs
from a new guide set on) gives exactly the verdicts of the run-by-run path (each run's values
merged in Python by qcdata.merge_run_values, evaluate_pipeline over them), on a real store."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from conftest import TEST_DATA

from qcdaemon.qc.verdicts import evaluate_pipeline, judged_columns
from qcdaemon.service.qcinputs import load_inputs, with_values
from qcdaemon.service.recording import ID_SOURCES, _stored, recompute_sync
from qcdaemon.store import Store
from qcdaemon.tools.rawtools_parse import parse_qc_data_table

HELA = TEST_DATA / "rawtools" / "rawtools-docs-example" / "QcDataTable.csv"
T0 = dt.datetime(2024, 3, 1, 8, 0)
MS1, IDS = "Ms1MedianSummedIntensity", "IdentificationRate(IDs/Ms2Scan)"


def build(path: Path) -> tuple[Store, int, list[int]]:
    store = Store(path)
    uid = store.create_user("qc@example.org", None)
    proj = store.create_project("Lab", "lab", "", uid)
    pid = store.create_pipeline(proj, "HeLa", "hela", str(path.parent), rawtools_args="", created_by=uid)["id"]
    ids = []
    for i, row in enumerate(parse_qc_data_table(HELA)):
        run = store.create_run(pid, f"hela-{i}.raw", source="upload", owner_id=uid, state="done",
                               acquired_at=T0 + dt.timedelta(hours=i))
        values = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()}
        if i % 7 == 3:  # native wrote the intensity too, RawTools left it null: native's counts
            values[MS1] = None
            store.put_qc_values(run["id"], "native", {MS1: 1.0e7 + i})
        store.put_qc_values(run["id"], "rawtools", values)
        if i % 11 == 5:  # an ID-based source over the scan engines, a null included
            store.put_qc_values(run["id"], "maxquant", {IDS: None, "N_peptides": 5000 + 10 * i})
        ids.append(run["id"])
    return store, pid, ids


def run_by_run(store: Store, pid: int) -> dict[int, dict]:
    inp = load_inputs(store, pid)
    cols = judged_columns(inp.settings)
    sources = with_values(store, inp, columns=cols)
    ev = evaluate_pipeline(inp.runs, inp.settings, inp.guide_sets, inp.exclusions, inp.annotations, columns=cols)
    out = {inp.ids[k]: _stored(v, inp.ids[k], bool(sources.get(k, set()) & ID_SOURCES)) for k, v in ev.verdicts.items()}
    return json.loads(json.dumps({str(k): v for k, v in out.items()}))


def stored(store: Store, pid: int) -> dict[str, dict]:
    return {str(rid): {k: v[k] for k in ("run_id", "verdict", "summary", "detail", "guide_set")}
            for rid, v in store.verdicts_of(pid).items()}


def test_column_wise_recompute_equals_the_run_by_run_evaluation(tmp_path: Path) -> None:
    store, pid, ids = build(tmp_path / "qc.duckdb")
    try:
        mid = T0 + dt.timedelta(hours=70)
        store.add_guide_set(pid, label="mid", start=mid, end=mid + dt.timedelta(hours=19), run_keys=None, created_by=None)
        store.set_exclusions(pid, [ids[2], ids[75]], MS1, excluded=True)
        store.add_annotation(pid, kind="column_change", at=T0 + dt.timedelta(hours=110.5), text="", author_id=None)
        store.put_metric_settings(pid, "MedianMassDrift(ppm)", rules=[{"rule": "cusum_mean"}, {"rule": "moving_range"}],
                                  overrides=None, updated_by=None)
        store.set_run_fields([ids[4], ids[90]], {"use_downstream": False})  # rejected: out of every limit
        expected = run_by_run(store, pid)
        assert {v["verdict"] for v in expected.values()} >= {"pass", "fail"}  # a series with something to find
        assert any(v["detail"]["basis"] == "id-based" for v in expected.values())

        assert recompute_sync(store, pid) == len(ids)
        assert stored(store, pid) == expected

        store.con.execute("DELETE FROM qc_verdicts")
        n = recompute_sync(store, pid, mid.replace(tzinfo=dt.UTC))
        got = stored(store, pid)
        assert n == len(got) == 70 and all(got[k] == expected[k] for k in got)
        assert set(got) == {str(i) for i in ids[70:]}
    finally:
        store.close()


def test_verdicts_recorded_one_by_one_equal_a_recomputation_after_an_earlier_run_changes(tmp_path: Path) -> None:
    from qcdaemon.service.recording import record_sync

    store = Store(tmp_path / "qc.duckdb")
    try:
        uid = store.create_user("qc@example.org", None)
        proj = store.create_project("Lab", "lab", "", uid)
        pid = store.create_pipeline(proj, "HeLa", "hela", str(tmp_path), rawtools_args="", created_by=uid)["id"]
        rows = parse_qc_data_table(HELA)

        def add(i: int, row: dict) -> int:
            run = store.create_run(pid, f"hela-{i}.raw", source="upload", owner_id=uid, state="done",
                                   acquired_at=T0 + dt.timedelta(hours=i))
            store.put_qc_values(run["id"], "rawtools",
                                {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()})
            record_sync(store, run["id"])  # as the engine does after each stage
            return run["id"]

        ids = [add(i, row) for i, row in enumerate(rows[:60])]
        # a later value of an earlier run (MaxQuant finishing late, say): its verdict and those after it
        store.put_qc_values(ids[40], "rawtools", {**rows[40], "DateAcquired": None, MS1: 1.0})
        assert "recomputed" in record_sync(store, ids[40])
        ids += [add(i, row) for i, row in enumerate(rows[60:70], start=60)]
        incremental = stored(store, pid)
        recompute_sync(store, pid)
        assert stored(store, pid) == incremental
        assert any(r["metric"] == MS1 for r in incremental[str(ids[40])]["detail"]["reasons"])  # 1.0 is far below
    finally:
        store.close()
