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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from qcdaemon.errors import BadRequest, Forbidden, NotFound
from qcdaemon.qc import qcdata
from qcdaemon.qc.catalogue import DEFAULTS, Catalogue
from qcdaemon.qc.guidesets import Annotation, AnnotationKind, GuideSet, Run, automatic_guide_sets, resolve
from qcdaemon.qc.rules import parse_rules
from qcdaemon.qc.verdicts import (
    CHART_KINDS,
    Frame,
    Settings,
    Verdict,
    chart,
    evaluate_pipeline,
    evaluate_run,
    frame,
    instrument_status,
    judged_columns,
    plan_run,
)
from qcdaemon.service.chartcache import ChartCache
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.rows import PipelineRow, UserRow

MAX_TEXT = 2000
_KEY = re.compile(r"rf([0-9]{1,18})\Z")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,39}\Z")
_CONDITIONS = ("SearchParameters", "NumMs3Scans")  # what the catalogue's "needs" look at
ID_SOURCES = frozenset({"maxquant", "search"})  # identification-based values: MaxQuant, the Sage search


def parse_time(value: Any, field: str) -> dt.datetime:
    """An ISO 8601 time as aware UTC; a time without offset is UTC."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field}: expected an ISO 8601 time such as 2026-03-01T08:00:00Z")
    try:
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{field}: {value!r} is not an ISO 8601 time") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _as_utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else _as_utc(t)


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else _as_utc(t).isoformat()


@dataclass
class Inputs:
    """Everything a pipeline's verdicts depend on, as the pure package wants it."""

    pipeline_id: int
    runs: list[Run]
    ids: dict[str, int]  # run key -> run id
    settings: Settings
    guide_sets: list[GuideSet]
    annotations: list[Annotation]
    exclusions: dict[str, list[str]]
    offline_hours: float | None
    where: dict[str, int] = field(default_factory=dict)  # run key -> position in runs


def _settings(store: Any, pid: int) -> tuple[Settings, float | None]:
    rows = store.metric_settings_of(pid)
    overrides = {r["metric"]: r["overrides"] for r in rows if r["overrides"]}
    rules = {r["metric"]: parse_rules(r["rules"]) for r in rows if r["rules"]}
    kinds = {k["name"]: AnnotationKind(k["name"], k["label"], bool(k["resets_baseline"]))
             for k in store.annotation_kinds()}
    ps = store.pipeline_qc_settings(pid)
    settings = Settings(catalogue=Catalogue(overrides), rules=rules, kinds=kinds,
                        auto_guide_runs=ps["auto_guide_runs"] if ps else Settings.auto_guide_runs)
    return settings, (ps["offline_hours"] if ps else None)


class _Ids(dict[str, int]):
    """run key -> run id, for keys of the form ``rf<id>`` (no table needed)."""

    def __missing__(self, key: str) -> int:
        return int(key[2:])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _KEY.match(key) is not None


def load_inputs(store: Any, pid: int, *, with_runs: bool = True) -> Inputs:
    """The pipeline's runs (times, rejections; no values yet) and QC configuration."""
    settings, offline = _settings(store, pid)
    meta = store.qc_run_tuples(pid) if with_runs else []
    utc = dt.UTC
    runs = [Run(f"rf{rid}", t.replace(tzinfo=utc), bool(rej), {}) for rid, t, rej in meta]
    gsets = [GuideSet(f"gs{g['id']}", _utc(g["start_at"]), _utc(g["end_at"]),
                      frozenset(g["run_keys"]) if g["run_keys"] is not None else None, label=g["label"])
             for g in store.guide_sets_of(pid)]
    anns = [Annotation(a["id"], a["kind"], _as_utc(a["happened_at"]), a["text"], a["author"])
            for a in store.annotations_of(pid)]
    excl: dict[str, list[str]] = {}
    for e in store.exclusions_of(pid):
        excl.setdefault(e["metric"], []).append(e["run_key"])
    return Inputs(pid, runs, {f"rf{m[0]}": m[0] for m in meta}, settings, gsets, anns, excl, offline)


