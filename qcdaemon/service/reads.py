"""The reads behind the API: projects, pipelines, QC data, protein groups, the mzQC export, chromatograms."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from qcdaemon import __version__
from qcdaemon.core.runkeys import run_id_of
from qcdaemon.errors import BadRequest, NotFound
from qcdaemon.qc import mzqc, qcdata
from qcdaemon.service.base import ServiceBase
from qcdaemon.store import Store
from qcdaemon.store.rows import PipelineRow, QcValue, RunRow, UserRow


@dataclass(frozen=True, slots=True)
class Answer:
    """A read route's answer: JSON bytes as computed, or the answer cache's gzip file (open)."""

    body: bytes = b""
    gzip_file: BinaryIO | None = None


class Reads(ServiceBase):
    """The answers of the read routes and the exports; each checks that the user may see the pipeline."""

    async def _answer(self, key: list[Any], compute: Callable[[], Awaitable[bytes]]) -> Answer:
        """The cached answer to ``key`` while the store has not been written to since it was
        computed, else ``compute()``'s, kept (compressed after it is returned, off the loop and off
        the store's threads).  The version is read before computing (service/answercache.py)."""
        version = self.store.data_version
        ref = json.dumps(key, default=str)  # the request's parameters, whatever JSON they were
        kept = await asyncio.to_thread(self.answers.open, ref, version)
        if kept is not None:
            return Answer(gzip_file=kept)
        body = await compute()
        asyncio.get_running_loop().run_in_executor(self._answer_pool, self.answers.remember, ref, version, body)
        return Answer(body)

    # -- reads --------------------------------------------------------------------------------

    async def projects(self, user: UserRow) -> list[dict[str, Any]]:
        return [
            {"pk": p["id"], "name": p["name"], "description": p["description"], "slug": p["slug"]}
            for p in await self.store.light(Store.visible_projects, user)
        ]

    async def pipelines(self, user: UserRow, project: str | None) -> list[dict[str, Any]]:
        proj = await self.store.light(Store.visible_project, user, project) if project else None
        if proj is None:
            return []
        return [
            {"uuid": p["uuid"], "slug": p["slug"], "name": p["name"], "path_as_str": p["path"]}
            for p in await self.store.light(Store.pipelines_of, proj["id"])
        ]

    async def pipeline_uploaders(self, user: UserRow, project: str | None, pipeline: str | None) -> list[dict[str, str]]:
        if not project or not pipeline:
            return []
        p = await self.store.light(Store.visible_pipeline, user, project, pipeline)
        if p is None:
            return []
        return [{"label": e, "value": e} for e in await self.store.call(Store.pipeline_uploaders, p["id"])]

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
                           columns: Sequence[str] | None) -> Answer:
        """``/api/qc-data`` as JSON bytes: one read on a reader cursor, assembled in SQL (or the
        cached answer)."""
        p = await self.visible_pipeline(user, project, pipeline)

        def work(store: Store) -> bytes:
            stored = store.verdicts_of(p["id"], None, detail=False)
            verdicts = {rid: (v["verdict"], v["summary"]) for rid, v in stored.items()}
            return store.qc_data_json(p["id"], data_range, columns, verdicts)

        return await self._answer(["qc-data", p["id"], data_range, columns], lambda: self.store.read(work))

    async def _protein_runs(self, p: PipelineRow, data_range: int | None,
                            raw_files: Sequence[str] | None) -> list[RunRow]:
        runs = await self.store.read(Store.selected_runs, p["id"], data_range)
        if raw_files:
            wanted = {qcdata.stem(n).lower() for n in raw_files}
            runs = [r for r in runs if qcdata.stem(r["name"]).lower() in wanted]
        return runs

    async def _protein_run_names(self, p: PipelineRow, data_range: int | None,
                                 raw_files: Sequence[str] | None) -> list[tuple[int, str]]:
        """``_protein_runs``' (id, name) pairs, read without whole rows."""
        runs = await self.store.read(Store.selected_run_names, p["id"], data_range)
        if raw_files:
            wanted = {qcdata.stem(n).lower() for n in raw_files}
            runs = [r for r in runs if qcdata.stem(r[1]).lower() in wanted]
        return runs

    async def protein_names(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                            raw_files: Sequence[str] | None, remove_con: bool, remove_rev: bool) -> dict[str, list[Any]]:
        p = await self.visible_pipeline(user, project, pipeline)
        runs = await self._protein_runs(p, data_range, raw_files)
        groups = await self.store.read(Store.protein_names, [r["id"] for r in runs], remove_con, remove_rev)
        return qcdata.protein_names_answer(groups)

    async def protein_names_json(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                                 raw_files: Sequence[str] | None, remove_con: bool, remove_rev: bool) -> Answer:
        p = await self.visible_pipeline(user, project, pipeline)

        async def compute() -> bytes:
            runs = await self._protein_run_names(p, data_range, raw_files)
            return await self.store.read(Store.protein_names_json, [r[0] for r in runs], remove_con, remove_rev)

        return await self._answer(["protein-names", p["id"], data_range, raw_files, remove_con, remove_rev], compute)

    async def protein_groups(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                             raw_files: Sequence[str] | None, names: Sequence[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        p = await self.visible_pipeline(user, project, pipeline)
        runs = await self._protein_runs(p, data_range, raw_files)
        rows = await self.store.read(Store.protein_rows, [r["id"] for r in runs], list(names))
        return qcdata.protein_groups_answer(rows, {r["id"]: r for r in runs}, columns)

    async def protein_groups_json(self, user: UserRow, project: str, pipeline: str, data_range: int | None,
                                  raw_files: Sequence[str] | None, names: Sequence[str],
                                  columns: Sequence[str]) -> Answer:
        p = await self.visible_pipeline(user, project, pipeline)

        async def compute() -> bytes:
            runs = await self._protein_run_names(p, data_range, raw_files)
            return await self.store.read(Store.protein_groups_json, [(r[0], qcdata.stem(r[1])) for r in runs],
                                         list(names), list(columns))

        return await self._answer(["protein-groups", p["id"], data_range, raw_files, names, columns], compute)

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
