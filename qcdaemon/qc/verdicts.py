"""Run verdicts, control-chart data and instrument status of a pipeline (pure: values in, answers out).

For every metric with a judging rule (:mod:`qcdaemon.qc.rules`), the runs are taken in acquisition
order, each under the guide set in force at its acquisition time (:mod:`qcdaemon.qc.guidesets`);
the guide set's usable values give the limits; each rule is applied to the runs of each guide set's
period. A run's verdict:

* ``fail`` if any rule failed it, else ``warn`` if any rule warned, else
* ``pass`` if at least one metric could be judged (it had a value and limits, or a fixed cutoff),
* ``not enough data`` otherwise (no values, or no guide set with 5 usable runs yet).

Each violation is one :class:`Reason` (metric, rule, value, limits, z-score, guide set). Metrics
that could not be judged are listed with why (no value, a "not computed" sentinel, no limits).
Nothing depends on what a page displays: the inputs are the pipeline's runs, its settings, guide
sets, annotations and exclusions.

Default rules, on the metrics the catalogue shows by default: Levey-Jennings (warn 2 SD, fail
3 SD, as Panorama) with the Westgard multirules 2-2s, R-4s, 4-1s and 10-x (Westgard et al. 1981:
1-2s warns, 1-3s and the others reject); the other metrics are "plot only" until a pipeline gives
them rules.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalogue import NEEDS_MS3, NEEDS_SEARCH, Catalogue, Direction, MetricInfo, Scale, as_number
from .guidesets import (
    DEFAULT_KINDS,
    Annotation,
    AnnotationKind,
    GuideSet,
    GuideSetIndex,
    Run,
    as_utc,
    automatic_guide_sets,
    resolve,
)
from .rules import MIN_POINTS, Baseline, RuleResult, RuleSpec, Severity, baseline, evaluate, parse_rule

__all__ = [
    "CHART_KINDS",
    "FAIL",
    "NOT_ENOUGH",
    "PASS",
    "WARN",
    "Evaluation",
    "Plan",
    "Reason",
    "Settings",
    "Verdict",
    "chart",
    "evaluate_pipeline",
    "evaluate_run",
    "instrument_status",
    "judged_columns",
    "plan_run",
]

PASS, WARN, FAIL, NOT_ENOUGH = "pass", "warn", "fail", "not enough data"
_WORDS = ("none", "warn", "fail")  # by Severity value
CHART_KINDS = ("values", "moving_range", "cusum_mean", "cusum_var")
DEFAULT_RULES: tuple[RuleSpec, ...] = (
    parse_rule({"rule": "levey_jennings", "warn": 2, "fail": 3}),
    # Westgard's multirule procedure for the sustained shifts a 3 SD limit misses (its 1-3s is
    # the Levey-Jennings fail limit above, its 1-2s the warn limit)
    parse_rule({"rule": "westgard", "rules": ["2-2s", "R-4s", "4-1s", "10-x"]}),
)
PLOT_ONLY: tuple[RuleSpec, ...] = (parse_rule("plot_only"),)
NOT_METRICS = frozenset({"DateAcquired", "Index", "RawFile", "RawFilePath"})


@dataclass(frozen=True)
class Settings:
    """One pipeline's QC settings."""

    catalogue: Catalogue = field(default_factory=Catalogue)
    rules: Mapping[str, tuple[RuleSpec, ...]] = field(default_factory=dict)  # per metric
    default_rules: tuple[RuleSpec, ...] = DEFAULT_RULES  # for metrics shown by default
    auto_guide_runs: int = 20  # automatic guide sets: first N accepted runs (0: none)
    min_points: int = MIN_POINTS
    kinds: Mapping[str, AnnotationKind] = field(default_factory=lambda: dict(DEFAULT_KINDS))

    def rules_for(self, column: str) -> tuple[RuleSpec, ...]:
        if column in self.rules:
            return self.rules[column]
        return self.default_rules if self.catalogue[column].shown else PLOT_ONLY

    def judged(self, columns: Iterable[str]) -> list[str]:
        return [c for c in columns if c not in NOT_METRICS and any(s.judges for s in self.rules_for(c))]


