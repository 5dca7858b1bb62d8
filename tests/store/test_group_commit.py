"""Group commit (issue 13, "batched ingest writes"): ingest writes waiting for the writer thread
together share one transaction; each caller gets its own result or error only, and the database
ends as if the calls had run one by one.  The writer is held by a call that waits on an event, so
the writes queue up behind it for certain (no timing)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import lab_pipeline, writer_held

from qcdaemon.errors import NotFound
from qcdaemon.store import GROUP_MAX, AsyncStore, Store


async def _held(astore: AsyncStore, *calls: Any) -> list[Any]:
    """``calls`` (coroutine factories) issued while the writer thread is busy, then released: they
    reach the writer together.  Results and exceptions in call order."""
    async with writer_held(astore):
        tasks = [asyncio.ensure_future(c()) for c in calls]
        await asyncio.sleep(0)  # every call queued behind the holder
    return await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def astore(tmp_path: Path) -> Any:
    s = AsyncStore(tmp_path / "data" / "qcdaemon.duckdb")
    yield s
    s.close()


async def test_waiting_writes_share_one_transaction_and_each_gets_its_result(astore: AsyncStore) -> None:
    pl = await astore.call(lab_pipeline)
    names = [f"r{i}.raw" for i in range(5)]
    runs = await _held(astore, *[lambda n=n: astore.call(Store.create_run, pl, n, source="watch", owner_id=None,
                                                        stages=["native"]) for n in names])
    assert astore._group.shared == 5
    assert [r["name"] for r in runs] == names
    for r in runs:
        assert r == await astore.call(Store.run, r["id"])
    vals = await _held(astore, *[lambda r=r, i=i: astore.call(Store.put_qc_values, r["id"], "rawtools", {"MS1": i})
                                 for i, r in enumerate(runs)])
    assert vals == [None] * 5 and astore._group.shared == 10
    got = await astore.call(Store.qc_values, [r["id"] for r in runs])
    assert got == [(r["id"], "rawtools", "MS1", i) for i, r in enumerate(runs)]


async def test_a_failing_write_in_a_group_fails_alone_and_the_others_are_kept(astore: AsyncStore) -> None:
    """The group is rolled back and each call runs again by itself: the missing pipeline's
    NotFound and the duplicate file's constraint error go to their own callers only."""
    pl = await astore.call(lab_pipeline)
    key = {"watch_path": "/w", "path": "/w/a.raw", "size": 1, "mtime_ns": 1, "sha256": "x"}
    first = await astore.call(Store.create_run, pl, "a.raw", source="watch", owner_id=None, ledger=key)
    out = await _held(
        astore,
        lambda: astore.call(Store.create_run, pl, "b.raw", source="watch", owner_id=None),
        lambda: astore.call(Store.create_run, 999, "c.raw", source="watch", owner_id=None),
        lambda: astore.call(Store.put_qc_values, first["id"], "rawtools", {"MS1": 1.5}),
        lambda: astore.call(Store.create_run, pl, "a.raw", source="watch", owner_id=None, ledger=key),
        lambda: astore.call(Store.create_run, pl, "d.raw", source="watch", owner_id=None),
    )
    assert isinstance(out[1], NotFound) and isinstance(out[3], duckdb.ConstraintException)
    assert out[0]["name"] == "b.raw" and out[4]["name"] == "d.raw" and out[2] is None
    assert astore._group.shared == 0  # nothing committed as a group
    runs = await astore.call(Store.runs_of, pl)
    assert [r["name"] for r in runs] == ["a.raw", "b.raw", "d.raw"]  # the duplicate left no run behind
    assert [r["id"] for r in runs] == [first["id"], out[0]["id"], out[4]["id"]]
    assert await astore.call(Store.qc_values, [first["id"]]) == [(first["id"], "rawtools", "MS1", 1.5)]
    assert await astore.call(Store.scalar, "SELECT count(*) FROM files") == 1


async def test_a_write_cancelled_while_it_waits_is_not_run(astore: AsyncStore) -> None:
    pl = await astore.call(lab_pipeline)
    async with writer_held(astore):
        kept = asyncio.ensure_future(astore.call(Store.create_run, pl, "kept.raw", source="watch", owner_id=None))
        gone = asyncio.ensure_future(astore.call(Store.create_run, pl, "gone.raw", source="watch", owner_id=None))
        await asyncio.sleep(0)
        gone.cancel()
    assert (await kept)["name"] == "kept.raw"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert [r["name"] for r in await astore.call(Store.runs_of, pl)] == ["kept.raw"]


async def test_more_writes_than_a_group_holds_all_commit(astore: AsyncStore) -> None:
    pl = await astore.call(lab_pipeline)
    n = GROUP_MAX + 3
    runs = await _held(astore, *[lambda i=i: astore.call(Store.create_run, pl, f"r{i}.raw", source="watch",
                                                        owner_id=None) for i in range(n)])
    assert [r["name"] for r in runs] == [f"r{i}.raw" for i in range(n)]
    assert astore._group.shared == n
    assert await astore.call(Store.scalar, "SELECT count(*) FROM runs") == n
