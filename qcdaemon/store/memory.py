"""Giving memory back to the system after a large read.

A big answer leaves freed memory behind in glibc's heap (Python objects, DuckDB's result and
working memory, and Arrow's buffers: Arrow allocates from the system pool here, see below), which
returns freed pages at the top of the heap only.  ``release()`` hands them back with glibc's
``malloc_trim(0)`` (and ``MemoryPool.release_unused()`` for a pool that keeps pages itself).
DuckDB's buffer pool (table blocks cached up to ``[store] memory_limit``) is kept while reads
come and dropped once they stop: ``drop_cache`` lowers the limit to ``CACHE_FLOOR``, which evicts
the cached blocks, and sets it back (``AsyncStore`` calls it ``IDLE_S`` after the last heavy read,
with no read running and on the writer thread, so no query runs under the lowered limit).  An
evicted block is read again from the OS page cache.  Measured on issue 13's 1,000-run bench
store in-process: the heavy reads leave about 100 MB of blocks cached; a standing 128 MB or 64 MB
limit instead cost protein-groups 60-130 ms of CPU a request (blocks evicted between routes).

Arrow's default pool (mimalloc) keeps pages for reuse that no trim returns: measured in-process
on the 1,000-run bench store, the heavy reads left 11-12 MiB more resident with it than with the
system pool, at no measurable cost in time.  So the process uses the system pool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

#: Reads that return at least this many bytes, or take at least this long, are followed by a release.
BIG_ANSWER = 1 << 20
SLOW_READ_S = 0.1
#: Seconds without a heavy read after which DuckDB's cached blocks are dropped, and the floor they
#: are dropped to.
IDLE_S = 1.0
CACHE_FLOOR = "16MB"


def _glibc(name: str) -> Any:
    """A function of glibc's malloc (None off Linux, or on a C library without it, such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _glibc_trim() -> Callable[[], object] | None:
    trim = _glibc("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_TRIM = _glibc_trim()


def _few_heaps() -> None:
    """At most ``ARENAS`` glibc heaps (``mallopt(M_ARENA_MAX)``).  By default glibc gives threads
    up to 8 heaps a core, and a heap keeps the blocks its threads freed: the daemon's readers,
    writer, DuckDB's and Arrow's threads each filled one during the heavy read routes.  Measured
    with bench/bench.py's routes at 10,000 runs, alternating in one session: anonymous memory after
    the heavy requests 162-164 MB with two heaps against 210 MB, RSS 296-299 against 344 MiB, the
    routes' times unchanged."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(M_ARENA_MAX, ARENAS)


M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2
_few_heaps()
if _TRIM is not None:  # where malloc_trim can give Arrow's freed buffers back
    pa.set_memory_pool(pa.system_memory_pool())


def release() -> None:
    """Return the memory freed by a large read to the operating system (safe from any thread)."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM()


def drop_cache(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """Evict DuckDB's cached table blocks: the memory limit lowered to ``CACHE_FLOOR`` and set back
    to ``limit`` (a size the config checked).  Only with no other query running on the database."""
    try:
        con.execute(f"SET memory_limit = '{CACHE_FLOOR}'")
    except duckdb.Error:
        pass  # more is pinned than the floor: what could be evicted was
    finally:
        con.execute(f"SET memory_limit = '{limit}'")
