"""Runs: new ones with their stage plan, what the engine did (overview, rejected files), and changing them
(flag, accept, retry, cancel, delete)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qcdaemon.core.paths import DataPaths
from qcdaemon.core.runkeys import run_id_of
from qcdaemon.errors import BadRequest, Conflict, Forbidden, NotFound, QcdaemonError
from qcdaemon.qc import qcdata
from qcdaemon.search.sagepy_api import unavailable_reason
from qcdaemon.service.base import ServiceBase
from qcdaemon.store import Store
from qcdaemon.store.rows import LedgerKey, PipelineRow, RunOverview, RunRow, UserRow
from qcdaemon.tools.rawtools import rawtools_missing_reason

ACTIONS: dict[str, dict[str, Any]] = {
    "flag": {"flagged": True},
    "unflag": {"flagged": False},
    "accept": {"use_downstream": True},
    "reject": {"use_downstream": False},
}


def _remove_run_files(files: DataPaths, run: RunRow) -> list[str]:
    """Blocking: the run's work folder and, for an upload, its stored copy (only inside the data folder)."""
    import shutil

    root = files.root.resolve()
    removed = []
    work = files.work_of(run["run_key"])
    if work.is_dir():
        shutil.rmtree(work, ignore_errors=True)
        removed.append(str(work))
    stored = Path(run["stored_path"]).resolve() if run["stored_path"] else None
    if run.get("source") == "upload" and stored is not None and stored.is_relative_to(root) and stored.is_file():
        stored.unlink()
        removed.append(str(stored))
    return removed


