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
from typing import Any

from qcdaemon.store import Store

MAX_BYTES = 4 * 1024 * 1024  # compressed: ~100 charts of 1,000 runs, ~10 of 10,000


def _default(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class BlobCache:
    """LRU of ``key -> (data version, blob)``, at most ``max_bytes`` in all; a blob larger than
    ``max_bytes // largest_share`` is not kept.  Thread-safe (readers run on several threads)."""

    largest_share = 4

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def size(self) -> int:
        """Bytes held now (never above ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get_blob(self, key: Hashable, version: int) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] != version:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[1]

    def put_blob(self, key: Hashable, version: int, blob: bytes) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            if len(blob) > self.max_bytes // self.largest_share:
                return
            self._items[key] = (version, blob)
            self._bytes += len(blob)
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= len(dropped)


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

