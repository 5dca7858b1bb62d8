"""Control-chart data of one metric (pure): points, limits per guide-set period, violations, guide
sets and annotations, for the values chart (Levey-Jennings), moving ranges and the two CUSUMs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .catalogue import Scale
from .guidesets import Annotation, GuideSet, Run, as_utc
from .rules import RuleSpec, Severity, parse_rule
from .series import Context, Series, Settings, sorted_runs, to_units

__all__ = ["CHART_KINDS", "chart"]

CHART_KINDS = ("values", "moving_range", "cusum_mean", "cusum_var")


def _limits_in_units(spec: RuleSpec, lim: Mapping[str, float | None], log: bool) -> dict[str, Any]:
    """A rule's limits for the values chart, in the metric's units."""
    if spec.kind in ("levey_jennings", "robust"):
        return {k: to_units(v, log) for k, v in lim.items()}
    if spec.kind == "percent":
        return {k: (to_units(v, log) if k == "center" else v) for k, v in lim.items()}
    return dict(lim)


def chart(runs: Sequence[Run], settings: Settings, metric: str, kind: str = "values",
          guide_sets: Sequence[GuideSet] = (), exclusions: Mapping[str, Iterable[str]] | None = None,
          annotations: Sequence[Annotation] = ()) -> dict[str, Any]:
    """Control-chart data of one metric: points, limits per guide-set period, violations, guide
    sets and annotations. ``kind``: values (Levey-Jennings), moving_range, cusum_mean, cusum_var.
    The values chart is in the metric's units; the others in their statistic's units (moving
    ranges of a log-scale metric in log10 units, CUSUMs in SD units). Violations are those of the
    metric's configured rules; a chart kind without a configured rule is drawn with its defaults."""
    if kind not in CHART_KINDS:
        raise ValueError(f"unknown chart kind {kind!r}; known: {', '.join(CHART_KINDS)}")
    runs = sorted_runs(runs)
    ctx = Context(runs, settings, guide_sets, exclusions or {}, annotations)
    s = ctx.series(metric)
    c: Series | None = None
    if kind != "values":
        spec = next((sp for sp in s.specs if sp.kind == kind), None) or parse_rule(kind)
        c = ctx.series(metric, (spec,))
    log = s.info.scale is Scale.LOG
    return {
        "metric": s.info.as_dict(), "kind": kind,
        "scale": ("log10" if log and kind == "moving_range" else "sd" if kind.startswith("cusum")
                  else s.info.unit),
        "rules": [sp.as_dict() for sp in s.specs],
        "points": _points(ctx, s, c, kind), "limits": _limits(ctx, s, c, kind),
        "guide_sets": [g.as_dict() for g in ctx.guide_sets],
        "annotations": [a.as_dict() for a in ctx.annotations],
    }


def _points(ctx: Context, s: Series, c: Series | None, kind: str) -> list[dict[str, Any]]:
    """One point per run: value, z, guide set, training/rejected/excluded, the chart kind's
    statistics, and the violations of the metric's rules."""
    info, metric = s.info, s.info.column
    excluded = ctx.excluded.get(metric, np.zeros(ctx.n, dtype=bool))
    training = {(gi, int(i)) for gi, idx in s.training.items() for i in idx}
    points = []
    for i, r in enumerate(ctx.runs):
        gi = int(s.gs[i])
        value = float(s.x[i]) if math.isfinite(s.y[i]) else None
        pt: dict[str, Any] = {
            "run": r.key, "time": as_utc(r.acquired).isoformat(), "value": value,
            "z": float(s.z[i]) if math.isfinite(s.z[i]) else None,
            "guide_set": ctx.gs_list[gi].id if gi >= 0 else None,
            "training": (gi, i) in training, "rejected": bool(r.rejected), "excluded": bool(excluded[i]),
        }
        if value is None:
            pt["why_no_value"] = info.clean(r.values.get(metric), r.values)[1] or "not usable"
        if c is not None:
            st = c.stat[0][i]
            pt["plotted"] = float(st) if kind == "moving_range" and math.isfinite(st) else None
            for name, arr in c.series[0].items():
                pt[name] = float(arr[i]) if math.isfinite(arr[i]) else None
        pt["violations"] = [{"rule": sp.kind, "detail": s.what[si].get(i, sp.kind),
                             "severity": Severity(int(s.sev[si][i])).word}
                            for si, sp in enumerate(s.specs) if sp.judges and s.sev[si][i]]
        points.append(pt)
    return points


def _limits(ctx: Context, s: Series, c: Series | None, kind: str) -> list[dict[str, Any]]:
    """The limits of each guide set in force for some run, from when to when it is in force."""
    log = s.info.scale is Scale.LOG
    limits = []
    for gi, g in enumerate(ctx.gs_list):
        if gi not in s.bases:
            continue  # in force for no run
        b = s.bases[gi]
        until = ctx.index.until(g)
        row: dict[str, Any] = {"guide_set": g.id, "from": as_utc(g.in_force_from).isoformat(),
                               "to": until.isoformat() if until else None, "n": int(s.training[gi].size)}
        if b is None:
            row["note"] = (f"not enough runs for limits ({int(s.training[gi].size)} usable, "
                           f"{ctx.settings.min_points} needed)")
        if kind == "values":
            if b is not None:
                row |= {"mean": to_units(b.mean, log), "median": to_units(b.median, log),
                        "sd": b.sd, "sd_scale": "log10" if log else "linear"}
            row["rules"] = {sp.kind: _limits_in_units(sp, s.seg_limits[si][gi], log)
                            for si, sp in enumerate(s.specs) if gi in s.seg_limits[si]}
        elif c is not None and gi in c.seg_limits[0]:
            row |= dict(c.seg_limits[0][gi])
        limits.append(row)
    return limits