class RunChanges(ServiceBase):
    """New runs and changes to runs (and what the engine did with the files)."""

    # -- run state changes --------------------------------------------------------------------

    async def select_runs(self, user: UserRow, p: PipelineRow, *, run_keys: Sequence[str] | None,
                          raw_file_ids: Sequence[Any] | None, raw_files: Sequence[str] | None) -> list[RunRow]:
        """The selected runs, read by id (not every run of the pipeline: at 10,000 runs that held
        the GIL ~90 ms a flag); the first key, id or name in the given order that names no run of
        the pipeline is the error, as before."""
        chosen: list[RunRow] = []
        if run_keys is not None or raw_file_ids is not None:
            wanted: list[tuple[Any, int | None, QcdaemonError | None]] = []
            for key in (run_keys if run_keys is not None else raw_file_ids or []):
                if run_keys is not None:
                    rid = run_id_of(str(key).strip())
                    miss = NotFound(f"run key {key!r} does not exist in this pipeline")
                    wanted.append((key, rid, None if rid is not None else miss))
                    continue
                try:
                    n = int(str(key).strip())
                except ValueError:
                    wanted.append((key, None, BadRequest(f"raw_file_ids: {key!r} is not an integer")))
                    continue
                wanted.append((key, n, None))
            by_id = {r["id"]: r for r in await self.store.light(
                Store.runs_by_ids, p["id"], [rid for _, rid, _ in wanted if rid is not None])}
            for key, rid, error in wanted:
                if error is not None:
                    raise error
                if rid not in by_id:
                    raise NotFound(f"run key {key!r} does not exist in this pipeline" if run_keys is not None
                                   else f"raw file id {rid} does not exist in this pipeline")
                chosen.append(by_id[rid])
        elif raw_files is not None:
            names = await self.store.light(Store.run_names_of, p["id"])
            ids: list[int] = []
            for name in raw_files:
                hits = [rid for rid, n in names if qcdata.stem(n) == qcdata.stem(str(name).strip())]
                if not hits:
                    raise NotFound(f"raw file {name!r} does not exist in this pipeline")
                ids.extend(hits)
            by_id = {r["id"]: r for r in await self.store.light(Store.runs_by_ids, p["id"], ids)}
            chosen = [by_id[rid] for rid in ids if rid in by_id]
        else:
            raise BadRequest("one of run_keys, raw_file_ids or raw_files is required")
        if not chosen:
            raise BadRequest("the selection is empty")
        unique = list({r["id"]: r for r in chosen}.values())
        if not user["is_admin"]:
            foreign = [r for r in unique if r["owner_id"] != user["id"]]
            if foreign:
                raise Forbidden(f"run {foreign[0]['run_key']} is not yours to change; nothing was changed")
        return unique

    async def rawfile_action(self, user: UserRow, project: str, pipeline: str, action: str,
                             **selector: Any) -> dict[str, Any]:
        if action not in ACTIONS:
            raise BadRequest(f"action: unknown action {action!r} (one of {', '.join(ACTIONS)})")
        p = await self.store.call(Store.visible_pipeline, user, project, pipeline)
        if p is None:
            raise Forbidden("Missing permissions for requested pipeline.")
        runs = await self.select_runs(user, p, **selector)
        await self.store.call(Store.set_run_fields, [r["id"] for r in runs], ACTIONS[action])
        if "use_downstream" in ACTIONS[action]:  # rejected runs leave the guide sets' limits
            await self.quality.recompute(p["id"])
        return {"status": "success", "updated": [r["run_key"] for r in runs]}

    # -- processing visibility ------------------------------------------------------------------

    async def runs_overview(self, user: UserRow | None, project: str | None = None,
                            pipeline: str | None = None, limit: int = 100) -> list[RunOverview]:
        pid = None
        if project and pipeline:
            p = await self.store.call(Store.visible_pipeline, user, project, pipeline) if user else \
                await self.store.call(Store.find_pipeline, f"{project}/{pipeline}")
            if p is None:
                raise Forbidden("Missing permissions for requested pipeline.")
            pid = p["id"]
        projects = None
        if user and not user["is_admin"]:
            # filtered in the query, before the limit: others' newer runs must not crowd out one's own
            projects = [p["id"] for p in await self.store.call(Store.visible_projects, user)]
        return await self.store.call(Store.runs_overview, pid, limit, projects)

    async def run_for_change(self, user: UserRow | None, run_key: str) -> RunRow:
        rid = run_id_of(str(run_key or "").strip())
        if rid is None:
            raise BadRequest(f"run_key: {run_key!r} is not a run key like 'rf12'")
        try:
            run = await self.store.call(Store.run, rid)
        except NotFound:
            raise NotFound(f"run {run_key} does not exist") from None
        if user is not None and not user["is_admin"]:
            if await self.store.call(Store.visible_project, user, run.get("project_slug", "")) is None:
                raise NotFound(f"run {run_key} does not exist")
            if run["owner_id"] != user["id"]:
                raise Forbidden(f"run {run_key} is not yours to change")
        return run

    async def retry(self, user: UserRow | None, run_key: str, stages: Sequence[str] | None = None) -> dict[str, Any]:
        run = await self.run_for_change(user, run_key)
        # a stage whose outcome could not be recorded (disk full) is released back to the queue first
        released = await self.engine.release_stuck(run["id"]) if self.engine is not None else []
        requeued = [*released, *await self.store.call(Store.retry_run, run["id"], stages)]
        if not requeued:
            raise Conflict(f"run {run_key} has no failed or cancelled stage to retry")
        if self.engine is not None:
            self.engine.wake()
        return {"run_key": run["run_key"], "requeued": requeued}

    async def cancel(self, user: UserRow | None, run_key: str) -> dict[str, Any]:
        """``cancelled`` says whether anything was queued or running (a finished run: false, 200)."""
        run = await self.run_for_change(user, run_key)
        before = await self.store.call(Store.stages, run["id"])
        active = any(s["state"] in ("queued", "running") for s in before)
        if self.engine is not None:
            await self.engine.release_stuck(run["id"], cancel=True)
        running = await self.store.call(Store.cancel_run, run["id"]) if active else []
        if running and self.engine is not None:
            self.engine.cancel(run["id"])
        return {"run_key": run["run_key"], "cancelled": active, "stopping": running}

    async def delete_run(self, user: UserRow | None, run_key: str) -> dict[str, Any]:
        """An admin removes a run with its values and its files in the data folder (an upload's
        stored copy, the work folder); a watched folder's original file is never touched."""
        if user is not None and not user["is_admin"]:
            raise Forbidden("only an admin can delete a run")
        run = await self.run_for_change(user, run_key)
        if any(s["state"] == "running" for s in await self.store.call(Store.stages, run["id"])):
            raise Conflict(f"run {run['run_key']} is running; cancel it first")
        await self.store.call(Store.delete_run, run["id"])
        removed = await asyncio.to_thread(_remove_run_files, self.cfg.files, run)
        return {"run_key": run["run_key"], "deleted": True, "removed": removed}

    async def rejected_files(self, user: UserRow | None, limit: int = 100) -> list[dict[str, Any]]:
        """Files of watched folders that were refused (not RAW), with the reason; a non-admin sees
        those of folders feeding pipelines they can see."""
        rows = await self.store.call(Store.ledger_rejected, limit)
        pipeline_of = {w.path: w.pipeline for w in self.cfg.watch}
        visible: dict[str, bool] = {}
        out = []
        for r in rows:
            ref = pipeline_of.get(r["watch_path"])
            if user is not None and not user["is_admin"]:
                if (ref or "") not in visible:
                    p = await self.store.call(Store.find_pipeline, ref) if ref else None
                    visible[ref or ""] = p is not None and await self.store.call(
                        Store.visible_project, user, p.get("project_slug", "")) is not None
                if not visible[ref or ""]:
                    continue
            out.append({"path": r["path"], "name": Path(r["path"]).name, "size": r["size"], "state": r["state"],
                        "reason": r["reason"], "pipeline": ref, "seen_at": r["updated_at"]})
        return out

    # -- new runs ---------------------------------------------------------------------------------

    def stage_plan(self, pipeline: PipelineRow) -> list[tuple[str, str | None]]:
        """The stages of a new run; a stage that cannot run here is created 'skipped' with the reason."""
        eng = self.cfg.engine
        mq_missing = [k for k in ("fasta_path", "mqpar_path") if not pipeline.get(k)]
        return [
            ("native", None if eng.native else "native metrics are switched off ([engine] native = false)"),
            ("rawtools", None if eng.rawtools.command else rawtools_missing_reason()),
            ("search", "the search is switched off ([engine.search] enabled = false)" if not eng.search.enabled
             else "the pipeline has no fasta file" if not pipeline.get("fasta_path") else unavailable_reason()),
            ("maxquant",
             "MaxQuant is not configured ([engine.maxquant] command)" if not eng.maxquant.command
             else f"the pipeline has no {' and no '.join(m.split('_')[0] for m in mq_missing)} file"
             if mq_missing else None),
        ]

    async def new_run(self, pipeline: PipelineRow, name: str, *, source: str, owner_id: int | None,
                      stored_path: str, size: int, sha256: str, ledger: LedgerKey | None = None) -> RunRow:
        run = await self.store.call(Store.create_run,
            pipeline["id"], name, source=source, owner_id=owner_id, stored_path=stored_path, size=size,
            sha256=sha256, stages=self.stage_plan(pipeline), ledger=ledger,
        )
        if self.engine is not None:
            self.engine.wake()
        return run
