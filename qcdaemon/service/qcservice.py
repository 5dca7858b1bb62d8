"""The use cases behind the API and the CLI: who may see and change what, and the answers.

Handlers and CLI commands stay thin and call these; this module knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from qcdaemon import __version__
from qcdaemon.config import DEFAULT_RAWTOOLS_ARGS, Config
from qcdaemon.core import security
from qcdaemon.core.paths import DataPaths
from qcdaemon.core.runkeys import run_id_of
from qcdaemon.errors import BadRequest, ConfigError, Conflict, Forbidden, NotFound
from qcdaemon.qc import mzqc, qcdata
from qcdaemon.search.params import SearchParams
from qcdaemon.search.sagepy_api import unavailable_reason
from qcdaemon.service.quality import QualityService
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.rows import LedgerKey, PipelineRow, ProjectRow, QcValue, RunOverview, RunRow, UserRow
from qcdaemon.tools.rawtools import rawtools_missing_reason

T = TypeVar("T")

ACTIONS: dict[str, dict[str, Any]] = {
    "flag": {"flagged": True},
    "unflag": {"flagged": False},
    "accept": {"use_downstream": True},
    "reject": {"use_downstream": False},
}


def slugify(value: str) -> str:
    """Django's slugify: ASCII, lower case, runs of spaces/dashes to one dash."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value.lower())
    return re.sub(r"[-\s]+", "-", value).strip("-_")