@dataclass(frozen=True)
class Reason:
    metric: str
    label: str
    rule: str  # rule kind
    detail: str  # which sub-rule or limit
    severity: str  # warn / fail
    value: float | None  # in the metric's units
    low: float | None  # the limits the value was compared with (metric's units; None: one-sided)
    high: float | None
    z: float | None  # (value - guide-set mean) / guide-set SD, on the computing scale
    statistic: float | None  # the rule's own statistic (C⁺/C⁻, moving range, percent) if any
    guide_set: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "label": self.label, "rule": self.rule, "detail": self.detail,
                "severity": self.severity, "value": self.value, "low": self.low, "high": self.high,
                "z": self.z, "statistic": self.statistic, "guide_set": self.guide_set,
                "text": self.text()}

    def text(self) -> str:
        parts = [f"{self.label}: {_g(self.value)}", f"{self.rule.replace('_', '-')} {self.detail}"]
        if self.low is not None or self.high is not None:
            parts.append(f"limits {_g(self.low) if self.low is not None else '-∞'}"
                         f"…{_g(self.high) if self.high is not None else '+∞'}")
        if self.z is not None:
            parts.append(f"z = {self.z:+.2f}")
        if self.guide_set:
            parts.append(f"guide set {self.guide_set}")
        return "; ".join(parts)


def _g(x: float | None) -> str:
    return "null" if x is None else f"{x:.4g}"


@dataclass(frozen=True)
class Verdict:
    run: str
    status: str  # pass / warn / fail / not enough data
    reasons: tuple[Reason, ...] = ()
    checked: tuple[str, ...] = ()  # metrics judged
    unchecked: Mapping[str, str] = field(default_factory=dict)  # metric -> why not judged
    guide_set: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "verdict": self.status, "guide_set": self.guide_set,
                "reasons": [r.as_dict() for r in self.reasons], "checked": list(self.checked),
                "unchecked": dict(self.unchecked)}

    def summary(self) -> str:
        """One line for ``/api/qc-data``'s ``Verdict reasons``."""
        if self.reasons:
            return " | ".join(r.text() for r in self.reasons)
        if self.status == NOT_ENOUGH:
            # the telling reasons first: "not enough runs for limits" says more than "no value"
            telling = [f"{m}: {why}" for m, why in self.unchecked.items() if why != "no value"]
            if not telling:
                return "no metric to judge" if not self.unchecked else "no judged metric has a value"
            more = f" (and {len(telling) - 3} more)" if len(telling) > 3 else ""
            return "; ".join(telling[:3]) + more
        return ""


# -- the engine ------------------------------------------------------------------------------


def _side(d: Direction) -> int:
    return -1 if d is Direction.HIGHER else 1 if d is Direction.LOWER else 0


def _f(v: Any) -> float:
    x = as_number(v)
    return math.nan if x is None else x


@dataclass
class _Series:
    """One metric over the runs: values, limits per guide set, each rule's result per run."""

    info: MetricInfo
    specs: tuple[RuleSpec, ...]
    x: np.ndarray  # raw values (NaN: none)
    y: np.ndarray  # computing scale, NaN where not usable
    gs: np.ndarray  # index of the guide set in force per run (-1 none)
    bases: dict[int, Baseline | None]
    training: dict[int, np.ndarray]  # guide set -> run indices used for its limits
    z: np.ndarray
    sev: list[np.ndarray]  # per spec, int8 per run
    what: list[dict[int, str]]
    stat: list[np.ndarray]
    seg_limits: list[dict[int, dict[str, float | None]]]  # per spec: guide set -> limits
    series: list[dict[str, np.ndarray]]
    judged: np.ndarray  # bool per run: a judging rule could be applied


