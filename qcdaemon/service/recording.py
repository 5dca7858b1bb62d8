"""Verdicts computed and stored on the store thread: one run's when its values arrive (from only
what it depends on), a pipeline's after an edit (all of them, or those from a time on)."""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from qcdaemon.qc.guidesets import Run, as_utc
from qcdaemon.qc.series import micros
from qcdaemon.qc.verdicts import (
    ColumnValues,
    Frame,
    Plan,
    Verdict,
    evaluate_from,
    evaluate_run,
    frame,
    judged_columns,
    plan_run,
)

from .qcinputs import Ids, Inputs, load_inputs, with_values

__all__ = ["ID_SOURCES", "column_values", "recompute_sync", "record_sync"]

ID_SOURCES = frozenset({"maxquant", "search"})  # identification-based values: MaxQuant, the Sage search


def _stored(v: Verdict, run_id: int, id_based: bool) -> dict[str, Any]:
    detail = v.as_dict()
    detail["basis"] = "id-based" if id_based else "id-free"
    # the summary joins the reasons' texts (as Verdict.summary does), made once above
    summary = " | ".join(r["text"] for r in detail["reasons"]) if detail["reasons"] else v.summary()
    return {"run_id": run_id, "verdict": v.status, "summary": summary, "detail": detail,
            "guide_set": v.guide_set}


def column_values(store: Any, pid: int, runs: Sequence[Run], columns: Sequence[str],
                  since: dt.datetime | None = None) -> tuple[ColumnValues, set[int]]:
    """The merged values of ``columns`` of ``runs`` (the pipeline's runs acquired at or after
    ``since``), column-wise and aligned with them; and the ids of the runs with ID-based values."""
    names = list(dict.fromkeys([*columns, "NumMs3Scans"]))
    ids, col, x, search, id_based = store.qc_value_columns(pid, names, since=since, id_sources=sorted(ID_SOURCES))
    n = len(runs)
    run_ids = np.fromiter((int(r.key[2:]) for r in runs), np.int64, n)
    order = np.argsort(run_ids, kind="stable")
    by_id = run_ids[order]
    at = np.searchsorted(by_id, ids)
    ok = at < n
    ok[ok] = by_id[at[ok]] == ids[ok]  # cells of runs outside ``runs`` (none with a matching since) are left out
    matrix = np.full((len(names), n), np.nan)
    matrix[col[ok], order[at[ok]]] = x[ok]
    ms3 = matrix[names.index("NumMs3Scans")]
    searched = np.zeros(n, dtype=bool)
    where = {int(r): i for i, r in enumerate(run_ids.tolist())}
    for rid, p in search:
        if rid in where:
            searched[where[rid]] = not (p is None or (isinstance(p, str) and p.strip() in ("", "None")))
    values = ColumnValues({c: matrix[j] for j, c in enumerate(names)}, searched, np.isnan(ms3) | (ms3 > 0))
    return values, id_based


def recompute_sync(store: Any, pid: int, since: dt.datetime | None = None) -> int:
    """Compute and store every verdict of the pipeline (on the store thread); with ``since``, only
    those of runs acquired at or after it (a new guide set changes nothing before it comes into
    force: earlier runs keep their guide sets, and sequential rules restart at its start; what the
    later runs' verdicts depend on lies at or after it, so only those runs' values are loaded)."""
    ck = (str(getattr(store, "path", "")), pid)
    if (hit := _FRAMES.get(ck)) is not None:  # values may have changed anywhere: forget the kept ones
        _FRAMES[ck] = (*hit[:3], {})
    sig = store.qc_signature(pid)
    inp = load_inputs(store, pid, signature=sig[5:])
    fr = frame(inp.runs, inp.settings, inp.guide_sets, inp.annotations)
    start = 0 if since is None else bisect.bisect_left(fr.times, as_utc(since))
    cols = judged_columns(inp.settings)
    values, id_based = column_values(store, pid, fr.runs[start:], cols, since)
    verdicts = evaluate_from(fr, inp.settings, start, values, inp.exclusions, cols)
    rows = []
    for k, v in verdicts.items():
        rid = inp.ids[k]
        rows.append(_stored(v, rid, rid in id_based))
    return store.put_verdicts(pid, rows, replace_all=since is None)


# The frame (runs in order, guide sets) of each pipeline's last verdict, so that one new run's
# verdict costs no pass over all runs in Python: reused while the runs' signature and the QC
# configuration's are the same, and extended when exactly one new newest run came. With it, the
# runs (with their values) the last verdicts looked at: a run's values change only by a stage
# storing them, which computes that run's verdict next; if the run is not the newest that is a
# recomputation, which drops the entry, and the newest run's own values are always read afresh.
_FRAMES: dict[tuple[str, int], tuple[tuple[Any, ...], tuple[Any, ...], Frame, dict[str, Run]]] = {}
_KEEP = 256  # runs whose values are kept per pipeline beyond the guide set's training runs


