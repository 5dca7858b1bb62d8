"""After a heavy read the freed heap goes back to the system (``qcdaemon.store.memory``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qcdaemon.store import memory


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
