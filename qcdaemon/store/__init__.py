"""The store: one DuckDB file owned by one thread.

``Store`` is synchronous; ``AsyncStore`` is the gate the event loop uses: every call runs on a
single dedicated thread (DuckDB connections are not thread-safe), so the loop never blocks on I/O.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ..config import StoreConfig
from .database import Store

__all__ = ["AsyncStore", "Store"]


class AsyncStore:
    """``await astore.method(...)`` runs ``Store.method`` on the store thread."""

    def __init__(self, path: Path, cfg: StoreConfig | None = None) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="duckdb")
        self._store: Store = self._pool.submit(Store, path, cfg).result()
        self.path = path

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(store, *args)`` on the store thread (for multi-step work in one hop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, self._store, *args, **kwargs))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(Store, name)
        if not callable(method):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.call(method, *args, **kwargs)

        call.__name__ = name
        return call

    def close(self) -> None:
        self._pool.submit(self._store.close).result()
        self._pool.shutdown(wait=True)