def _frame_for(store: Any, inp: Inputs, run_id: int, acquired: dt.datetime, sig: tuple[Any, ...],
               conf: tuple[Any, ...]) -> tuple[Frame, dict[str, Run]]:
    """The pipeline's frame, from the cache when it still holds (see ``_FRAMES``)."""
    ck = (str(getattr(store, "path", "")), inp.pipeline_id)
    hit = _FRAMES.get(ck)
    fr: Frame | None = None
    if hit is not None and hit[1] == conf:
        old_sig, _, old, _ = hit
        if old_sig == sig:
            fr = old
        elif (sig[0] == old_sig[0] + 1 and sig[1] == run_id and sig[2] == old_sig[2] + run_id
              and sig[4] == old_sig[4] and old.runs):
            growing = any(g.automatic and g.run_keys is not None and len(g.run_keys) < inp.settings.auto_guide_runs
                          and acquired >= g.in_force_from for g in old.guide_sets)
            if acquired > old.times[-1] and not growing and sig[3] == old_sig[3] + micros(acquired):
                new = Run(f"rf{run_id}", acquired, False, {})
                old.pos[new.key] = len(old.runs)  # the cached frame grows in place: only the cache holds it
                old.runs.append(new)
                old.times.append(acquired)
                fr = old
    if fr is None:
        meta = store.qc_run_tuples(inp.pipeline_id)
        runs = [Run(f"rf{rid}", t.replace(tzinfo=dt.UTC), bool(rej), {}) for rid, t, rej in meta]
        fr = frame(runs, inp.settings, inp.guide_sets, inp.annotations)
    seen = hit[3] if hit is not None and hit[2] is fr else {}
    _FRAMES[ck] = (sig, conf, fr, seen)
    return fr, seen


def record_sync(store: Any, run_id: int) -> dict[str, Any]:
    """A run's values changed: compute its verdict from only what it depends on, or recompute the
    pipeline when other verdicts may change too (it trains a guide set, or is not the newest)."""
    got = store.qc_run_state(run_id)
    if got is None:
        store.run(run_id)  # raises NotFound
    pid, acquired, sig = got
    inp = load_inputs(store, pid, with_runs=False, signature=sig[5:])
    key = f"rf{run_id}"
    fr, seen = _frame_for(store, inp, run_id, acquired.replace(tzinfo=dt.UTC), sig[:5], sig[5:])
    inp.runs, inp.where, inp.ids = list(fr.runs), fr.pos, Ids()
    plan = plan_run(inp.runs, inp.settings, key, inp.guide_sets, inp.annotations, fr=fr)
    if not plan.alone:
        n = recompute_sync(store, pid)
        return {"run_key": key, "recomputed": n}
    first = max(4 * (plan.need or 0), 16) if plan.need is not None else len(plan.earlier)
    wanted = [*plan.training, *plan.earlier[:first]]
    for k in wanted:
        if k in seen:
            inp.runs[inp.where[k]] = seen[k]
    sources = with_values(store, inp, [key, *(k for k in wanted if k not in seen)], plan.columns)
    if plan.need:
        wanted += _more_history(store, inp, plan, key, first, seen)
    _remember(seen, inp, [key, *wanted], set(plan.training), len(fr.runs))
    fr = replace(fr, runs=inp.runs)  # the same order, now with values
    v = evaluate_run(inp.runs, inp.settings, key, inp.guide_sets, inp.exclusions, inp.annotations,
                     columns=plan.columns, fr=fr)
    store.put_verdicts(pid, [_stored(v, run_id, bool(sources.get(key, set()) & ID_SOURCES))])
    return {"run_key": key, "verdict": v.status}


def _remember(seen: dict[str, Run], inp: Inputs, keys: Sequence[str], training: set[str], n: int) -> None:
    """Keep the runs just looked at (with values) for the next verdict, and only the recent ones
    and the training runs of the guide set in force."""
    for k in keys:
        seen[k] = inp.runs[inp.where[k]]
    if len(seen) > len(training) + 2 * _KEEP:
        for k in [k for k in seen if k not in training and inp.where.get(k, -1) < n - _KEEP]:
            del seen[k]


def _more_history(store: Any, inp: Inputs, plan: Plan, key: str, first: int, seen: dict[str, Run]) -> list[str]:
    """Earlier runs' values in growing chunks until each metric the run has a value of has the
    earlier values its rules look at (a metric the run lacks is not judged for it); returns the
    keys of the runs looked at beyond the first chunk."""
    cat = inp.settings.catalogue
    target = inp.runs[inp.where[key]]
    valued = [c for c in plan.columns if cat[c].clean(target.values.get(c), target.values)[0] is not None]
    counts = dict.fromkeys(valued, 0)
    need = plan.need or 0
    done, step = 0, first
    more: list[str] = []
    while done < len(plan.earlier) and min(counts.values(), default=need) < need:
        chunk = list(plan.earlier[done:done + step])
        if done:  # the first chunk came with the run's own values
            for k in chunk:
                if k in seen:
                    inp.runs[inp.where[k]] = seen[k]
            with_values(store, inp, [k for k in chunk if k not in seen], plan.columns)
            more += chunk
        done += len(chunk)
        for k in chunk:
            vals = inp.runs[inp.where[k]].values
            for c in valued:
                if cat[c].clean(vals.get(c), vals)[0] is not None:
                    counts[c] += 1
        step *= 2
    return more
