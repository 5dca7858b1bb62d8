"""FolderWatcher: watchdog hints + scans + the settle checker, driven from one event loop.

Threads: watchdog callbacks only relay matching paths (deduplicated) to the loop with
``call_soon_threadsafe``. Every blocking call (``os.stat``, ``os.scandir``, the share probe,
observer start/stop) runs via ``asyncio.to_thread``. State lives on the loop.

Timers: one ``loop.call_later`` for the earliest due re-check of any tracked file (or hinted
path). Nothing pending means no timer at all: the loop is not woken except by watchdog events and
by :meth:`FolderWatcher.sweep` (called by the scheduler).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from qcdaemon.config import WatchConfig
from qcdaemon.rawfile.header import file_in_acquisition
from qcdaemon.watcher.observer import WatchedFolder
from qcdaemon.watcher.scan import (
    Sig,
    scan_signatures,
    stat_many,
    stat_signature,
    watch_root,
)
from qcdaemon.watcher.settle import FileEvent, Key, Listener, Observation, SettleTracker
from qcdaemon.watcher.winshare import default_share_probe

log = structlog.get_logger(__name__)

HINT_DELAY = 0.2  # one stat per burst of events for a file (inotify sends many per write)
TIMER_LAG = 0.005  # fire just after the due time, so the elapsed-time test is not missed by a hair
RETRY_AFTER_ERROR = 5.0  # stat/probe failed (share unreachable, access denied): look again later
DRAIN_TIMEOUT = 5.0  # stop(): how long queued events may take to reach on_event

OnEvent = Callable[[FileEvent], Awaitable[None]]
ProbeResult = bool | Exception | str  # str: the RAW header says acquisition in progress


class FolderWatcher:
    """Watches the folders of several WatchConfig entries; calls ``on_event`` on the event loop.

    Args:
        watches: one entry per watched folder (nested folders are tracked per entry).
        on_event: awaited for each :class:`FileEvent`, one at a time, in emission order; its
            exceptions are logged and swallowed.
        clock: monotonic seconds; also read from worker threads, so it must be thread-safe.
        share_probe: ``probe(path) -> True`` when no writer holds the file open. Default: the
            ``CreateFileW`` share-mode probe on Windows, none elsewhere.
    """

    def __init__(
        self,
        watches: Sequence[WatchConfig],
        on_event: OnEvent,
        *,
        clock: Callable[[], float] = time.monotonic,
        share_probe: Callable[[Path], bool] | None = None,
    ) -> None:
        self._folders = [
            WatchedFolder(i, w, watch_root(w), "polling" if w.polling else "native")
            for i, w in enumerate(watches)
        ]
        self._on_event = on_event
        self._clock = clock
        self._probe = share_probe if share_probe is not None else default_share_probe()
        self._tracker = SettleTracker()
        self._hints: dict[Key, float] = {}  # untracked paths named by events -> due
        self._relay_lock = threading.Lock()
        self._relayed: set[Key] = set()  # hops in flight, so event bursts hop once
        self._sweep_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._check_task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[FileEvent] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the observers and run the start-up scan. A missing folder is logged, shown in
        :meth:`status` and retried at each :meth:`sweep`; it is not an error."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._queue = asyncio.Queue()
        self._dispatcher = self._loop.create_task(self._dispatch(), name="watcher-dispatch")
        found = await self.sweep()
        log.info("watcher_started", watches=len(self._folders), files=found)

    async def sweep(self) -> int:
        """Full scan of every watch path; (re)starts observers whose folder is back or whose
        emitter died. Returns the number of matching files found (0 when not started/stopped)."""
        if not self._running:
            log.debug("watch_sweep_skipped", reason="not running")
            return 0
        async with self._sweep_lock:
            total = 0
            for st in self._folders:
                if self._running:
                    total += await self._sweep_one(st)
            self._reschedule()
            return total

    async def stop(self) -> None:
        """Stop timers and observers (joined), then let queued events reach ``on_event``."""
        if not self._running:
            return
        self._running = False
        self._cancel_timer()
        if (task := self._check_task) is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for st in self._folders:
            await st.close()
        await self._drain()
        self._hints.clear()
        with self._relay_lock:
            self._relayed.clear()
        log.info("watcher_stopped")

    def add_file_listener(self, listener: Listener) -> None:
        """Hear every change of every tracked file (see :data:`~qcdaemon.watcher.settle.Listener`)."""
        self._tracker.listener = listener

    def status(self) -> list[dict[str, Any]]:
        """Per watch: path (absolute), pipeline, exists, observer ("native"|"polling"),
        last_file_seen (path of the latest "seen" event), last_seen_at (epoch s), pending (number
        of files still settling), error (str or None)."""
        return [st.status(self._tracker.pending_count(st.index)) for st in self._folders]

    # ---------------------------------------------------------------- sweeping

    async def _sweep_one(self, st: WatchedFolder) -> int:
        deliver = functools.partial(self._from_thread, st.index)
        await st.ensure_observer(deliver, lambda: self._running)
        if not st.exists:
            return 0
        try:
            found = await asyncio.to_thread(scan_signatures, st.watch, self._clock)
        except OSError as exc:
            gone = isinstance(exc, (FileNotFoundError, NotADirectoryError))
            st.set_error(f"scan failed: {exc}", exists=not gone)
            return 0
        if not self._running:
            return 0
        listed: set[Key] = set()
        for path, sig, at in found:
            key = (st.index, path)
            listed.add(key)
            self._apply(key, st.watch, sig, at)
        now = self._clock()
        for key in self._tracker.keys_for(st.index):
            if key not in listed:  # deleted, or in a folder we could not read: a stat decides
                self._tracker.hint(key, now, now + HINT_DELAY)
        return len(found)

    # ---------------------------------------------------------------- events from watchdog

    def _from_thread(self, index: int, path: str) -> None:
        """Observer thread: hop to the loop once per burst of events for one path."""
        key = (index, Path(path))
        with self._relay_lock:
            if key in self._relayed:
                return
            self._relayed.add(key)
        try:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._on_hint, key)
        except RuntimeError:  # loop closed: shutting down
            with self._relay_lock:
                self._relayed.discard(key)

    def _on_hint(self, key: Key) -> None:
        with self._relay_lock:
            self._relayed.discard(key)
        if not self._running:
            return
        now = self._clock()
        if not self._tracker.hint(key, now, now + HINT_DELAY):
            self._hints.setdefault(key, now + HINT_DELAY)
        self._reschedule()

    # ---------------------------------------------------------------- settle checks

    def _next_due(self) -> float | None:
        dues = [self._tracker.next_due(), min(self._hints.values(), default=None)]
        return min((d for d in dues if d is not None), default=None)

    def _reschedule(self) -> None:
        if not self._running or self._loop is None or self._check_task is not None:
            return  # a running check reschedules when it ends
        nxt = self._next_due()
        if nxt is None:
            self._cancel_timer()
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= nxt:
            return
        self._cancel_timer()
        self._timer_at = nxt
        self._timer = self._loop.call_later(max(0.0, nxt - self._clock()) + TIMER_LAG, self._fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        if self._running and self._loop is not None:
            self._check_task = self._loop.create_task(self._check(), name="watcher-settle-check")

    async def _check(self) -> None:
        try:
            await self._check_due()
        except Exception:
            log.exception("watch_check_failed")
            await asyncio.sleep(1.0)  # never spin on an unexpected error
        finally:
            self._check_task = None
            self._reschedule()

    async def _check_due(self) -> None:
        now = self._clock()
        hinted = [k for k, d in self._hints.items() if d <= now]
        for k in hinted:
            del self._hints[k]
        keys = list(dict.fromkeys([*self._tracker.due_keys(now), *hinted]))
        if not keys:
            return
        results = await asyncio.to_thread(stat_many, [k[1] for k in keys], self._clock)
        if not self._running:
            return
        ready: list[tuple[Key, Sig]] = []
        for key, (res, at) in zip(keys, results, strict=True):
            watch = self._folders[key[0]].watch
            if isinstance(res, OSError):
                log.warning("watch_stat_failed", path=str(key[1]), error=str(res))
                self._tracker.defer(key, at + max(watch.settle_seconds, RETRY_AFTER_ERROR))
            elif self._apply(key, watch, res, at).ready and res is not None:
                ready.append((key, res))
        if ready:
            await self._settle(ready)

    async def _settle(self, ready: list[tuple[Key, Sig]]) -> None:
        probe = self._probe
        verdicts: list[ProbeResult] = await asyncio.to_thread(_probe_all, probe, ready)
        if not self._running:
            return
        now = self._clock()
        for (key, sig), verdict in zip(ready, verdicts, strict=True):
            if verdict is True:
                if (ev := self._tracker.settle(key, sig)) is not None:
                    self._emit(key, ev)
            elif isinstance(verdict, Exception):
                log.warning("watch_probe_failed", path=str(key[1]), error=str(verdict))
                self._tracker.defer(key, now + RETRY_AFTER_ERROR)
            elif isinstance(verdict, str):  # stable, but the instrument has not closed the run
                log.info("watch_file_in_acquisition", path=str(key[1]))
                self._tracker.defer(key, now + max(_settle_seconds(self._tracker, key), RETRY_AFTER_ERROR))
            else:  # a writer still holds it, or it changed under the probe
                self._tracker.defer(key, now + self._tracker.probe_retry)

    def _apply(self, key: Key, watch: WatchConfig, sig: Sig | None, at: float) -> Observation:
        obs = self._tracker.observe(key, watch, sig, at)
        if obs.event is not None:
            self._emit(key, obs.event)
        return obs

    # ---------------------------------------------------------------- delivery

    def _emit(self, key: Key, ev: FileEvent) -> None:
        if not self._running:
            return
        if ev.kind == "seen":
            st = self._folders[key[0]]
            st.last_file_seen, st.last_seen_at = ev.path, time.time()
        log.info(f"file_{ev.kind}", path=str(ev.path), size=ev.size, pipeline=ev.watch.pipeline)
        self._queue.put_nowait(ev)

    async def _dispatch(self) -> None:
        while True:
            ev = await self._queue.get()
            try:
                await self._on_event(ev)
            except Exception:
                log.exception("watch_on_event_failed", path=str(ev.path), kind=ev.kind)
            finally:
                self._queue.task_done()

    async def _drain(self) -> None:
        try:
            await asyncio.wait_for(self._queue.join(), DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("watch_events_dropped", count=self._queue.qsize())
        if (d := self._dispatcher) is not None:
            d.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await d
            self._dispatcher = None


def _probe_all(probe: Callable[[Path], bool] | None, ready: list[tuple[Key, Sig]]) -> list[ProbeResult]:
    """Worker thread: ask the share probe, read the RAW header's in-acquisition flag, then re-stat,
    so "settled" names exactly what was seen and never a run the instrument is still writing."""
    out: list[ProbeResult] = []
    for (_, path), sig in ready:
        try:
            if probe is not None and not probe(path):
                out.append(False)
            elif file_in_acquisition(path):
                out.append("in acquisition")
            else:
                out.append(stat_signature(path) == sig)
        except Exception as exc:  # a probe failure must not be mistaken for "finished"
            out.append(exc)
    return out


def _settle_seconds(tracker: SettleTracker, key: Key) -> float:
    """The settle time of the watch ``key`` belongs to (0 when it is no longer tracked)."""
    watch = tracker.watch_of(key)
    return watch.settle_seconds if watch is not None else 0.0
