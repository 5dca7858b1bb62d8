"""Quality-control use cases: verdicts when values arrive, recomputation after edits, control
charts, instrument status, and the guide sets, annotations, exclusions and rules behind them.

Who may do what (the contract's scoping): anyone who sees a pipeline may read its QC and add
annotations; changing rules, guide sets, exclusions and the pipeline's QC settings needs the
project's creator or an admin; an annotation is removed by its author, the project's creator or an
admin; new annotation kinds are for admins. The computations are :mod:`qcdaemon.qc`'s; this module
loads their inputs from the store and stores their verdicts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from qcdaemon.errors import BadRequest, NotFound
from qcdaemon.qc.catalogue import DEFAULTS
from qcdaemon.qc.guidesets import Run, as_utc
from qcdaemon.qc.verdicts import CHART_KINDS, Verdict, chart, instrument_status
from qcdaemon.store import Store
from qcdaemon.store.rows import UserRow

from .qcaccess import parse_time
from .qcedits import QualityEdits
from .qcinputs import iso, load_inputs, settings_of, with_values
from .recording import recompute_sync, record_sync

__all__ = ["QualityService", "load_inputs", "parse_time", "recompute_sync", "record_sync", "with_values"]


class QualityService(QualityEdits):
    """The quality-control use cases: reads here, edits in :class:`~qcdaemon.service.qcedits.QualityEdits`,
    access and the verdict entry points in :class:`~qcdaemon.service.qcaccess.QualityBase`."""

    async def verdicts(self, user: UserRow, project: str, pipeline: str,
                       run_keys: Sequence[str] | None = None) -> dict[str, Any]:
        p = await self._visible(user, project, pipeline)

        def work(store: Any) -> dict[str, Any]:
            runs = store.qc_runs(p["id"])
            if run_keys is not None:
                known = {r["run_key"] for r in runs}
                for k in run_keys:
                    if k not in known:
                        raise NotFound(f"run key {k!r} does not exist in this pipeline")
                runs = [r for r in runs if r["run_key"] in set(run_keys)]
            stored = store.verdicts_of(p["id"], [r["id"] for r in runs])
            out = []
            for r in runs:
                v = stored.get(r["id"])
                item = {"run_key": r["run_key"], "name": r["name"], "acquired": iso(r["acquired"]),
                        "verdict": v["verdict"] if v else None}
                if v:
                    item |= {"summary": v["summary"], "basis": v["detail"].get("basis"),
                             "guide_set": v["guide_set"], "reasons": v["detail"]["reasons"],
                             "unchecked": v["detail"]["unchecked"], "computed_at": iso(v["computed_at"])}
                out.append(item)
            return {"project": project, "pipeline": pipeline, "runs": out}

        return await self.store.call(work)

    async def verdict_columns(self, pipeline_id: int) -> dict[int, tuple[str, str]]:
        """run id -> (verdict, reasons) for ``/api/qc-data``."""
        stored = await self.store.call(Store.verdicts_of, pipeline_id, detail=False)
        return {rid: (v["verdict"], v["summary"]) for rid, v in stored.items()}

    async def chart(self, user: UserRow, project: str, pipeline: str, metric: str,
                    kind: str = "values", *, require_values: bool = True) -> dict[str, Any]:
        if not isinstance(metric, str) or not metric:
            raise BadRequest("metric: required (a QC column name, as in /api/qc-data)")
        if kind not in CHART_KINDS:
            raise BadRequest(f"kind: {kind!r} is not one of {', '.join(CHART_KINDS)}")
        p = await self._visible(user, project, pipeline)

        def work(store: Any) -> dict[str, Any]:
            inp = load_inputs(store, p["id"])
            with_values(store, inp, columns=[metric])
            out = chart(inp.runs, inp.settings, metric, kind, inp.guide_sets, inp.exclusions, inp.annotations)
            if require_values and not any(pt["value"] is not None or pt.get("why_no_value") not in (None, "no value")
                       for pt in out["points"]) and metric not in inp.settings.rules:
                raise NotFound(f"metric {metric!r} has no values in this pipeline")
            stored = store.verdicts_of(p["id"], detail=False)
            for pt in out["points"]:
                v = stored.get(inp.ids[pt["run"]])
                pt["verdict"] = v["verdict"] if v else None
            return out | {"project": project, "pipeline": pipeline}

        return await self.store.read(self.charts.cached, (p["id"], metric, kind, require_values), work)

    async def status(self, user: UserRow, project: str | None = None,
                     pipeline: str | None = None, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        if project and pipeline:
            pipelines = [await self._visible(user, project, pipeline)]
        elif project or pipeline:
            raise BadRequest("give both project and pipeline, or neither")
        else:
            pipelines = []
            for proj in await self.store.call(Store.visible_projects, user):
                for pl in await self.store.call(Store.pipelines_of, proj["id"]):
                    pipelines.append(pl | {"project_slug": proj["slug"]})
        now = now or dt.datetime.now(dt.UTC)

        def work(store: Any) -> list[dict[str, Any]]:
            out = []
            for pl in pipelines:
                runs = store.qc_runs(pl["id"])
                settings_row = store.pipeline_qc_settings(pl["id"])
                offline = settings_row["offline_hours"] if settings_row else None
                latest = runs[-1] if runs else None
                last_file = max((as_utc(r["acquired"]) for r in runs if r["acquired"] is not None), default=None)
                verdict = None
                if latest is not None:
                    v = store.verdicts_of(pl["id"], [latest["id"]]).get(latest["id"])
                    if v is not None:
                        d = v["detail"]
                        verdict = Verdict(latest["run_key"], v["verdict"], (), tuple(d["checked"]),
                                          d["unchecked"], v["guide_set"])
                        summary = v["summary"]
                run = None if latest is None else Run(latest["run_key"], as_utc(latest["acquired"]),
                                                      bool(latest["rejected"]))
                st = instrument_status(run, verdict, now=now, last_file=last_file,
                                       offline_after=dt.timedelta(hours=offline) if offline else None)
                if verdict is not None and st["status"] in ("DANGER", "WARNING", "NO_THRESHOLD"):
                    st["reason"] = summary or st["reason"]
                out.append({"project": pl["project_slug"], "pipeline": pl["slug"], **st})
            return out

        return await self.store.call(work)

    async def metrics(self, user: UserRow, project: str, pipeline: str) -> dict[str, Any]:
        """The pipeline's metric catalogue with each metric's rules."""
        p = await self._visible(user, project, pipeline)

        def work(store: Any) -> dict[str, Any]:
            settings, offline = settings_of(store, p["id"])
            names = [r[0] for r in store.con.execute(
                "SELECT DISTINCT v.name FROM qc_values v JOIN runs r ON r.id = v.run_id WHERE r.pipeline_id = ?",
                [p["id"]]).fetchall()]
            cols = list(dict.fromkeys([*DEFAULTS, *sorted(names), *settings.rules, *settings.catalogue.overrides]))
            # where a setting comes from: a config file's [[qc]] (qcdaemon.service.qcconfig), else None
            files = {r["metric"]: r["config_file"] for r in store.metric_settings_of(p["id"])}
            ps = store.pipeline_qc_settings(p["id"])
            return {"project": project, "pipeline": pipeline,
                    "auto_guide_runs": settings.auto_guide_runs, "offline_hours": offline,
                    "config_file": ps["config_file"] if ps else None,
                    "metrics": [settings.catalogue[c].as_dict() | {
                        "rules": [s.as_dict() for s in settings.rules_for(c)],
                        "custom_rules": c in settings.rules, "has_values": c in names, "config_file": files.get(c)}
                        for c in cols if c not in ("DateAcquired", "RawFile", "RawFilePath")]}

        return await self.store.call(work)
