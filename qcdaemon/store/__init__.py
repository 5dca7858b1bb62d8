"""The store: one DuckDB file owned by one thread.

``Store`` is synchronous; ``AsyncStore`` is the gate the event loop uses: every call runs on a
single dedicated thread (DuckDB connections are not thread-safe), so the loop never blocks on I/O.
A call names the method itself, ``await astore.call(Store.run, run_id)``, so the arguments and the
result are type-checked like a direct call.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from qcdaemon.config import StoreConfig
from qcdaemon.store.database import Store

__all__ = ["AsyncStore", "Store"]

P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """``await astore.call(Store.method, ...)`` runs ``Store.method`` on the store thread."""

    def __init__(self, path: Path, cfg: StoreConfig | None = None) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="duckdb")
        try:
            self._store: Store = self._pool.submit(Store, path, cfg).result()
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        self.path = path

    async def call(self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(store, *args, **kwargs)`` on the store thread (one method, or several steps in one hop)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, self._store, *args, **kwargs))

    def close(self) -> None:
        self._pool.submit(self._store.close).result()
        self._pool.shutdown(wait=True)