def with_values(store: Any, inp: Inputs, keys: Sequence[str] | None = None,
                columns: Sequence[str] | None = None) -> dict[str, set[str]]:
    """Fill in the runs' merged values (of ``keys``, default all; of the judged ``columns``).
    Returns each filled run's value sources."""
    cols = list(columns) if columns is not None else judged_columns(inp.settings)
    wanted = None if keys is None else [inp.ids[k] for k in keys if k in inp.ids]
    triples: dict[int, list[tuple[str, str, Any]]] = {}
    numeric = [c for c in cols if c not in _CONDITIONS]
    for run_id, source, name, value in store.qc_metric_values(wanted, [*cols, *_CONDITIONS], numeric=numeric,
                                                              pipeline_id=inp.pipeline_id):
        triples.setdefault(run_id, []).append((source, name, value))
    sources: dict[str, set[str]] = {}
    if len(inp.where) != len(inp.runs):
        inp.where = {r.key: i for i, r in enumerate(inp.runs)}
    for run_id, trs in triples.items():
        key = f"rf{run_id}"
        i = inp.where[key]
        r = inp.runs[i]
        merged, _ = qcdata.merge_run_values(trs)
        inp.runs[i] = Run(r.key, r.acquired, r.rejected, merged)
        sources[key] = {t[0] for t in trs}
    return sources


def _stored(v: Verdict, run_id: int, sources: set[str] | None) -> dict[str, Any]:
    detail = v.as_dict()
    detail["basis"] = "id-based" if sources and sources & ID_SOURCES else "id-free"
    # the summary joins the reasons' texts (as Verdict.summary does), made once above
    summary = " | ".join(r["text"] for r in detail["reasons"]) if detail["reasons"] else v.summary()
    return {"run_id": run_id, "verdict": v.status, "summary": summary, "detail": detail,
            "guide_set": v.guide_set}


def recompute_sync(store: Any, pid: int, since: dt.datetime | None = None) -> int:
    """Compute and store every verdict of the pipeline (on the store thread); with ``since``, only
    those of runs acquired at or after it (a new guide set changes nothing before it comes into
    force: earlier runs keep their guide sets, and sequential rules restart at its start)."""
    inp = load_inputs(store, pid)
    cols = judged_columns(inp.settings)
    sources = with_values(store, inp, columns=cols)
    only = None if since is None else [r.key for r in inp.runs if r.acquired >= since]
    ev = evaluate_pipeline(inp.runs, inp.settings, inp.guide_sets, inp.exclusions, inp.annotations,
                           columns=cols, only=only)
    return store.put_verdicts(pid, [_stored(v, inp.ids[k], sources.get(k)) for k, v in ev.verdicts.items()],
                              replace_all=since is None)


# The frame (runs in order, guide sets) of each pipeline's last verdict, so that one new run's
# verdict costs no pass over all runs in Python: reused while the runs' signature and the guide
# sets, annotations and settings are the same, and extended when exactly one new newest run came.
_FRAMES: dict[tuple[str, int], tuple[tuple[Any, ...], tuple[Any, ...], Frame]] = {}


def _config_key(inp: Inputs) -> tuple[Any, ...]:
    return (tuple(inp.guide_sets), tuple(inp.annotations), inp.settings.auto_guide_runs,
            tuple(sorted((k, v.resets_baseline) for k, v in inp.settings.kinds.items())))