def _resolved(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


def _found(row: T | None, what: str) -> T:
    """A row that was just written must be there; if not, the store lost it: say which."""
    if row is None:
        raise NotFound(f"{what} does not exist")
    return row


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


class EngineControl(Protocol):
    """What the use cases may ask of a running engine: look at the queue again, stop a run's stages."""

    def wake(self) -> None: ...

    def cancel(self, run_id: int) -> None: ...

    async def release_stuck(self, run_id: int, *, cancel: bool = False) -> list[str]: ...


class QcService:
    def __init__(self, store: AsyncStore, cfg: Config, key: bytes) -> None:
        self.store = store
        self.cfg = cfg
        self.key = key
        self.engine: EngineControl | None = None  # set by the daemon when the engine runs (wake, cancel)
        self.quality = QualityService(store)  # QC verdicts, charts, guide sets, rules (qcdaemon.service.quality)

    # -- identity -----------------------------------------------------------------------------

    async def user_for_token(self, token: str) -> UserRow | None:
        return await self.store.call(Store.user_by_token_digest, security.digest(token))

    async def login(self, email: str, password: str) -> UserRow | None:
        user = await self.store.call(Store.user_by_email, email)
        ok = await asyncio.to_thread(security.verify_password, password, user["password_hash"] if user else None)
        return user if ok and user else None

    async def token_create(self, user: UserRow) -> tuple[str, bool]:
        """The user's one token: existing (created False) or new (created True).

        Look-up and creation are one step on the store thread, so that concurrent requests of one
        user cannot each create a token (the later one silently replacing the earlier one).
        """
        key = self.key

        def work(store: Store) -> tuple[str, bool]:
            row = store.token_of(user["id"])
            if row:
                token = security.unseal(key, row["sealed"])
                if token is not None and security.same(security.digest(token), row["digest"]):
                    return token, False
            token = security.new_token()
            store.put_token(user["id"], security.digest(token), security.seal(key, token))
            return token, True

        return await self.store.call(work)

    async def token_revoke(self, user: UserRow) -> bool:
        return await self.store.call(Store.delete_token, user["id"])

    # -- administration (CLI) ---------------------------------------------------------------

    async def add_user(self, email: str, password: str | None, admin: bool = False) -> UserRow:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            raise BadRequest(f"{email!r} is not an e-mail address")
        hashed = await asyncio.to_thread(security.hash_password, password) if password else None
        uid = await self.store.call(Store.create_user, email, hashed, admin)
        return _found(await self.store.call(Store.user, uid), f"user {email}")

    async def add_project(self, name: str, description: str = "", members: Sequence[str] = (),
                          created_by: str | None = None) -> ProjectRow:
        slug = slugify(name)
        if not slug:
            raise BadRequest(f"project name {name!r} gives an empty slug")
        users = [await self._user(m) for m in members]
        creator = await self._user(created_by) if created_by else None
        pid = await self.store.call(Store.create_project, name, slug, description, creator["id"] if creator else None)
        for u in users:
            await self.store.call(Store.add_member, pid, u["id"])
        return _found(await self.store.call(Store.project_by_slug, slug), f"project {slug}")

    async def add_pipeline(self, project: str, name: str, *, fasta: str | None = None, mqpar: str | None = None,
                           rawtools_args: str | None = None, read_only: bool = False,
                           search: dict[str, Any] | None = None) -> PipelineRow:
        """``search``: the pipeline's own search parameters over ``[engine.search]`` (docs/search.md)."""
        proj = await self.store.call(Store.project_by_slug, project)
        if proj is None:
            raise NotFound(f"no project with slug {project!r}")
        for label, p in (("fasta", fasta), ("mqpar", mqpar)):
            if p and not await asyncio.to_thread(Path(p).is_file):
                raise BadRequest(f"{label} file {p} does not exist")
        if search:
            try:
                SearchParams.from_config(self.cfg.engine.search, search)
            except ConfigError as exc:
                raise BadRequest(str(exc)) from None
        fasta, mqpar = await asyncio.to_thread(_resolved, fasta), await asyncio.to_thread(_resolved, mqpar)
        slug = slugify(name)
        path = self.cfg.files.pipelines / proj["slug"] / slug
        pipeline = await self.store.call(Store.create_pipeline,
            proj["id"], name, slug, str(path),
            fasta_path=fasta, mqpar_path=mqpar,
            rawtools_args=rawtools_args or DEFAULT_RAWTOOLS_ARGS, read_only=read_only,
            search_params=json.dumps(search, sort_keys=True) if search else None,
        )
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        return pipeline

    async def add_member(self, project: str, email: str) -> None:
        proj = await self.store.call(Store.project_by_slug, project)
        if proj is None:
            raise NotFound(f"no project with slug {project!r}")
        await self.store.call(Store.add_member, proj["id"], (await self._user(email))["id"])

    async def _user(self, email: str) -> UserRow:
        u = await self.store.call(Store.user_by_email, email)
        if u is None:
            raise NotFound(f"no user {email}")
        return u

    # -- reads --------------------------------------------------------------------------------

    async def projects(self, user: UserRow) -> list[dict[str, Any]]:
        return [
            {"pk": p["id"], "name": p["name"], "description": p["description"], "slug": p["slug"]}
            for p in await self.store.call(Store.visible_projects, user)
        ]

    async def pipelines(self, user: UserRow, project: str | None) -> list[dict[str, Any]]:
        proj = await self.store.call(Store.visible_project, user, project) if project else None
        if proj is None:
            return []
        return [
            {"uuid": p["uuid"], "slug": p["slug"], "name": p["name"], "path_as_str": p["path"]}
            for p in await self.store.call(Store.pipelines_of, proj["id"])
        ]

    async def pipeline_uploaders(self, user: UserRow, project: str | None, pipeline: str | None) -> list[dict[str, str]]:
        if not project or not pipeline:
            return []
        p = await self.store.call(Store.visible_pipeline, user, project, pipeline)
        if p is None:
            return []
        return [{"label": e, "value": e} for e in await self.store.call(Store.pipeline_uploaders, p["id"])]

    async def visible_pipeline(self, user: UserRow, project: str, pipeline: str) -> PipelineRow:
        p = await self.store.call(Store.visible_pipeline, user, project, pipeline)
        if p is None:
            raise Forbidden("Missing permissions for requested pipeline.")
        return p

    async def qc_data(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                      columns: Sequence[str] | None) -> dict[str, list[Any]]:
        p = await self.visible_pipeline(user, project, pipeline)

        def work(store: Store) -> dict[str, list[Any]]:
            runs = store.selected_runs(p["id"], data_range)
            stored = store.verdicts_of(p["id"], [r["id"] for r in runs], detail=False)
            verdicts = {rid: (v["verdict"], v["summary"]) for rid, v in stored.items()}
            return qcdata.build_qc_data(runs, store.qc_values([r["id"] for r in runs]), columns, verdicts)

        return await self.store.call(work)

    async def qc_data_json(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                           columns: Sequence[str] | None) -> bytes:
        """``/api/qc-data`` as JSON bytes: one read on a reader cursor, assembled in SQL."""
        p = await self.visible_pipeline(user, project, pipeline)

        def work(store: Store) -> bytes:
            stored = store.verdicts_of(p["id"], None, detail=False)
            verdicts = {rid: (v["verdict"], v["summary"]) for rid, v in stored.items()}
            return store.qc_data_json(p["id"], data_range, columns, verdicts)

        return await self.store.read(work)

    async def _protein_runs(self, p: PipelineRow, data_range: int | None,
                            raw_files: Sequence[str] | None) -> list[RunRow]:
        runs = await self.store.read(Store.selected_runs, p["id"], data_range)
        if raw_files:
            wanted = {qcdata.stem(n).lower() for n in raw_files}
            runs = [r for r in runs if qcdata.stem(r["name"]).lower() in wanted]
        return runs

    async def protein_names(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                            raw_files: Sequence[str] | None, remove_con: bool, remove_rev: bool) -> dict[str, list[Any]]:
        p = await self.visible_pipeline(user, project, pipeline)
        runs = await self._protein_runs(p, data_range, raw_files)
        groups = await self.store.read(Store.protein_names, [r["id"] for r in runs], remove_con, remove_rev)
        return qcdata.protein_names_answer(groups)

    async def protein_names_json(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                                 raw_files: Sequence[str] | None, remove_con: bool, remove_rev: bool) -> bytes:
        p = await self.visible_pipeline(user, project, pipeline)
        runs = await self._protein_runs(p, data_range, raw_files)
        return await self.store.read(Store.protein_names_json, [r["id"] for r in runs], remove_con, remove_rev)

    async def protein_groups(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                             raw_files: Sequence[str] | None, names: Sequence[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        p = await self.visible_pipeline(user, project, pipeline)
        runs = await self._protein_runs(p, data_range, raw_files)
        rows = await self.store.read(Store.protein_rows, [r["id"] for r in runs], list(names))
        return qcdata.protein_groups_answer(rows, {r["id"]: r for r in runs}, columns)

    async def protein_groups_json(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                                  raw_files: Sequence[str] | None, names: Sequence[str],
                                  columns: Sequence[str]) -> bytes:
        p = await self.visible_pipeline(user, project, pipeline)
        runs = await self._protein_runs(p, data_range, raw_files)
        return await self.store.read(Store.protein_groups_json, [(r["id"], qcdata.stem(r["name"])) for r in runs],
                                     list(names), list(columns))

    # -- run state changes --------------------------------------------------------------------

    async def select_runs(self, user: UserRow, p: PipelineRow, *, run_keys: Sequence[str] | None,
                          raw_file_ids: Sequence[Any] | None, raw_files: Sequence[str] | None) -> list[RunRow]:
        runs = await self.store.call(Store.runs_of, p["id"])
        by_id = {r["id"]: r for r in runs}
        chosen: list[RunRow] = []
        if run_keys is not None:
            for key in run_keys:
                rid = run_id_of(str(key).strip())
                if rid is None or rid not in by_id:
                    raise NotFound(f"run key {key!r} does not exist in this pipeline")
                chosen.append(by_id[rid])
        elif raw_file_ids is not None:
            for rid in raw_file_ids:
                try:
                    n = int(str(rid).strip())
                except ValueError:
                    raise BadRequest(f"raw_file_ids: {rid!r} is not an integer") from None
                if n not in by_id:
                    raise NotFound(f"raw file id {n} does not exist in this pipeline")
                chosen.append(by_id[n])
        elif raw_files is not None:
            for name in raw_files:
                hits = [r for r in runs if qcdata.stem(r["name"]) == qcdata.stem(str(name).strip())]
                if not hits:
                    raise NotFound(f"raw file {name!r} does not exist in this pipeline")
                chosen.extend(hits)
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

    # -- exports and plots ------------------------------------------------------------------------

    async def mzqc_export(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                          run_keys: Sequence[str] | None) -> dict[str, Any]:
        """The pipeline's runs as an mzQC document: all, the newest ``data_range``, or ``run_keys``
        (an unknown key is a 404; the runs keep their acquisition order either way)."""
        if run_keys and data_range is not None:
            raise BadRequest("give only one of run_keys, data_range")
        p = await self.visible_pipeline(user, project, pipeline)

        def work(store: Store) -> tuple[list[RunRow], list[QcValue]]:
            runs = store.selected_runs(p["id"], None if run_keys else data_range)
            if run_keys:
                by_key = {r["run_key"]: r for r in runs}
                for key in run_keys:
                    if str(key).strip() not in by_key:
                        raise NotFound(f"run key {key!r} does not exist in this pipeline")
                wanted = {str(k).strip() for k in run_keys}
                runs = [r for r in runs if r["run_key"] in wanted]
            return runs, store.qc_values([r["id"] for r in runs])

        runs, values = await self.store.call(work)
        by_run: dict[int, list[tuple[str, str, Any]]] = {}
        for run_id, source, name, value in values:
            by_run.setdefault(run_id, []).append((source, name, value))
        return mzqc.build_mzqc(runs, by_run, pipeline=p, created=datetime.now(UTC), version=__version__)

    async def chromatograms(self, user: UserRow, project: str, pipeline: str, run_key: str) -> dict[str, Any]:
        """The run's stored chromatograms (TIC/BPC per MS order): ``{name: {"rt": [...], "intensity": [...]}}``."""
        p = await self.visible_pipeline(user, project, pipeline)
        rid = run_id_of(str(run_key).strip())
        run = None
        if rid is not None:
            try:
                run = await self.store.call(Store.run, rid)
            except NotFound:
                run = None
        if run is None or run["pipeline_id"] != p["id"]:
            raise NotFound(f"run key {run_key!r} does not exist in this pipeline")
        return {"run_key": run["run_key"], "chromatograms": await self.store.call(Store.chromatograms, run["id"])}
