"""Giving memory back to the system after a large read.

A big answer leaves freed memory behind in three allocators: Arrow's pool (mimalloc or jemalloc
keep freed pages for reuse), and glibc's heap (Python objects, DuckDB's result and working memory),
which returns freed pages at the top of the heap only.  ``release()`` hands both back:
``MemoryPool.release_unused()`` and glibc's ``malloc_trim(0)``.  DuckDB's buffer pool (table
blocks cached up to ``[store] memory_limit``) is bounded by that setting, not released here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

import pyarrow as pa

#: Reads that return at least this many bytes, or take at least this long, are followed by a release.
BIG_ANSWER = 1 << 20
SLOW_READ_S = 0.1


def _glibc_trim() -> Callable[[], object] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (musl has none)
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_TRIM = _glibc_trim()


def release() -> None:
    """Return the memory freed by a large read to the operating system (safe from any thread)."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM()
