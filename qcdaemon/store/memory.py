"""Giving memory back to the system after a large read.

A big answer leaves freed memory behind in glibc's heap (Python objects, DuckDB's result and
working memory, and Arrow's buffers: Arrow allocates from the system pool here, see below), which
returns freed pages at the top of the heap only.  ``release()`` hands them back with glibc's
``malloc_trim(0)`` (and ``MemoryPool.release_unused()`` for a pool that keeps pages itself).
DuckDB's buffer pool (table blocks cached up to ``[store] memory_limit``) is bounded by that
setting, not released here.

Arrow's default pool (mimalloc) keeps pages for reuse that no trim returns: measured in-process
on the 1,000-run bench store, the heavy reads left 11-12 MiB more resident with it than with the
system pool, at no measurable cost in time.  So the process uses the system pool.
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
if _TRIM is not None:  # where malloc_trim can give Arrow's freed buffers back
    pa.set_memory_pool(pa.system_memory_pool())


def release() -> None:
    """Return the memory freed by a large read to the operating system (safe from any thread)."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM()
