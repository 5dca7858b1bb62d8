"""Start-up reconciliation: what a kill can leave behind is cleared before the engine starts (issue 12).

- upload inputs without a run: a kill between moving an upload into ``inputs/<id>/`` and
  committing its run leaves a complete file nobody knows; it is removed (the client got no 201);
- partial uploads (``incoming/*.part``): nothing uploads while the daemon starts;
- work folders of runs that no longer exist, and of finished runs (done or cancelled; a failed
  run's folder is kept with its logs) older than ``[engine] work_retention_hours``;
- ledger rows in impossible states: a pending row (``seen``/``settling``, no hash) is only the
  watcher's note (it reports the file again when it settles); a row pointing at a missing run is
  ``rejected``; a row whose state is not its run's state gets the run's.

Nothing in a watched folder is touched: runs of watched files point at the instrument's file,
which this module never deletes (only files below the daemon's own ``inputs`` folders).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import structlog

from qcdaemon.config import Config
from qcdaemon.core.clock import utcnow
from qcdaemon.core.paths import pipeline_inputs
from qcdaemon.store import AsyncStore, Store

log = structlog.get_logger("qcdaemon.engine")

_RUN_DIR = re.compile(r"rf([0-9]{1,18})")
FINISHED = ("done", "cancelled")


def _known(store: Store) -> dict[str, Any]:
    runs = store.rows("SELECT id, state, stored_path, created_at FROM runs")
    busy = {r["run_id"] for r in store.rows("SELECT DISTINCT run_id FROM stages WHERE state IN ('queued', 'running')")}
    pipelines = [r["path"] for r in store.rows("SELECT path FROM pipelines")]
    return {"runs": {r["id"]: r for r in runs}, "busy": busy, "pipelines": pipelines}


def _fix_ledger(store: Store) -> dict[str, int]:
    with store.transaction():
        pending = store.scalar("SELECT count(*) FROM files WHERE sha256 = ''")
        store.execute("DELETE FROM files WHERE sha256 = ''")
        missing = store.scalar(
            "SELECT count(*) FROM files f WHERE f.run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = f.run_id)"
        )
        store.execute(
            "UPDATE files SET state = 'rejected', reason = 'its run no longer exists', run_id = NULL, updated_at = ?"
            " WHERE run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = files.run_id)",
            [utcnow()],
        )
        stale = store.scalar(
            "SELECT count(*) FROM files f JOIN runs r ON r.id = f.run_id WHERE f.state <> r.state"
        )
        store.execute(
            "UPDATE files SET state = r.state, updated_at = ? FROM runs r WHERE r.id = files.run_id AND files.state <> r.state",
            [utcnow()],
        )
    return {"ledger_pending_dropped": int(pending or 0), "ledger_orphans": int(missing or 0),
            "ledger_states_fixed": int(stale or 0)}


def _sweep_files(cfg: Config, known: dict[str, Any], retention_hours: float) -> dict[str, int]:
    stored = {os.path.normcase(os.path.abspath(r["stored_path"])) for r in known["runs"].values() if r["stored_path"]}
    out = {"orphan_inputs": 0, "partial_uploads": 0, "work_folders": 0}
    out["work_folders"] = _prune_work(cfg, known, retention_hours)
    for pipeline_path in known["pipelines"]:
        inputs = pipeline_inputs(Path(pipeline_path))
        if not inputs.is_dir():
            continue
        for folder in inputs.iterdir():
            if not folder.is_dir() or folder.is_symlink():
                continue
            files = [p for p in folder.rglob("*") if p.is_file()]
            if not any(os.path.normcase(os.path.abspath(p)) in stored for p in files):
                shutil.rmtree(folder, ignore_errors=True)
                out["orphan_inputs"] += len(files) or 1
                log.info("orphan_input_removed", folder=str(folder), files=len(files))
    incoming = cfg.files.incoming
    if incoming.is_dir():
        for part in incoming.glob("*.part"):
            part.unlink(missing_ok=True)
            out["partial_uploads"] += 1
    return out


def _prune_work(cfg: Config, known: dict[str, Any], retention_hours: float) -> int:
    """Work folders of runs that do not exist, and of finished runs older than the retention."""
    removed = 0
    work = cfg.files.work
    if work.is_dir():
        cutoff = time.time() - retention_hours * 3600
        for folder in work.iterdir():
            m = _RUN_DIR.fullmatch(folder.name)
            if not m or not folder.is_dir():
                continue
            run = known["runs"].get(int(m.group(1)))
            gone = run is None
            finished = run is not None and run["state"] in FINISHED and run["id"] not in known["busy"]
            if gone or (finished and folder.stat().st_mtime < cutoff):
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed


async def prune_work_folders(store: AsyncStore, cfg: Config) -> int:
    """While running (the engine calls it every hour): finished runs' work folders past the retention.

    Only work folders: upload inputs are reconciled at start-up only (an upload in progress has
    its file in place a moment before its run is committed)."""
    known = await store.call(_known)
    removed = await asyncio.to_thread(_prune_work, cfg, known, cfg.engine.work_retention_hours)
    if removed:
        log.info("work_folders_pruned", removed=removed, retention_hours=cfg.engine.work_retention_hours)
    return removed


async def reconcile(store: AsyncStore, cfg: Config) -> dict[str, int]:
    """Clear what a kill left behind; returns what was done (also logged)."""
    started = dt.datetime.now()
    result = await store.call(_fix_ledger)
    known = await store.call(_known)
    result.update(await asyncio.to_thread(_sweep_files, cfg, known, cfg.engine.work_retention_hours))
    if any(result.values()):
        log.info("startup_reconciled", **result, seconds=round((dt.datetime.now() - started).total_seconds(), 2))
    return result
