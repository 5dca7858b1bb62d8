"""The persistent job queue in the store: ordering, the first-stage gate, restarts, retry, cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcdaemon.errors import Conflict
from qcdaemon.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "q.duckdb")
    uid = s.create_user("a@lab.org", None)
    pid = s.create_project("P", "p", "", uid)
    s.create_pipeline(pid, "L", "l", str(tmp_path), rawtools_args="")
    return s


def _run(store: Store, name: str, stages=("native", "rawtools", "maxquant")) -> int:
    pipeline = store.find_pipeline("p/l")
    return store.create_run(pipeline["id"], name, source="watch", owner_id=1, stages=stages)["id"]


def test_heavy_stages_wait_for_the_first_stage_and_runs_are_taken_oldest_first(store: Store) -> None:
    a, b = _run(store, "a.raw"), _run(store, "b.raw")
    assert store.claim_stage("rawtools") is None  # native has not run yet
    assert store.claim_stage("native")["run_id"] == a
    assert store.run(a)["state"] == "processing" and store.run(b)["state"] == "queued"
    store.finish_stage(a, "native", "done")
    assert store.claim_stage("rawtools")["run_id"] == a
    assert store.claim_stage("native")["run_id"] == b


def test_a_failed_first_stage_still_lets_rawtools_try_and_both_failing_fails_the_run(store: Store) -> None:
    a = _run(store, "a.raw")
    store.claim_stage("native")
    store.finish_stage(a, "native", "failed", error="truncated")
    states = {s["stage"]: s["state"] for s in store.stages(a)}
    assert states == {"native": "failed", "rawtools": "queued", "maxquant": "skipped"}
    assert store.run(a)["state"] == "processing"
    assert store.claim_stage("maxquant") is None
    assert store.claim_stage("rawtools")["run_id"] == a
    store.finish_stage(a, "rawtools", "failed", error="Unhandled Exception: KeyNotFoundException")
    run = store.run(a)
    assert run["state"] == "failed"
    assert run["error"] == "native: truncated; rawtools: Unhandled Exception: KeyNotFoundException"


def test_a_run_with_values_is_done_and_shows_the_stage_that_failed(store: Store) -> None:
    a, b = _run(store, "a.raw"), _run(store, "b.raw")
    store.claim_stage("native")  # a: native works, RawTools fails
    store.finish_stage(a, "native", "done")
    store.claim_stage("rawtools")
    store.finish_stage(a, "rawtools", "failed", error="rawtools_qc: exit 1")
    store.claim_stage("maxquant")
    store.finish_stage(a, "maxquant", "skipped", error="not configured")
    assert store.run(a)["state"] == "done"
    assert store.run(a)["error"] == "rawtools: rawtools_qc: exit 1"
    assert {s["stage"]: s["state"] for s in store.stages(a)}["rawtools"] == "failed"
    store.claim_stage("native")  # b: native fails, RawTools reads it
    store.finish_stage(b, "native", "failed", error="no scans")
    store.claim_stage("rawtools")
    store.finish_stage(b, "rawtools", "done")
    assert store.run(b)["state"] == "done" and store.run(b)["error"] == "native: no scans"
    overview = {r["id"]: r for r in store.runs_overview()}
    assert overview[b]["state"] == "done" and overview[b]["error"] == "native: no scans"


def test_skipped_stages_at_creation_and_a_done_run(store: Store) -> None:
    a = _run(store, "a.raw", stages=[("native", None), ("rawtools", "not configured"), ("maxquant", "not configured")])
    store.claim_stage("native")
    store.finish_stage(a, "native", "done")
    assert store.run(a)["state"] == "done"
    assert [s["error"] for s in store.stages(a)][1:] == ["not configured", "not configured"]


def test_interrupted_stages_are_requeued_until_they_have_crashed_the_daemon_too_often(store: Store) -> None:
    a = _run(store, "a.raw")
    for attempt in range(1, 5):
        assert store.claim_stage("native")["attempts"] == attempt
        assert store.requeue_interrupted() == [(a, "native", "queued")]
    store.claim_stage("native")  # the fifth time
    assert store.requeue_interrupted() == [(a, "native", "failed")]
    native = store.stages(a)[0]
    assert native["state"] == "failed" and "interrupted 5 times" in native["error"]


def test_retry_and_cancel(store: Store) -> None:
    a = _run(store, "a.raw")
    store.claim_stage("native")
    with pytest.raises(Conflict):
        store.retry_run(a)  # running
    store.finish_stage(a, "native", "failed", error="x")  # rawtools stays queued
    assert store.retry_run(a) == ["native", "maxquant"]
    assert store.run(a)["state"] == "queued"
    assert store.cancel_run(a) == []
    assert store.run(a)["state"] == "cancelled"
    assert store.claim_stage("native") is None


def test_queue_survives_reopening_the_file(tmp_path: Path, store: Store) -> None:
    a = _run(store, "a.raw")
    store.claim_stage("native")
    store.close()
    again = Store(tmp_path / "q.duckdb")
    assert again.requeue_interrupted() == [(a, "native", "queued")]
    assert again.queue_depth() == {"queued": 3, "running": 0}


def test_retrying_the_first_stage_brings_back_the_stages_its_failure_skipped(store: Store) -> None:
    a = _run(store, "a.raw")
    store.claim_stage("native")
    store.finish_stage(a, "native", "failed", error="truncated")
    with pytest.raises(Conflict):
        store.retry_run(a, ["maxquant"])  # MaxQuant does not run behind a failed native stage
    assert store.retry_run(a, ["native"]) == ["native", "maxquant"]
    assert {s["state"] for s in store.stages(a)} == {"queued"}


def test_a_graceful_stop_does_not_use_up_an_attempt(store: Store) -> None:
    a = _run(store, "a.raw")
    assert store.claim_stage("native")["attempts"] == 1
    store.requeue_stage(a, "native", count_attempt=False)
    assert store.claim_stage("native")["attempts"] == 1
