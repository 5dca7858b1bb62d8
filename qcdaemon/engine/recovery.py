"""Stages whose outcome could not be recorded, and a full disk (issue 12).

When the store cannot write (the disk is full), a worker cannot record its stage's outcome, nor
put the stage back in the queue: the row stays ``running`` with nothing running it.  The engine's
:class:`Recovery` notices such stages (``running`` in the store, not running in the engine) and
puts them back in the queue as soon as the store can write again, without a restart; the stage
then runs again from a fresh work folder.  A user's retry or cancel of such a stage releases it
at once.

Before a stage starts, :meth:`Recovery.low_space` checks the data folder's free space
(``[engine] min_free_mb``): a stage does not start on a (nearly) full disk, it waits in the queue.
A stage that failed while the disk was (nearly) full says so in its reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import shutil
from collections.abc import Callable
from pathlib import Path

import structlog

from qcdaemon.config import Config
from qcdaemon.core.clock import utcnow
from qcdaemon.engine.reconcile import prune_work_folders
from qcdaemon.engine.stages.common import Outcome
from qcdaemon.store import AsyncStore, Store

log = structlog.get_logger("qcdaemon.engine")

#: How often the engine looks for stages nobody runs, and how long a claim may be unregistered.
SWEEP_SECONDS = 5.0
GRACE_SECONDS = 2.0
#: After a stage failed on a full disk, stages start again once this much (or min_free_mb) is free.
RESUME_MB = 8
SPACE_POLL_SECONDS = 2.0
#: How often finished runs' work folders past ``[engine] work_retention_hours`` are removed.
PRUNE_SECONDS = 3600.0

Key = tuple[int, str]


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    return "no space left on device" in str(exc).lower() or "disk quota exceeded" in str(exc).lower()


def free_mib(path: Path) -> int:
    """Free MiB on the file system holding ``path`` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free // (1 << 20)


def _orphans(store: Store, live: set[Key], before: dt.datetime, run_id: int | None) -> list[Key]:
    rows = store.rows(
        "SELECT run_id, stage FROM stages WHERE state = 'running' AND (started_at IS NULL OR started_at < ?)"
        + (" AND run_id = ?" if run_id is not None else ""),
        [before, *([run_id] if run_id is not None else [])],
    )
    return [(r["run_id"], r["stage"]) for r in rows if (r["run_id"], r["stage"]) not in live]


def _release(store: Store, live: set[Key], before: dt.datetime, run_id: int | None, state: str) -> list[Key]:
    """Stages the store says are running and the engine does not run: back to the queue (not
    counted as an attempt: the tool did not fail), or cancelled."""
    keys = _orphans(store, live, before, run_id)
    for rid, stage in keys:
        if state == "queued":
            store.requeue_stage(rid, stage, count_attempt=False)
        else:
            store.finish_stage(rid, stage, state, error="cancelled by user")
    return keys


class Recovery:
    def __init__(self, store: AsyncStore, cfg: Config, live: Callable[[], set[Key]], wake: Callable[[], None]) -> None:
        self.store = store
        self.cfg = cfg
        self.live = live
        self.wake = wake
        self.task: asyncio.Task[None] | None = None
        self.failing = False
        self.disk_full = False

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._loop(), name="engine-recovery")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def _loop(self) -> None:
        last_prune = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            await self.sweep()
            if asyncio.get_running_loop().time() - last_prune >= PRUNE_SECONDS:
                last_prune = asyncio.get_running_loop().time()
                try:
                    await prune_work_folders(self.store, self.cfg)
                except Exception as exc:  # a folder in use, the store busy: next hour
                    log.warning("work_prune_failed", error=str(exc)[:300])

    async def sweep(self, run_id: int | None = None, *, state: str = "queued", grace: float = GRACE_SECONDS) -> list[Key]:
        """Release stages nobody runs; False-free: a store that still cannot write is tried again later."""
        before = utcnow() - dt.timedelta(seconds=grace)
        try:
            keys = await self.store.call(_release, self.live(), before, run_id, state)
        except Exception as exc:
            if not self.failing:
                log.warning("stage_recovery_waiting", error=str(exc)[:300], disk_full=is_disk_full(exc))
            self.failing = True
            return []
        self.failing = False
        for rid, stage in keys:
            if state == "queued":
                log.info("stage_recovered", run_key=f"rf{rid}", stage=stage,
                         reason="no worker ran it (its outcome could not be recorded); it runs again")
            else:
                log.info("stage_cancelled", run_key=f"rf{rid}", stage=stage, reason="cancelled by user while stuck")
        if keys:
            self.wake()
        return keys

    async def release(self, run_id: int, *, cancel: bool = False) -> list[Key]:
        """A user's retry or cancel of ``run_id``: its stages nobody runs are released now."""
        return await self.sweep(run_id, state="cancelled" if cancel else "queued", grace=0.0)

    async def low_space(self) -> str | None:
        """Why no stage may start now (the disk is nearly full), or None."""
        need = self.cfg.engine.min_free_mb
        if need <= 0:
            return None
        free = await asyncio.to_thread(free_mib, self.cfg.data_dir)
        if free < need:
            return f"the disk of the data folder is nearly full ({free} MiB free, [engine] min_free_mb = {need})"
        return None

    async def explain(self, outcome: Outcome) -> tuple[Outcome, bool]:
        """A failed outcome on a (nearly) full disk says so (a tool's own message may not: "exit code 1"),
        and comes with True: the engine holds the stage until space returns instead of failing it."""
        if outcome.get("state") != "failed":
            return outcome, False
        error = str(outcome.get("error") or "")
        full = "no space left on device" in error.lower() or error.startswith("the disk is full")
        if not full:
            try:
                full = await asyncio.to_thread(free_mib, self.cfg.data_dir) < max(self.cfg.engine.min_free_mb, RESUME_MB)
            except OSError:
                full = False
        if full:
            if not error.startswith("the disk is full"):
                error = f"the disk is full ({error})" if error else "the disk is full"
            outcome = Outcome(**{**outcome, "error": error})
        return outcome, full

    async def hold(self, run_id: int, stage: str, reason: str) -> None:
        """Back to the queue with the reason; no stage starts until space returns (:meth:`wait_for_space`)."""
        self.disk_full = True
        log.warning("stage_waiting_for_disk_space", run_key=f"rf{run_id}", stage=stage, reason=reason[:300])

        def requeue(store: Store) -> None:
            store.requeue_stage(run_id, stage, count_attempt=False)
            store.execute("UPDATE stages SET error = ? WHERE run_id = ? AND stage = ?",
                          [f"{reason}; it runs again when space returns", run_id, stage])

        try:
            await self.store.call(requeue)
        except Exception as exc:  # the store cannot write either: the sweep releases the stage later
            log.warning("stage_recovery_waiting", run_key=f"rf{run_id}", stage=stage, error=str(exc)[:300])

    async def wait_for_space(self) -> None:
        """Return once stages may start: at once, unless a stage failed on a full disk and space has
        not returned yet (checked every few seconds)."""
        while self.disk_full:
            free = await asyncio.to_thread(free_mib, self.cfg.data_dir)
            if free >= max(self.cfg.engine.min_free_mb, RESUME_MB):
                self.disk_full = False
                log.info("disk_space_returned", free_mib=free)
                self.wake()
                return
            await asyncio.sleep(SPACE_POLL_SECONDS)


def stage_error(exc: BaseException) -> str:
    """The reason of a stage that raised ``exc``."""
    return f"the disk is full: {exc}" if is_disk_full(exc) else str(exc)