class _Context:
    """What every metric shares: runs in order, guide sets, masks."""

    def __init__(self, runs: Sequence[Run], settings: Settings, guide_sets: Sequence[GuideSet],
                 exclusions: Mapping[str, Iterable[str]], annotations: Sequence[Annotation],
                 all_guide_sets: list[GuideSet] | None = None, seq: np.ndarray | None = None):
        self.runs = runs
        self.settings = settings
        self.n = len(runs)
        self.keys = [r.key for r in runs]
        self.pos = {k: i for i, k in enumerate(self.keys)}
        self.annotations = list(annotations)
        if all_guide_sets is None:
            auto = automatic_guide_sets(runs, settings.auto_guide_runs, annotations, settings.kinds)
            all_guide_sets = resolve([*guide_sets, *auto], runs)
        self.guide_sets = all_guide_sets
        self.index = GuideSetIndex(all_guide_sets)
        self.gs_list = self.index.sets
        gs_pos = {g.id: i for i, g in enumerate(self.gs_list)}
        self.gs = np.array([gs_pos[g.id] if (g := self.index.in_force(r.acquired)) is not None else -1
                            for r in runs], dtype=np.int64)
        self.seq = np.ones(self.n, dtype=bool) if seq is None else seq
        self.rejected = np.array([r.rejected for r in runs], dtype=bool)
        self.trains = {i: np.array([g.trains(r) for r in runs], dtype=bool)
                       for i, g in enumerate(self.gs_list) if (self.gs == i).any()}
        self.excluded = {m: np.isin(np.arange(self.n), [self.pos[k] for k in ks if k in self.pos])
                         for m, ks in exclusions.items()}
        self._needs: dict[str, np.ndarray] = {}

    def needs(self, need: str) -> np.ndarray:
        if need not in self._needs:
            if need == NEEDS_SEARCH:
                ok = [not (p is None or (isinstance(p, str) and p.strip() in ("", "None")))
                      for p in (r.values.get("SearchParameters") for r in self.runs)]
            elif need == NEEDS_MS3:
                ok = [(c := as_number(r.values.get("NumMs3Scans"))) is None or c > 0 for r in self.runs]
            else:
                raise ValueError(need)
            self._needs[need] = np.array(ok, dtype=bool)
        return self._needs[need]

    def series(self, column: str, specs: tuple[RuleSpec, ...] | None = None) -> _Series:
        info = self.settings.catalogue[column]
        specs = self.settings.rules_for(column) if specs is None else specs
        n = self.n
        x = np.fromiter((_f(r.values.get(column)) for r in self.runs), float, n)
        ok = np.isfinite(x)
        for s in info.sentinels:
            ok &= ~np.isclose(x, s.value, rtol=1e-12, atol=1e-15)
        if info.needs is not None:
            ok &= self.needs(info.needs)
        log = info.scale is Scale.LOG
        if log:
            ok &= x > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(ok, np.log10(np.where(ok, x, 1.0)) if log else x, np.nan)
        side = _side(info.direction)
        usable = ok & ~self.rejected
        if column in self.excluded:
            usable &= ~self.excluded[column]
        bases: dict[int, Baseline | None] = {}
        training: dict[int, np.ndarray] = {}
        for gi, tr in self.trains.items():
            idx = np.flatnonzero(tr & usable)
            training[gi] = idx
            bases[gi] = baseline(y[idx], self.settings.min_points)
        z = np.full(n, np.nan)
        sev = [np.zeros(n, dtype=np.int8) for _ in specs]
        what: list[dict[int, str]] = [{} for _ in specs]
        stat = [np.full(n, np.nan) for _ in specs]
        seg_limits: list[dict[int, dict[str, float | None]]] = [{} for _ in specs]
        series: list[dict[str, np.ndarray]] = [{} for _ in specs]
        judged = np.zeros(n, dtype=bool)
        live = ok & self.seq
        # segments: maximal stretches of runs under one guide set
        cuts = np.flatnonzero(np.diff(self.gs)) + 1
        for start, stop in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [n])), strict=True):
            gi = int(self.gs[start])
            idx = start + np.flatnonzero(live[start:stop])
            if idx.size == 0:
                continue
            base = bases.get(gi) if gi >= 0 else None
            if base is not None and base.sd > 0:
                z[idx] = (y[idx] - base.mean) / base.sd
            for si, spec in enumerate(specs):
                if spec.kind == "off":
                    continue
                res: RuleResult | None = (None if spec.kind == "plot_only" else
                                          evaluate(spec, y[idx], base, side, raw=x[idx], log=log))
                if res is None:
                    continue
                if spec.judges:
                    judged[idx] = True
                    sev[si][idx] = res.severity
                    for j in np.flatnonzero(res.severity):
                        what[si][int(idx[j])] = res.what[j] or spec.kind
                if res.statistic is not None:
                    stat[si][idx] = res.statistic
                seg_limits[si][gi] = res.limits
                for name, arr in res.series.items():
                    series[si].setdefault(name, np.full(n, np.nan))[idx] = arr
        return _Series(info, specs, x, y, self.gs, bases, training, z, sev, what, stat, seg_limits,
                       series, judged)


