"""Verdicts computed and stored on the store thread: one run's when its values arrive (from only
what it depends on), a pipeline's after an edit (all of them, or those from a time on)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from qcdaemon.qc.guidesets import Run
from qcdaemon.qc.verdicts import Frame, Verdict, evaluate_pipeline, evaluate_run, frame, judged_columns, plan_run

from .qcinputs import Ids, Inputs, load_inputs, with_values

__all__ = ["ID_SOURCES", "recompute_sync", "record_sync"]

ID_SOURCES = frozenset({"maxquant", "search"})  # identification-based values: MaxQuant, the Sage search


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
    inp.runs, inp.where, inp.ids = list(fr.runs), fr.pos, Ids()
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