def _frame_for(store: Any, inp: Inputs, run: dict[str, Any]) -> Frame:
    """The pipeline's frame, from the cache when it still holds (see ``_FRAMES``)."""
    run_id = run["id"]
    ck = (str(getattr(store, "path", "")), inp.pipeline_id)
    sig = store.qc_run_signature(inp.pipeline_id)
    conf = _config_key(inp)
    hit = _FRAMES.get(ck)
    fr: Frame | None = None
    if hit is not None and hit[1] == conf:
        old_sig, _, old = hit
        if old_sig == sig:
            fr = old
        elif (sig[0] == old_sig[0] + 1 and sig[1] == run_id and sig[2] == old_sig[2] + run_id
              and sig[4] == old_sig[4] and old.runs):
            acquired = (run["acquired_at"] or run["created_at"]).replace(tzinfo=dt.UTC)
            growing = any(g.automatic and g.run_keys is not None and len(g.run_keys) < inp.settings.auto_guide_runs
                          and acquired >= g.effective for g in old.guide_sets)
            if acquired > old.times[-1] and not growing and \
                    sig[3] == old_sig[3] + int((acquired - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)):
                new = Run(f"rf{run_id}", acquired, False, {})
                old.pos[new.key] = len(old.runs)  # the cached frame grows in place: only the cache holds it
                old.runs.append(new)
                old.times.append(acquired)
                fr = old
    if fr is None:
        meta = store.qc_run_tuples(inp.pipeline_id)
        runs = [Run(f"rf{rid}", t.replace(tzinfo=dt.UTC), bool(rej), {}) for rid, t, rej in meta]
        fr = frame(runs, inp.settings, inp.guide_sets, inp.annotations)
    _FRAMES[ck] = (sig, conf, fr)
    return fr


def record_sync(store: Any, run_id: int) -> dict[str, Any]:
    """A run's values changed: compute its verdict from only what it depends on, or recompute the
    pipeline when other verdicts may change too (it trains a guide set, or is not the newest)."""
    run = store.run(run_id)
    pid = run["pipeline_id"]
    inp = load_inputs(store, pid, with_runs=False)
    key = run["run_key"]
    fr = _frame_for(store, inp, run)
    inp.runs, inp.where, inp.ids = list(fr.runs), fr.pos, _Ids()
    plan = plan_run(inp.runs, inp.settings, key, inp.guide_sets, inp.annotations, fr=fr)
    if not plan.alone:
        n = recompute_sync(store, pid)
        return {"run_key": key, "recomputed": n}
    first = max(4 * (plan.need or 0), 16) if plan.need is not None else len(plan.earlier)
    sources = with_values(store, inp, [key, *plan.training, *plan.earlier[:first]], plan.columns)
    if plan.need:
        # earlier runs in chunks until each metric the run has a value of has the earlier values
        # its rules look at (a metric the run lacks is not judged for it)
        cat = inp.settings.catalogue
        target = inp.runs[inp.where[key]] if inp.where else next(r for r in inp.runs if r.key == key)
        valued = [c for c in plan.columns if cat[c].clean(target.values.get(c), target.values)[0] is not None]
        counts = dict.fromkeys(valued, 0)
        done, step = 0, first
        while done < len(plan.earlier) and min(counts.values(), default=plan.need) < plan.need:
            chunk = list(plan.earlier[done:done + step])
            if done:  # the first chunk came with the run's own values
                with_values(store, inp, chunk, plan.columns)
            done += len(chunk)
            got = {r.key: r for r in inp.runs if r.key in set(chunk)}
            for k in chunk:
                vals = got[k].values
                for c in valued:
                    if cat[c].clean(vals.get(c), vals)[0] is not None:
                        counts[c] += 1
            step *= 2
    fr = replace(fr, runs=inp.runs)  # the same order, now with values
    v = evaluate_run(inp.runs, inp.settings, key, inp.guide_sets, inp.exclusions, inp.annotations,
                     columns=plan.columns, fr=fr)
    store.put_verdicts(pid, [_stored(v, run_id, sources.get(key))])
    return {"run_key": key, "verdict": v.status}


