"""A bounded cache of control-chart answers, dropped by any write to the store.

A chart's answer (``QualityService.chart``) is a pure function of what is stored: the pipeline's
runs, their values and verdicts, guide sets, annotations, exclusions, rules and settings.  Every
write statement the store runs bumps its data version (``StoreBase.execute``, and once more after
each commit: ``qcdaemon.store.base``) unless it only touches tables no chart reads (alerts and
their cursors, sessions, tokens, stage states, files: ``QUIET_TABLES``), so an answer computed at
version *v* is served only while the version is still *v*.  The version is read *before* computing; a write that lands during the
computation bumps it afterwards, so an answer that may have missed the write is never served.

The cache holds answers as zlib-compressed JSON: its bound counts the bytes it really keeps (the
decoded dicts would take about 4 times the JSON's size, 12 MB for one chart of 10,000 runs), and
every hit decodes a fresh copy that the caller may change freely.  Least recently used answers go
first once ``max_bytes`` is reached; an answer larger than a quarter of it is not kept.

The read routes' answers follow the same rule (``service/answercache.py``).
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from qcdaemon.store import Store

MAX_BYTES = 4 * 1024 * 1024  # compressed: ~100 charts of 1,000 runs, ~10 of 10,000
V = TypeVar("V")


def _default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class VersionedLru(Generic[V]):
    """LRU of ``key -> (data version, item, size)``, at most ``max_bytes`` of sizes in all; an item
    is found only at the version it was kept at.  Thread-safe (readers run on several threads).
    The one place of the least-recently-used bookkeeping for :class:`BlobCache` (bytes in memory)
    and ``service.answercache.AnswerCache`` (files on disk)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[int, V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def size(self) -> int:
        """Sizes held now (never above ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def _find(self, key: Hashable, version: int) -> V | None:
        """The item kept for ``key`` at ``version`` (made the most recently used), else None (not
        counted: the caller counts the hit or miss once it knows)."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] != version:
                return None
            self._items.move_to_end(key)
            return item[1]

    def _keep(self, key: Hashable, version: int, item: V | None, size: int) -> list[V]:
        """``item`` of ``size`` kept for ``key`` at ``version`` (None: only what ``key`` held
        dropped); returns the items this dropped, its old one and the least recently used ones."""
        with self._lock:
            dropped = []
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
                dropped.append(old[1])
            if item is not None:
                self._items[key] = (version, item, size)
                self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, gone, gone_size) = self._items.popitem(last=False)
                self._bytes -= gone_size
                dropped.append(gone)
            return dropped


class BlobCache(VersionedLru[bytes]):
    """Blobs (``key -> (data version, bytes)``), at most ``max_bytes`` in all; a blob larger than
    ``max_bytes // largest_share`` is not kept."""

    largest_share = 4

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(max_bytes)

    def get_blob(self, key: Hashable, version: int) -> bytes | None:
        blob = self._find(key, version)
        self._count(blob is not None)
        return blob

    def put_blob(self, key: Hashable, version: int, blob: bytes) -> None:
        small = len(blob) <= self.max_bytes // self.largest_share
        self._keep(key, version, blob if small else None, len(blob))


class ChartCache(BlobCache):
    """Chart answers (dicts) as zlib-compressed JSON."""

    def get(self, key: Hashable, version: int) -> dict[str, Any] | None:
        blob = self.get_blob(key, version)
        if blob is None:
            return None
        out: dict[str, Any] = json.loads(zlib.decompress(blob))
        return out

    def put(self, key: Hashable, version: int, value: dict[str, Any]) -> None:
        # NaN stays NaN here (the cache is no wire format: jsonout cleans answers on their way out)
        self.put_blob(key, version, zlib.compress(json.dumps(value, default=_default, separators=(",", ":")).encode(), 1))

    def cached(self, store: Store, key: Hashable, compute: Callable[[Store], dict[str, Any]]) -> dict[str, Any]:
        """``compute(store)``, or its answer from the cache while the store has not been written
        to since (runs on a store thread: ``await astore.read(cache.cached, key, compute)``)."""
        version = store.data_version.value  # before computing: see the module's docstring
        hit = self.get(key, version)
        if hit is not None:
            return hit
        value = compute(store)
        self.put(key, version, value)
        return value

