"""From watcher events to runs: the ingestion ledger that makes every file become exactly one run.

A file version is keyed by (path, size, mtime, SHA-256 of its content).  The same version never
becomes two runs (the ledger has a unique key, and the run and its ledger row are written in one
transaction); a new file with an old name is a new version and so a new run.  Files whose bytes do
not look like a Thermo RAW file are recorded as rejected with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import duckdb
import structlog

from qcdaemon.config import Config, WatchConfig
from qcdaemon.errors import ConfigError
from qcdaemon.rawfile.magic import RAW_MAGIC_LEN, looks_like_thermo_raw
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import Store
from qcdaemon.store.rows import LedgerKey, PipelineRow, UserRow
from qcdaemon.tools.rawtools import rawtools_missing_reason

log = structlog.get_logger("qcdaemon.engine.ingest")
RETRY_DELAYS = (10.0, 30.0, 90.0, 270.0, 810.0)  # seconds before each new try of an unreadable file


def sha256_of(path: Path) -> tuple[str, bytes]:
    """SHA-256 of the file and its first bytes (blocking: run in a thread)."""
    h = hashlib.sha256()
    head = b""
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            if len(head) < RAW_MAGIC_LEN:
                head += chunk[: RAW_MAGIC_LEN - len(head)]
            h.update(chunk)
    return h.hexdigest(), head


class Ingest:
    def __init__(self, svc: QcService, cfg: Config) -> None:
        self.svc = svc
        self.cfg = cfg
        self.targets: dict[str, tuple[PipelineRow, UserRow]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.progress_total = 0
        self.progress_done = 0
        self.retries: set[asyncio.Task[None]] = set()

    async def resolve(self) -> None:
        """Check every [[watch]] names an existing pipeline and owner (else stop start-up, naming the key);
        make each watch's owner a member of its pipeline's project; say if RawTools will be skipped."""
        if not self.cfg.engine.rawtools.command:
            log.warning("rawtools_not_available", detail=await asyncio.to_thread(rawtools_missing_reason))
        for i, w in enumerate(self.cfg.watch):
            p = await self.svc.store.call(Store.find_pipeline, w.pipeline)
            if p is None:
                raise ConfigError(f"watch[{i}].pipeline: no pipeline {w.pipeline!r} (use project-slug/pipeline-slug or uuid)")
            owner = await self.svc.store.call(Store.user_by_email, w.owner)
            if owner is None:
                raise ConfigError(f"watch[{i}].owner: no user {w.owner!r}; add it with 'qcdaemon user add'")
            if await self.svc.store.call(Store.visible_project, owner, p["project_slug"]) is None:
                # the folder's owner owns what it ingests, and must see it (issue 11): make them a member
                await self.svc.store.call(Store.add_member, p["project_id"], owner["id"])
                log.info("watch_owner_added_to_project", watch=i, owner=owner["email"], project=p["project_slug"],
                         detail="the watched folder's owner is now a member of its pipeline's project")
            self.targets[w.path] = (p, owner)

    async def on_event(self, ev: Any) -> None:
        watch: WatchConfig = ev.watch
        path = str(ev.path)
        store = self.svc.store
        if ev.kind == "seen":
            if await store.call(Store.ledger_known, path, ev.size, ev.mtime_ns) is None:
                await store.call(Store.ledger_note, watch.path, path, ev.size, ev.mtime_ns, "settling")
                log.info("file_seen", path=path, size=ev.size)
            return
        if ev.kind == "gone":
            await store.call(Store.ledger_forget_pending, path)
            log.info("file_gone", path=path)
            return
        await self._take(ev, watch, path, attempt=0)
        self._tick()

    async def _take(self, ev: Any, watch: WatchConfig, path: str, attempt: int) -> None:
        lock = self.locks.setdefault(path, asyncio.Lock())
        async with lock:
            try:
                await self._settled(ev, watch, path)
            except duckdb.InvalidInputException as exc:  # e.g. a file name that is not valid text
                log.error("file_not_storable", path=path.encode("utf-8", "replace").decode(), error=str(exc))
            except Exception as exc:  # a share that dropped, a locked file, a store error (disk full)...
                self._retry(ev, watch, path, attempt, exc)
        if not lock.locked():
            self.locks.pop(path, None)

    def _retry(self, ev: Any, watch: WatchConfig, path: str, attempt: int, exc: Exception) -> None:
        """The watcher reports a settled file once; one that could not be taken is retried here, with backoff."""
        if attempt >= len(RETRY_DELAYS):
            log.error("file_unreadable_gave_up", path=path, error=str(exc), attempts=attempt + 1)
            return
        delay = RETRY_DELAYS[attempt]
        log.warning("file_unreadable", path=path, error=str(exc), retry_in_seconds=delay)

        async def later() -> None:
            await asyncio.sleep(delay)
            await self._take(ev, watch, path, attempt + 1)

        task = asyncio.create_task(later())
        self.retries.add(task)
        task.add_done_callback(self.retries.discard)

    async def stop(self) -> None:
        for task in list(self.retries):
            task.cancel()
        await asyncio.gather(*self.retries, return_exceptions=True)

    async def _settled(self, ev: Any, watch: WatchConfig, path: str) -> None:
        store = self.svc.store
        if await store.call(Store.ledger_known, path, ev.size, ev.mtime_ns) is not None:
            await store.call(Store.ledger_forget_pending, path)
            return
        if not watch.follow_symlinks and await asyncio.to_thread(os.path.islink, ev.path):
            await self._reject(watch, path, ev, "a symbolic link (not followed: [[watch]] follow_symlinks = false)")
            return  # decided on the link itself: its target is never opened
        if ev.size == 0:
            await self._reject(watch, path, ev, "an empty file (0 bytes)")
            return
        sha, head = await asyncio.to_thread(sha256_of, ev.path)
        st = await asyncio.to_thread(os.stat, ev.path)
        if (st.st_size, st.st_mtime_ns) != (ev.size, ev.mtime_ns):
            return  # it changed while we read it: the watcher reports the new version when it settles
        key = LedgerKey(watch_path=watch.path, path=path, size=ev.size, mtime_ns=ev.mtime_ns, sha256=sha)
        if await store.call(Store.ledger_exists, key):
            return
        same = await store.call(Store.ledger_same_content, path, ev.size, sha)
        if same is not None:  # only its mtime changed (touched, restored, a share remounted): not a new run
            await store.call(Store.ledger_alias, key, same)
            log.info("file_unchanged", path=path, run_key=f"rf{same['run_id']}" if same["run_id"] else None)
            return
        if not looks_like_thermo_raw(head):
            reason = "not a Thermo RAW file (its first bytes do not match)"
            if await store.call(Store.ledger_final, key, "rejected", reason):
                log.warning("file_rejected", path=path, reason=reason)
            return
        pipeline, owner = self.targets[watch.path]
        await store.call(Store.ledger_forget_pending, path)
        try:
            run = await self.svc.new_run(
                pipeline, ev.path.name, source="watch", owner_id=owner["id"], stored_path=path, size=ev.size,
                sha256=sha, ledger=key,
            )
        except duckdb.ConstraintException:
            return  # the same version was ingested concurrently
        log.info("file_queued", path=path, run_key=run["run_key"], pipeline=watch.pipeline)
        # an earlier version of this file that failed (read while truncated, say) is replaced by this one:
        # it keeps its history in the run list, and leaves qc-data
        older = await store.call(Store.failed_runs_of_path, path, run["id"])
        if older:
            await store.call(Store.supersede_runs, older, run["id"])
            log.info("runs_superseded", path=path, run_key=run["run_key"], superseded=[f"rf{i}" for i in older])

    async def _reject(self, watch: WatchConfig, path: str, ev: Any, reason: str) -> None:
        """A settled candidate that is not read at all, rejected in the ledger with the reason (issue 12)."""
        key = LedgerKey(watch_path=watch.path, path=path, size=ev.size, mtime_ns=ev.mtime_ns, sha256="-")
        if await self.svc.store.call(Store.ledger_final, key, "rejected", reason):
            log.warning("file_rejected", path=path, reason=reason)

    # -- a progress line for a large first sweep, in the foreground only ---------------------

    def expect(self, n: int) -> None:
        self.progress_total, self.progress_done = n, 0

    def _tick(self) -> None:
        if not self.progress_total:
            return
        self.progress_done += 1
        if sys.stderr.isatty() and self.cfg.mode == "foreground":
            width = 30
            frac = min(self.progress_done / self.progress_total, 1.0)
            bar = "#" * int(frac * width)
            sys.stderr.write(f"\rfirst sweep [{bar:<{width}}] {self.progress_done}/{self.progress_total} files")
            if self.progress_done >= self.progress_total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        if self.progress_done >= self.progress_total:
            self.progress_total = 0
