"""After a heavy read the freed heap goes back to the system (``qcdaemon.store.memory``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from qcdaemon.config import StoreConfig
from qcdaemon.store import AsyncStore, Store, memory


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_release_returns_freed_heap_below_a_live_block() -> None:
    # 200 MB of heap blocks (below glibc's mmap threshold), freed but for the last one, which pins
    # the top of the heap: without malloc_trim glibc keeps every freed page resident
    blocks = [bytearray(100_000) for _ in range(2000)]
    for b in blocks:
        b[::4096] = b"x" * len(b[::4096])  # touch every page
    last = blocks[-1]
    del blocks
    before = _rss()
    memory.release()
    after = _rss()
    assert memory._TRIM is not None
    assert before - after > 100 << 20, (before, after)
    assert last[0] == ord("x")


def _cached(store: Store) -> int:
    return int(store.scalar("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"))


def _scan(store: Store) -> bytes:
    store.scalar("SELECT sum(b) FROM t")  # every block of the table into the buffer pool
    return b"x" * memory.BIG_ANSWER  # a heavy answer


async def test_the_cache_is_dropped_once_heavy_reads_stop_and_the_limit_kept(tmp_path: Path) -> None:
    astore = AsyncStore(tmp_path / "data" / "qcdaemon.duckdb", StoreConfig(memory_limit="256MB"))
    try:
        def fill(s: Store) -> str:
            s.con.execute("CREATE TABLE t AS SELECT range AS a, random() AS b FROM range(8000000)")
            s.checkpoint()  # on disk: blocks the buffer pool caches and may evict
            return str(s.scalar("SELECT current_setting('memory_limit')"))

        limit = await astore.call(fill)
        await astore.read(_scan)
        full = await astore.read(_cached)
        assert full > 40 << 20  # the table's blocks are cached after the scan
        for _ in range(100):
            await asyncio.sleep(memory.IDLE_S / 4)
            if await astore.read(_cached) < full // 2:
                break
        assert await astore.read(_cached) < full // 2
        assert await astore.call(lambda s: str(s.scalar("SELECT current_setting('memory_limit')"))) == limit
        await astore.read(_scan)
        assert await astore.read(_cached) > full // 2  # reads fill it again
    finally:
        astore.close()
