"""The store: one DuckDB file, one writer thread and a small pool of readers.

``Store`` is synchronous; ``AsyncStore`` is the gate the event loop uses.  ``call`` runs a method
on the single writer thread (DuckDB connections are not thread-safe, and one writer keeps every
change in order), so the loop never blocks on I/O.  ``read`` runs a read-only method on one of a
few reader threads, each with its own cursor (``con.cursor()``: a connection to the same database
that sees every committed change), so a heavy read never makes the engine's writes queue behind it.
``light`` runs a small read (a sign-in's lookup, the projects a user sees) on a thread and cursor
of its own that no heavy read ever takes, so such a request answers while heavy reads and writes
run.  A call names the method itself, ``await astore.call(Store.run, run_id)``,
so the arguments and the result are type-checked like a direct call.

Group commit: the ingest writes (``GROUPED``) that wait for the writer together run in one
transaction, one commit for all of them (``_Group``).  Each caller gets its result once that
commit is done (durable when its call returns, as alone).  When any of them fails, the whole
transaction is rolled back and each call runs again alone, so a caller sees its own result or
error only, exactly as if the calls had run one by one (DuckDB has no savepoints to undo one).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import copy
import functools
import queue
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Concatenate, ParamSpec, TypeVar

import duckdb
import structlog

from qcdaemon.config import StoreConfig
from qcdaemon.store import memory
from qcdaemon.store.database import Store

__all__ = ["AsyncStore", "Store"]

log = structlog.get_logger("qcdaemon.store")

P = ParamSpec("P")
T = TypeVar("T")

READERS = 2  # heavy reads at once; DuckDB parallelises each query over its own threads

#: The writes that may share a transaction with the others waiting when they reach the writer: each
#: is one transaction of database writes with no effect outside the database that a rollback would
#: leave behind (the in-memory copies they keep are checked against the database: store/runs.py,
#: store/proteins.py).
GROUPED: frozenset[Callable[..., Any]] = frozenset({
    Store.create_run, Store.put_qc_values, Store.put_maxquant, Store.put_protein_groups, Store.finish_stage,
})
GROUP_MAX = 16  # calls in one transaction at most


class AsyncStore:
    """``await astore.call(Store.method, ...)`` runs ``Store.method`` on the writer thread;
    ``await astore.read(Store.method, ...)`` runs a read-only one on a reader."""

    def __init__(self, path: Path, cfg: StoreConfig | None = None, readers: int = READERS) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="duckdb")
        try:
            self._store: Store = self._pool.submit(Store, path, cfg).result()
            views = self._pool.submit(_reader_views, self._store, readers + 1).result()
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        self._light_view = views.pop()
        self._views: SimpleQueue[Store] = SimpleQueue()
        for v in views:
            self._views.put(v)
        self._readers = views
        self._read_pool = ThreadPoolExecutor(max(1, readers), thread_name_prefix="duckdb-read")
        self._light_pool = ThreadPoolExecutor(1, thread_name_prefix="duckdb-light")
        # memory given back after heavy reads (a trim can take tens of ms): not on a reader
        self._trim_pool = ThreadPoolExecutor(1, thread_name_prefix="qcd-trim")
        self._trim: asyncio.Future[Any] | None = None  # the last release of memory (kept: not collected mid-run)
        self._limit = (cfg or StoreConfig()).memory_limit
        self._reading = 0  # reads in flight (counted on the event loop)
        self._idle: asyncio.TimerHandle | None = None  # drops DuckDB's cache once reads stop
        self._group = _Group(self._store)
        self.path = path

    async def call(self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(store, *args, **kwargs)`` on the writer thread (one method, or several steps in one
        hop); one of ``GROUPED`` shares the transaction of those waiting with it."""
        loop = asyncio.get_running_loop()
        job = functools.partial(fn, self._store, *args, **kwargs)
        if fn not in GROUPED:
            return await loop.run_in_executor(self._pool, job)
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._group.waiting.append((job, fut))
        self._pool.submit(self._group.drain)  # runs every write waiting then (a later drain may find none)
        return await asyncio.wrap_future(fut)

    async def light(self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the small read-only ``fn(store, *args, **kwargs)`` on the light reader (its own thread
        and cursor): for the lookups every request makes, which must not wait for heavy reads or
        for the writer.  Sees every committed change, as ``read`` does."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._light_pool, functools.partial(fn, self._light_view, *args, **kwargs))

    @property
    def data_version(self) -> int:
        """The store's data version now (``store.base.DataVersion``): read it before computing an
        answer to cache, and serve the answer only while it is unchanged."""
        return self._store.data_version.value

    async def read(self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the read-only ``fn(store, *args, **kwargs)`` on a reader thread with its own cursor."""
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        self._reading += 1
        try:
            out = await loop.run_in_executor(self._read_pool, functools.partial(self._on_reader, fn, *args, **kwargs))
        finally:
            self._reading -= 1
        if time.monotonic() - start >= memory.SLOW_READ_S or (isinstance(out, bytes) and len(out) >= memory.BIG_ANSWER):
            # after the answer is handed on: a heavy read's freed memory goes back to the system,
            # and DuckDB's cached blocks once no heavy read came for a while
            self._trim = loop.run_in_executor(self._trim_pool, memory.release)
            self._drop_later(loop)
        return out

    def _drop_later(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = loop.call_later(memory.IDLE_S, self._drop_cache, loop)

    def _drop_cache(self, loop: asyncio.AbstractEventLoop) -> None:
        self._idle = None
        if self._reading:  # a read runs: once it is quiet
            self._drop_later(loop)
            return
        try:
            dropped = loop.run_in_executor(self._pool, self._drop_on_writer)
        except RuntimeError:  # the store closed meanwhile
            return
        # the evicted blocks' memory back to the system off the writer thread (a trim can take ms)
        dropped.add_done_callback(lambda f: self._release_after(loop, f))
        self._trim = dropped

    def _release_after(self, loop: asyncio.AbstractEventLoop, dropped: asyncio.Future[bool]) -> None:
        if not dropped.cancelled() and dropped.exception() is None and not dropped.result():
            self._drop_later(loop)  # a read had started: once it is quiet (callbacks run on the loop)
            return
        try:
            self._trim = loop.run_in_executor(self._trim_pool, memory.release)
        except RuntimeError:  # the store closed meanwhile
            pass

    def _drop_on_writer(self) -> bool:
        """On the writer thread, holding every reader's cursor: no heavy query runs while the limit
        is low.  A reader in use means a read started meanwhile: nothing is dropped (``False``) and
        nothing waits for it (the writer thread is not held up while the read runs)."""
        views: list[Store] = []
        try:
            for _ in self._readers:
                views.append(self._views.get(block=False))
        except queue.Empty:
            return False
        finally:
            if len(views) < len(self._readers):
                for v in views:
                    self._views.put(v)
        try:
            memory.drop_cache(self._store.con, self._limit)
        finally:
            for v in views:
                self._views.put(v)
        return True

    def _on_reader(self, fn: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        view = self._views.get()
        try:
            return fn(view, *args, **kwargs)
        finally:
            self._views.put(view)

    def close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._read_pool.shutdown(wait=True)
        self._light_pool.shutdown(wait=True)
        self._trim_pool.shutdown(wait=True)
        self._pool.submit(_close, self._store, [*self._readers, self._light_view]).result()
        self._pool.shutdown(wait=True)


class _Group:
    """The grouped writes waiting for the writer thread, run by ``drain`` on it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.waiting: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            collections.deque())
        self.shared = 0  # calls committed in a transaction with others (for tests and the curious)

    def drain(self) -> None:
        calls: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = []
        while self.waiting and len(calls) < GROUP_MAX:
            job, fut = self.waiting.popleft()
            if fut.set_running_or_notify_cancel():  # not cancelled by its caller while it waited
                calls.append((job, fut))
        if len(calls) == 1:
            _settle(*calls[0])
        elif calls:
            self._together(calls)

    def _together(self, calls: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]) -> None:
        try:
            with self.store.transaction():  # each call's own transaction joins this one
                results = [job() for job, _ in calls]
        except BaseException as exc:
            if not isinstance(exc, Exception):  # the thread is going down: no call is left waiting
                for _, fut in calls:
                    fut.set_exception(exc)
                raise
            _rollback(self.store)
            log.debug("store_group_rerun", calls=len(calls), error=repr(exc))  # each caller gets its own answer
            for job, fut in calls:  # none of it is in the database: each again, alone
                _settle(job, fut)
            return
        self.shared += len(calls)
        for (_, fut), result in zip(calls, results, strict=True):
            fut.set_result(result)


def _settle(job: Callable[[], Any], fut: concurrent.futures.Future[Any]) -> None:
    try:
        result = job()
    except BaseException as exc:
        fut.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        fut.set_result(result)


def _rollback(store: Store) -> None:
    """After a failed COMMIT the transaction may still be open (aborted): closed, whatever its state."""
    try:
        store.con.execute("ROLLBACK")
    except duckdb.TransactionException:  # no transaction open: the usual case (Tx rolled it back)
        pass


def _reader_views(store: Store, n: int) -> list[Store]:
    """``n`` Stores sharing ``store``'s database, each over its own cursor (made on the writer thread)."""
    views = []
    for _ in range(max(1, n)):
        view = copy.copy(store)
        view.con = store.con.cursor()
        views.append(view)
    return views


def _close(store: Store, readers: list[Store]) -> None:
    for v in readers:
        v.con.close()
    store.close()
