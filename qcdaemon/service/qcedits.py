"""Quality-control edits: rules and catalogue overrides per metric, the pipeline's QC settings,
guide sets, annotations (and their kinds) and exclusions; each recomputes the verdicts it changes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from qcdaemon.errors import BadRequest, Conflict, Forbidden, NotFound
from qcdaemon.qc.catalogue import Catalogue
from qcdaemon.qc.guidesets import as_utc, automatic_guide_sets, resolve
from qcdaemon.qc.rules import parse_rules
from qcdaemon.store import Store
from qcdaemon.store.rows import UserRow

from .qcaccess import QualityBase, parse_time
from .qcinputs import iso, load_inputs
from .recording import recompute_sync

__all__ = ["MAX_TEXT", "QualityEdits"]

MAX_TEXT = 2000
_KIND = re.compile(r"[a-z][a-z0-9_]{0,39}\Z")


class QualityEdits(QualityBase):
    # -- edits (each recomputes the pipeline's verdicts) ---------------------------------------

    async def set_rules(self, user: UserRow, project: str, pipeline: str, metric: str,
                        rules: Any = None, overrides: Any = None) -> dict[str, Any]:
        p = await self._managed(user, project, pipeline)
        if not isinstance(metric, str) or not metric.strip() or len(metric) > 200:
            raise BadRequest("metric: required, a QC column name")
        try:
            specs = parse_rules(rules) if rules is not None else None
            if overrides is not None:
                if not isinstance(overrides, Mapping):
                    raise ValueError("metric overrides must be an object")
                Catalogue({metric: dict(overrides)})
        except ValueError as exc:
            raise BadRequest(f"rules: {exc}") from None
        row = next((r for r in await self.store.call(Store.metric_settings_of, p["id"]) if r["metric"] == metric), None)
        if row is not None and row["config_file"]:
            raise Conflict(_from_file(f"{metric}'s rules and catalogue fields", row["config_file"]))
        await self.store.call(Store.put_metric_settings,
            p["id"], metric, rules=[s.as_dict() for s in specs] if specs is not None else None,
            overrides=dict(overrides) if overrides is not None else None, updated_by=user["id"])
        n = await self.recompute(p["id"])
        return {"metric": metric, "rules": [s.as_dict() for s in specs] if specs else None,
                "overrides": overrides, "recomputed": n}

    async def set_pipeline_settings(self, user: UserRow, project: str, pipeline: str, *,
                                    auto_guide_runs: Any, offline_hours: Any = None) -> dict[str, Any]:
        p = await self._managed(user, project, pipeline)
        if isinstance(auto_guide_runs, bool) or not isinstance(auto_guide_runs, int) or not 0 <= auto_guide_runs <= 10000:
            raise BadRequest("auto_guide_runs: a whole number from 0 (no automatic guide sets) to 10000")
        row = await self.store.call(Store.pipeline_qc_settings, p["id"])
        if row is not None and row["config_file"]:
            raise Conflict(_from_file("this pipeline's auto_guide_runs and offline_hours", row["config_file"]))
        if offline_hours is not None and (isinstance(offline_hours, bool) or not isinstance(offline_hours, (int, float))
                                          or not math.isfinite(offline_hours) or offline_hours <= 0):
            raise BadRequest("offline_hours: a positive number of hours, or null")
        await self.store.call(Store.put_pipeline_qc_settings, p["id"], auto_guide_runs=auto_guide_runs,
                                                  offline_hours=offline_hours, updated_by=user["id"])
        return {"auto_guide_runs": auto_guide_runs, "offline_hours": offline_hours,
                "recomputed": await self.recompute(p["id"])}

    async def guide_sets(self, user: UserRow, project: str, pipeline: str) -> dict[str, Any]:
        p = await self._visible(user, project, pipeline)

        def work(store: Any) -> dict[str, Any]:
            inp = load_inputs(store, p["id"])
            auto = automatic_guide_sets(inp.runs, inp.settings.auto_guide_runs, inp.annotations, inp.settings.kinds)
            return {"guide_sets": [g.as_dict() for g in resolve([*inp.guide_sets, *auto], inp.runs)]}

        return await self.store.call(work)

    async def add_guide_set(self, user: UserRow, project: str, pipeline: str, *, label: Any = "",
                            start: Any = None, end: Any = None, run_keys: Any = None) -> dict[str, Any]:
        p = await self._managed(user, project, pipeline)
        if not isinstance(label, str) or len(label) > 200:
            raise BadRequest("label: text of at most 200 characters")
        if run_keys is not None:
            if start is not None or end is not None:
                raise BadRequest("give either start and end, or run_keys")
            if not isinstance(run_keys, list) or not run_keys or not all(isinstance(k, str) for k in run_keys):
                raise BadRequest("run_keys: a non-empty list of run keys such as 'rf12'")
            known = {r["run_key"] for r in await self.store.call(Store.qc_runs, p["id"])}
            for k in run_keys:
                if k.strip() not in known:
                    raise NotFound(f"run key {k!r} does not exist in this pipeline")
            t0 = t1 = None
            keys = sorted({k.strip() for k in run_keys})
        else:
            if start is None or end is None:
                raise BadRequest("give start and end (ISO 8601 times), or run_keys")
            t0, t1 = parse_time(start, "start"), parse_time(end, "end")
            if t1 < t0:
                raise BadRequest("end: must not be before start")
            keys = None
        g = await self.store.call(Store.add_guide_set, p["id"], label=label, start=t0, end=t1, run_keys=keys,
                                           created_by=user["id"])
        if t0 is None:  # by run keys: in force from its earliest run
            wanted = keys or []
            times = [as_utc(r["acquired"]) for r in await self.store.call(Store.qc_runs, p["id"]) if r["run_key"] in wanted]
            t0_force = min(times)
        else:
            t0_force = t0
        n = await self.store.call(recompute_sync, p["id"], t0_force)
        return {"id": f"gs{g['id']}", "label": g["label"], "start": iso(g["start_at"]),
                "end": iso(g["end_at"]), "run_keys": g["run_keys"], "recomputed": n}

    async def delete_guide_set(self, user: UserRow, project: str, pipeline: str, gid: Any) -> dict[str, Any]:
        p = await self._managed(user, project, pipeline)
        m = re.fullmatch(r"gs([0-9]{1,9})", str(gid).strip())
        if not m:
            raise BadRequest(f"id: {gid!r} is not a guide set id such as 'gs3' (automatic ones cannot be deleted)")
        await self.store.call(Store.delete_guide_set, p["id"], int(m.group(1)))
        return {"deleted": f"gs{m.group(1)}", "recomputed": await self.recompute(p["id"])}

    async def annotation_kinds(self) -> list[dict[str, Any]]:
        return await self.store.call(Store.annotation_kinds)

    async def add_annotation_kind(self, user: UserRow, name: Any, label: Any,
                                  resets_baseline: Any = False) -> dict[str, Any]:
        if not user["is_admin"]:
            raise Forbidden("adding annotation kinds needs an admin")
        if not isinstance(name, str) or not _KIND.match(name):
            raise BadRequest("name: lower-case letters, digits and _, starting with a letter (at most 40)")
        if not isinstance(label, str) or not label.strip() or len(label) > 100:
            raise BadRequest("label: required, at most 100 characters")
        if not isinstance(resets_baseline, bool):
            raise BadRequest("resets_baseline: true or false")
        return await self.store.call(Store.add_annotation_kind, name, label.strip(), resets_baseline)

    async def annotations(self, user: UserRow, project: str, pipeline: str) -> dict[str, Any]:
        p = await self._visible(user, project, pipeline)
        rows = await self.store.call(Store.annotations_of, p["id"])
        return {"annotations": [_annotation(a) for a in rows]}

    async def add_annotation(self, user: UserRow, project: str, pipeline: str, *, kind: Any,
                             time: Any, text: Any = "") -> dict[str, Any]:
        p = await self._visible(user, project, pipeline)  # any member may annotate
        kinds = {k["name"]: k for k in await self.store.call(Store.annotation_kinds)}
        if kind not in kinds:
            raise BadRequest(f"kind: {kind!r} is not one of {', '.join(sorted(kinds))}")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise BadRequest(f"text: at most {MAX_TEXT} characters")
        a = await self.store.call(Store.add_annotation, p["id"], kind=kind, at=parse_time(time, "time"), text=text,
                                            author_id=user["id"])
        out = _annotation(a)
        if kinds[kind]["resets_baseline"]:
            out["recomputed"] = await self.recompute(p["id"])
        return out

    async def delete_annotation(self, user: UserRow, project: str, pipeline: str, aid: Any) -> dict[str, Any]:
        p = await self._visible(user, project, pipeline)
        try:
            n = int(str(aid).strip())
        except ValueError:
            raise BadRequest(f"id: {aid!r} is not an annotation id") from None
        a = await self.store.call(Store.annotation, p["id"], n)
        if a["author_id"] != user["id"]:
            await self._managed(user, project, pipeline)
        await self.store.call(Store.delete_annotation, p["id"], n)
        kinds = {k["name"]: k for k in await self.store.call(Store.annotation_kinds)}
        out: dict[str, Any] = {"deleted": n}
        if kinds.get(a["kind"], {}).get("resets_baseline"):
            out["recomputed"] = await self.recompute(p["id"])
        return out

    async def exclusions(self, user: UserRow, project: str, pipeline: str) -> dict[str, Any]:
        p = await self._visible(user, project, pipeline)
        rows = await self.store.call(Store.exclusions_of, p["id"])
        return {"exclusions": [{"run_key": e["run_key"], "metric": e["metric"], "reason": e["reason"],
                                "created_by": e["created_by"], "created_at": iso(e["created_at"])} for e in rows]}

    async def set_exclusions(self, user: UserRow, project: str, pipeline: str, *, metric: Any,
                             run_keys: Any, excluded: bool, reason: Any = "") -> dict[str, Any]:
        p = await self._managed(user, project, pipeline)
        if not isinstance(metric, str) or not metric.strip() or len(metric) > 200:
            raise BadRequest("metric: required, a QC column name")
        if not isinstance(run_keys, list) or not run_keys or not all(isinstance(k, str) for k in run_keys):
            raise BadRequest("run_keys: a non-empty list of run keys such as 'rf12'")
        if not isinstance(reason, str) or len(reason) > MAX_TEXT:
            raise BadRequest(f"reason: at most {MAX_TEXT} characters")
        ids = {r["run_key"]: r["id"] for r in await self.store.call(Store.qc_runs, p["id"])}
        for k in run_keys:
            if k.strip() not in ids:
                raise NotFound(f"run key {k!r} does not exist in this pipeline")
        await self.store.call(Store.set_exclusions, p["id"], [ids[k.strip()] for k in run_keys], metric, excluded=excluded,
                                        reason=reason, created_by=user["id"])
        return {"metric": metric, "run_keys": sorted({k.strip() for k in run_keys}), "excluded": excluded,
                "recomputed": await self.recompute(p["id"])}


def _from_file(what: str, path: str) -> str:
    return (f"{what} are set in the config file {path} ([[qc]]): change them there and restart the daemon "
            "(the file wins at each start for what it names)")


def _annotation(a: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": a["id"], "kind": a["kind"], "time": iso(a["happened_at"]), "text": a["text"],
            "author": a["author"], "created_at": iso(a["created_at"])}
