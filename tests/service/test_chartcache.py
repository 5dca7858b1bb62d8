"""The chart cache: bounded in bytes, least recently used first out, and an answer is never served
after a write to the store (the store's data version, bumped by every write statement and commit).
Real DuckDB files throughout."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

from qcdaemon.service.chartcache import ChartCache
from qcdaemon.store import Store


def _answer(n: int, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)  # random values: they compress about as badly as real chart values
    return {"points": [{"run": f"rf{i}", "value": rnd.random(), "z": rnd.gauss(0, 1)} for i in range(n)]}


def test_bounded_in_bytes_and_least_recently_used_go_first() -> None:
    cache = ChartCache(max_bytes=64 * 1024)
    one = len(__import__("zlib").compress(json.dumps(_answer(200, 0), separators=(",", ":")).encode(), 1))
    assert 4 * 1024 < one < 16 * 1024  # a few of them fit, not many
    for k in range(40):
        cache.put(("p", k), 1, _answer(200, k))
        assert cache.size <= cache.max_bytes
        if k == 1:
            assert cache.get(("p", 0), 1) is not None  # touched: now the most recently used
    kept = [k for k in range(40) if cache.get(("p", k), 1) is not None]
    assert 3 <= len(kept) < 40 and kept == list(range(40 - len(kept), 40)), kept
    assert len(cache) == len(kept) and cache.size <= cache.max_bytes
    # an answer bigger than a quarter of the bound is not kept at all
    cache.put("big", 1, _answer(5000, 1))
    assert cache.get("big", 1) is None and cache.size <= cache.max_bytes


def test_a_hit_is_an_equal_fresh_copy_and_another_version_is_a_miss() -> None:
    cache = ChartCache()
    value = {"points": [{"run": "rf1", "value": 1.5, "violations": []}], "limits": [{"mean": None}]}
    cache.put("k", 7, value)
    got = cache.get("k", 7)
    assert got == value and got is not value
    got["points"].clear()  # the caller may change its copy
    assert cache.get("k", 7) == value
    assert cache.get("k", 8) is None and cache.get("other", 7) is None


def test_every_write_a_chart_shows_changes_the_data_version_and_reads_do_not(tmp_path: Path) -> None:
    store = Store(tmp_path / "qc.duckdb")
    try:
        uid = store.create_user("a@example.org", None)
        proj = store.create_project("P", "p", "", uid)
        pid = store.create_pipeline(proj, "L", "l", str(tmp_path), rawtools_args="", created_by=uid)["id"]
        run = store.create_run(pid, "a.raw", source="upload", owner_id=uid, state="done",
                               acquired_at=dt.datetime(2024, 1, 1))
        rid = run["id"]
        t = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
        writes = {
            "values": lambda: store.put_qc_values(rid, "rawtools", {"NumMs2Scans": 5}),
            "verdicts": lambda: store.put_verdicts(pid, [{"run_id": rid, "verdict": "pass", "summary": "",
                                                          "detail": {}, "guide_set": None}]),
            "guide set": lambda: store.add_guide_set(pid, label="g", start=t, end=t, run_keys=None, created_by=uid),
            "rules": lambda: store.put_metric_settings(pid, "NumMs2Scans", rules=[], overrides=None, updated_by=uid),
            "settings": lambda: store.put_pipeline_qc_settings(pid, auto_guide_runs=5, offline_hours=None, updated_by=uid),
            "annotation": lambda: store.add_annotation(pid, kind="maintenance", at=t, text="x", author_id=uid),
            "exclusion": lambda: store.set_exclusions(pid, [rid], "NumMs2Scans", excluded=True),
            "flag": lambda: store.set_run_fields([rid], {"flagged": True}),
            "reject": lambda: store.set_run_fields([rid], {"use_downstream": False}),
        }
        for what, write in writes.items():
            before = store.data_version.value
            write()
            assert store.data_version.value != before, what
        # writes no chart reads: the alerts' cursor (every 30 s), a sign-in's session, a stage's state
        quiet = {
            "alert cursor": lambda: store.set_alert_cursor("verdict", dt.datetime(2024, 1, 3)),
            "session": lambda: store.create_session("d" * 64, uid, "c" * 32, 1.0),
            "stage": lambda: store.execute("UPDATE stages SET attempts = attempts + 1 WHERE run_id = ?", [rid]),
        }
        for what, write in quiet.items():
            before = store.data_version.value
            write()
            assert store.data_version.value == before, what
        before = store.data_version.value
        store.qc_runs(pid), store.verdicts_of(pid), store.annotations_of(pid), store.guide_sets_of(pid)
        store.qc_data_json(pid, None, None)  # a read in a transaction (one snapshot) is no write
        assert store.data_version.value == before
        try:  # a failed transaction that wrote nothing leaves it too
            with store.transaction():
                raise RuntimeError("x")
        except RuntimeError:
            pass
        assert store.data_version.value == before
    finally:
        store.close()


def test_cached_recomputes_after_a_write_in_between(tmp_path: Path) -> None:
    store = Store(tmp_path / "qc.duckdb")
    try:
        uid = store.create_user("a@example.org", None)
        cache = ChartCache()
        calls: list[int] = []

        def compute(s: Store) -> dict[str, Any]:
            calls.append(1)
            return {"users": [u["email"] for u in s.rows("SELECT email FROM users ORDER BY id")]}

        assert cache.cached(store, "k", compute) == {"users": ["a@example.org"]}
        assert cache.cached(store, "k", compute) == {"users": ["a@example.org"]} and len(calls) == 1
        store.set_admin(uid, True)  # any write
        store.create_user("b@example.org", None)
        assert cache.cached(store, "k", compute) == {"users": ["a@example.org", "b@example.org"]}
        assert len(calls) == 2 and cache.hits == 1
    finally:
        store.close()