class QualityService:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.charts = ChartCache()  # chart answers until the store's next write (service/chartcache.py)

    # -- access -------------------------------------------------------------------------------

    async def _visible(self, user: UserRow, project: str, pipeline: str) -> PipelineRow:
        p = await self.store.call(Store.visible_pipeline, user, project, pipeline)
        if p is None:
            raise Forbidden("Missing permissions for requested pipeline.")
        return p

    async def _managed(self, user: UserRow, project: str, pipeline: str) -> PipelineRow:
        p = await self._visible(user, project, pipeline)
        if not user["is_admin"]:
            proj = await self.store.call(Store.project_by_slug, project)
            if proj is None or proj["created_by"] != user["id"]:
                raise Forbidden("changing QC rules, guide sets and exclusions needs the project's "
                                "creator or an admin")
        return p

    # -- verdicts -----------------------------------------------------------------------------

    async def record(self, run_id: int) -> dict[str, Any]:
        """Called when a stage stored a run's values (ID-free first, ID-based later)."""
        return await self.store.call(record_sync, run_id)

    async def recompute(self, pipeline_id: int) -> int:
        return await self.store.call(recompute_sync, pipeline_id)

    async def recompute_for(self, user: UserRow, project: str, pipeline: str) -> dict[str, Any]:
        p = await self._managed(user, project, pipeline)
        return {"recomputed": await self.recompute(p["id"])}

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
                item = {"run_key": r["run_key"], "name": r["name"], "acquired": _iso(r["acquired"]),
                        "verdict": v["verdict"] if v else None}
                if v:
                    item |= {"summary": v["summary"], "basis": v["detail"].get("basis"),
                             "guide_set": v["guide_set"], "reasons": v["detail"]["reasons"],
                             "unchecked": v["detail"]["unchecked"], "computed_at": _iso(v["computed_at"])}
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
                last_file = max((_as_utc(r["acquired"]) for r in runs if r["acquired"] is not None), default=None)
                verdict = None
                if latest is not None:
                    v = store.verdicts_of(pl["id"], [latest["id"]]).get(latest["id"])
                    if v is not None:
                        d = v["detail"]
                        verdict = Verdict(latest["run_key"], v["verdict"], (), tuple(d["checked"]),
                                          d["unchecked"], v["guide_set"])
                        summary = v["summary"]
                run = None if latest is None else Run(latest["run_key"], _as_utc(latest["acquired"]),
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
            settings, offline = _settings(store, p["id"])
            names = [r[0] for r in store.con.execute(
                "SELECT DISTINCT v.name FROM qc_values v JOIN runs r ON r.id = v.run_id WHERE r.pipeline_id = ?",
                [p["id"]]).fetchall()]
            cols = list(dict.fromkeys([*DEFAULTS, *sorted(names), *settings.rules]))
            return {"project": project, "pipeline": pipeline,
                    "auto_guide_runs": settings.auto_guide_runs, "offline_hours": offline,
                    "metrics": [settings.catalogue[c].as_dict() | {
                        "rules": [s.as_dict() for s in settings.rules_for(c)],
                        "custom_rules": c in settings.rules, "has_values": c in names}
                        for c in cols if c not in ("DateAcquired", "RawFile", "RawFilePath")]}

        return await self.store.call(work)

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
            times = [_as_utc(r["acquired"]) for r in await self.store.call(Store.qc_runs, p["id"]) if r["run_key"] in wanted]
            t0_force = min(times)
        else:
            t0_force = t0
        n = await self.store.call(recompute_sync, p["id"], t0_force)
        return {"id": f"gs{g['id']}", "label": g["label"], "start": _iso(g["start_at"]),
                "end": _iso(g["end_at"]), "run_keys": g["run_keys"], "recomputed": n}

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
                                "created_by": e["created_by"], "created_at": _iso(e["created_at"])} for e in rows]}

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


def _annotation(a: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": a["id"], "kind": a["kind"], "time": _iso(a["happened_at"]), "text": a["text"],
            "author": a["author"], "created_at": _iso(a["created_at"])}