def _to_units(v: float | None, log: bool) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return 10.0 ** v if log else v


def _limits_in_units(spec: RuleSpec, lim: Mapping[str, float | None], log: bool) -> dict[str, Any]:
    """A rule's limits for the values chart, in the metric's units."""
    if spec.kind in ("levey_jennings", "robust"):
        return {k: _to_units(v, log) for k, v in lim.items()}
    if spec.kind == "percent":
        return {k: (_to_units(v, log) if k == "center" else v) for k, v in lim.items()}
    return dict(lim)


def _reason_limits(spec: RuleSpec, lim: Mapping[str, float | None], sev: int, log: bool,
                   ) -> tuple[float | None, float | None]:
    if spec.kind in ("levey_jennings", "robust"):
        word = "fail" if sev == Severity.FAIL else "warn"
        return _to_units(lim.get(f"{word}_low"), log), _to_units(lim.get(f"{word}_high"), log)
    if spec.kind == "cutoff":
        if sev == Severity.FAIL:
            return lim.get("min"), lim.get("max")
        return lim.get("warn_min"), lim.get("warn_max")
    if spec.kind == "moving_range":
        return 0.0, lim.get("ucl")  # on the computing scale (log10 units for log metrics)
    if spec.kind in ("cusum_mean", "cusum_var"):
        return None, lim.get("h")
    if spec.kind == "percent":
        p = lim.get("percent_fail" if sev == Severity.FAIL else "percent_warn")
        return (-p if p is not None else None), p
    return None, None


def _null_reason(ctx: _Context, s: _Series, i: int) -> str:
    if s.gs[i] < 0:
        return "no guide set in force"
    run = ctx.runs[i]
    _, why = s.info.clean(run.values.get(s.info.column), run.values)
    if why is not None:
        return why
    base = s.bases.get(int(s.gs[i]))
    if base is None:
        got = s.training.get(int(s.gs[i]))
        return (f"not enough runs for limits ({0 if got is None else got.size} usable in guide set "
                f"{ctx.gs_list[int(s.gs[i])].id}, {ctx.settings.min_points} needed)")
    if base.sd == 0:
        return f"no spread in guide set {ctx.gs_list[int(s.gs[i])].id} (all values equal)"
    return "no rule could be applied"


def _verdicts(ctx: _Context, columns: Sequence[str], which: Iterable[int]) -> dict[str, Verdict]:
    series = [ctx.series(c) for c in columns]
    # per series: whether it is log scale, and its severities as plain lists (fast to index)
    prepared = [(s, s.info.scale is Scale.LOG, [a.tolist() for a in s.sev]) for s in series]
    out: dict[str, Verdict] = {}
    for i in which:
        reasons: list[Reason] = []
        checked: list[str] = []
        unchecked: dict[str, str] = {}
        gid = ctx.gs_list[int(ctx.gs[i])].id if ctx.gs[i] >= 0 else None
        for s, log, sevs in prepared:
            col = s.info.column
            if not s.judged[i]:
                unchecked[col] = _null_reason(ctx, s, i)
                continue
            checked.append(col)
            for si, spec in enumerate(s.specs):
                level = sevs[si][i]
                if not level:
                    continue
                gi = int(s.gs[i])
                low, high = _reason_limits(spec, s.seg_limits[si].get(gi, {}), level, log)
                st, z = s.stat[si][i], s.z[i]
                if spec.kind in ("levey_jennings", "robust"):  # the rule's own standardised value
                    st, z = np.nan, st
                elif spec.kind == "westgard":
                    st = np.nan
                reasons.append(Reason(col, s.info.label, spec.kind, s.what[si].get(i, spec.kind),
                                      _WORDS[level], float(s.x[i]), low, high,
                                      float(z) if math.isfinite(z) else None,
                                      float(st) if math.isfinite(st) else None,
                                      gid if spec.needs_baseline else None))
        if any(r.severity == "fail" for r in reasons):
            status = FAIL
        elif reasons:
            status = WARN
        else:
            status = PASS if checked else NOT_ENOUGH
        out[ctx.keys[i]] = Verdict(ctx.keys[i], status, tuple(reasons), tuple(checked), unchecked, gid)
    return out


def _sorted(runs: Sequence[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (as_utc(r.acquired), r.key))


def _columns(runs: Sequence[Run], settings: Settings, columns: Iterable[str] | None) -> list[str]:
    if columns is None:
        seen: dict[str, None] = {}
        for r in runs:
            seen.update(dict.fromkeys(k for k, v in r.values.items() if as_number(v) is not None))
        seen.update(dict.fromkeys(settings.rules))
        columns = seen
    return settings.judged(columns)


@dataclass
class Evaluation:
    verdicts: dict[str, Verdict]
    guide_sets: list[GuideSet]


def evaluate_pipeline(runs: Sequence[Run], settings: Settings, guide_sets: Sequence[GuideSet] = (),
                      exclusions: Mapping[str, Iterable[str]] | None = None,
                      annotations: Sequence[Annotation] = (), columns: Iterable[str] | None = None,
                      only: Iterable[str] | None = None) -> Evaluation:
    """Verdicts of a pipeline's runs (of the keys in ``only``, if given; they are the same as in a
    full evaluation). ``exclusions``: metric -> run keys left out of that metric's limits."""
    runs = _sorted(runs)
    ctx = _Context(runs, settings, guide_sets, exclusions or {}, annotations)
    which = range(ctx.n) if only is None else [ctx.pos[k] for k in only if k in ctx.pos]
    return Evaluation(_verdicts(ctx, _columns(runs, settings, columns), which), ctx.guide_sets)


@dataclass(frozen=True)
class Frame:
    """A pipeline's runs in acquisition order with their guide sets (computed once, reused)."""

    runs: list[Run]
    times: list[dt.datetime]
    pos: dict[str, int]
    guide_sets: list[GuideSet]
    index: GuideSetIndex

    def training(self, g: GuideSet) -> list[int]:
        """Positions of the runs ``g`` is trained on (by key look-up or by time range)."""
        if g.run_keys is not None:
            return sorted(self.pos[k] for k in g.run_keys if k in self.pos)
        lo = 0 if g.start is None else bisect.bisect_left(self.times, as_utc(g.start))
        hi = len(self.runs) if g.end is None else bisect.bisect_right(self.times, as_utc(g.end))
        return list(range(lo, hi))


def frame(runs: Sequence[Run], settings: Settings, guide_sets: Sequence[GuideSet] = (),
          annotations: Sequence[Annotation] = ()) -> Frame:
    ordered = _sorted(runs)
    auto = automatic_guide_sets(ordered, settings.auto_guide_runs, annotations, settings.kinds)
    sets = resolve([*guide_sets, *auto], ordered)
    return Frame(ordered, [as_utc(r.acquired) for r in ordered], {r.key: i for i, r in enumerate(ordered)},
                 sets, GuideSetIndex(sets))


def _history(specs_by_metric: Iterable[tuple[RuleSpec, ...]]) -> int | None:
    """How many earlier values of a segment the rules look at (None: the whole segment)."""
    need = 0
    for specs in specs_by_metric:
        for s in specs:
            if s.kind in ("cusum_mean", "cusum_var"):
                return None
            if s.kind == "moving_range":
                need = max(need, 1)
            elif s.kind == "westgard":
                need = max(need, max({"10-x": 9, "4-1s": 3, "2-2s": 1, "R-4s": 1}.get(r, 0)
                                     for r in s.rules))
    return need


def evaluate_run(runs: Sequence[Run], settings: Settings, key: str, guide_sets: Sequence[GuideSet] = (),
                 exclusions: Mapping[str, Iterable[str]] | None = None,
                 annotations: Sequence[Annotation] = (), columns: Iterable[str] | None = None,
                 fr: Frame | None = None) -> Verdict:
    """The verdict of one run, looking only at what it depends on: its guide set's training runs
    and as many earlier runs of its guide-set period as its rules need. Same answer as
    :func:`evaluate_pipeline` (tested), in time independent of the pipeline's length unless a
    CUSUM rule needs the whole period. ``fr``: the :func:`frame` of ``runs`` if already made (its
    runs must carry the values)."""
    fr = frame(runs, settings, guide_sets, annotations) if fr is None else fr
    runs, all_sets, index = fr.runs, fr.guide_sets, fr.index
    if key not in fr.pos:
        raise KeyError(key)
    pos = fr.pos[key]
    target = runs[pos]
    cols = _columns([target], settings, columns)
    g = index.in_force(target.acquired)
    keep: set[int] = {pos}
    if g is not None:
        keep.update(fr.training(g))
        need = _history(settings.rules_for(c) for c in cols)
        start_t = g.in_force_from
        # only metrics the run has a value of are judged for it, so only they need history
        counts = dict.fromkeys((c for c in cols if settings.catalogue[c].clean(
            target.values.get(c), target.values)[0] is not None), 0)
        i = pos - 1
        while i >= 0 and fr.times[i] >= start_t and (need is None or min(counts.values(), default=need) < need):
            keep.add(i)
            r = runs[i]
            for c in counts:
                if settings.catalogue[c].clean(r.values.get(c), r.values)[0] is not None:
                    counts[c] += 1
            i -= 1
        seq_from = i + 1
    else:
        seq_from = pos
    order = sorted(keep)
    sub = [runs[i] for i in order]
    seq = np.array([seq_from <= i <= pos for i in order], dtype=bool)
    ctx = _Context(sub, settings, (), exclusions or {}, annotations, all_guide_sets=all_sets, seq=seq)
    return _verdicts(ctx, cols, [ctx.pos[key]])[key]


@dataclass(frozen=True)
class Plan:
    """What one run's verdict depends on (for loading only those values from the store)."""

    alone: bool  # only this run's verdict can change (else recompute the pipeline)
    training: tuple[str, ...]  # keys of the in-force guide set's training runs
    earlier: tuple[str, ...]  # earlier runs of its guide-set period, newest first
    need: int | None  # earlier values per metric the rules look at (None: all of the period)
    columns: tuple[str, ...]  # judged metrics


def judged_columns(settings: Settings) -> list[str]:
    """Every metric some rule judges: the catalogue's shown ones and those with own rules."""
    from_catalogue = settings.catalogue.shown()
    return settings.judged(dict.fromkeys([*from_catalogue, *settings.rules]))


def plan_run(runs: Sequence[Run], settings: Settings, key: str, guide_sets: Sequence[GuideSet] = (),
             annotations: Sequence[Annotation] = (), fr: Frame | None = None) -> Plan:
    """Which runs a new value of run ``key`` touches: ``runs`` carry times and rejections (values
    are not needed). A run that is the newest of its pipeline and trains no guide set changes only
    its own verdict; otherwise limits or later runs' sequential rules may change."""
    fr = frame(runs, settings, guide_sets, annotations) if fr is None else fr
    runs = fr.runs
    if key not in fr.pos:
        raise KeyError(key)
    pos = fr.pos[key]
    target = runs[pos]
    cols = tuple(judged_columns(settings))
    g = fr.index.in_force(target.acquired)
    trains_any = any(gs.trains(target) for gs in fr.guide_sets)
    alone = pos == len(runs) - 1 and not trains_any
    if g is None:
        return Plan(alone, (), (), 0, cols)
    training = tuple(runs[i].key for i in fr.training(g))
    start = bisect.bisect_left(fr.times, g.in_force_from)
    earlier = tuple(runs[i].key for i in range(pos - 1, start - 1, -1))
    return Plan(alone, training, earlier, _history(settings.rules_for(c) for c in cols), cols)


# -- chart data ------------------------------------------------------------------------------


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
    runs = _sorted(runs)
    ctx = _Context(runs, settings, guide_sets, exclusions or {}, annotations)
    s = ctx.series(metric)
    c: _Series | None = None
    if kind != "values":
        spec = next((sp for sp in s.specs if sp.kind == kind), None) or parse_rule(kind)
        c = ctx.series(metric, (spec,))
    info = s.info
    log = info.scale is Scale.LOG
    excluded = ctx.excluded.get(metric, np.zeros(ctx.n, dtype=bool))
    training = {(gi, int(i)) for gi, idx in s.training.items() for i in idx}
    points = []
    for i, r in enumerate(runs):
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
                row |= {"mean": _to_units(b.mean, log), "median": _to_units(b.median, log),
                        "sd": b.sd, "sd_scale": "log10" if log else "linear"}
            row["rules"] = {sp.kind: _limits_in_units(sp, s.seg_limits[si][gi], log)
                            for si, sp in enumerate(s.specs) if gi in s.seg_limits[si]}
        elif c is not None and gi in c.seg_limits[0]:
            row |= dict(c.seg_limits[0][gi])
        limits.append(row)
    return {
        "metric": info.as_dict(), "kind": kind,
        "scale": ("log10" if log and kind == "moving_range" else "sd" if kind.startswith("cusum")
                  else info.unit),
        "rules": [sp.as_dict() for sp in s.specs],
        "points": points, "limits": limits,
        "guide_sets": [g.as_dict() for g in ctx.guide_sets],
        "annotations": [a.as_dict() for a in ctx.annotations],
    }


# -- instrument status -----------------------------------------------------------------------


def instrument_status(latest: Run | None, verdict: Verdict | None, *, now: dt.datetime | None = None,
                      last_file: dt.datetime | None = None, offline_after: dt.timedelta | None = None,
                      ) -> dict[str, Any]:
    """QCloud's vocabulary: OK, WARNING, DANGER, NO_DATA, OFFLINE, NO_THRESHOLD, with the reason
    and the latest run. OFFLINE: no new file for ``offline_after`` (when configured)."""
    def out(status: str, reason: str) -> dict[str, Any]:
        return {"status": status, "reason": reason,
                "latest_run": None if latest is None else {
                    "run": latest.key, "acquired": as_utc(latest.acquired).isoformat(),
                    "verdict": verdict.status if verdict else None}}

    if latest is None:
        return out("NO_DATA", "no runs yet")
    seen = last_file or latest.acquired
    if offline_after is not None and now is not None and as_utc(now) - as_utc(seen) > offline_after:
        hours = (as_utc(now) - as_utc(seen)).total_seconds() / 3600
        return out("OFFLINE", f"no new file for {hours:.1f} h (limit {offline_after.total_seconds() / 3600:g} h)")
    if verdict is None:
        return out("NO_DATA", "the latest run has no verdict yet (no QC values so far)")
    if verdict.status == FAIL:
        return out("DANGER", verdict.summary())
    if verdict.status == WARN:
        return out("WARNING", verdict.summary())
    if verdict.status == NOT_ENOUGH:
        return out("NO_THRESHOLD", verdict.summary() or "not enough runs for limits")
    return out("OK", f"{len(verdict.checked)} metrics within limits")
