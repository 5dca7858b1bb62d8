"""One pipeline's QC settings and the per-metric engine behind verdicts and charts (pure, numpy).

:class:`Settings` says which rules judge which metric; :class:`Context` holds what every metric
shares (runs in acquisition order, the guide set in force at each run, rejections, exclusions)
and :meth:`Context.series` computes one metric over the runs: values on its computing scale, the
limits of each guide set from its usable training values, and each rule's result per run, rule
by rule over the stretches of runs under one guide set (:mod:`qcdaemon.qc.rules`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalogue import NEED_REASONS, NEEDS_MS3, NEEDS_SEARCH, Catalogue, Direction, MetricInfo, Scale, as_number
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
from .rules import MIN_POINTS, Baseline, RuleResult, RuleSpec, evaluate, parse_rule
from .rules import baseline as _baseline

__all__ = [
    "DEFAULT_RULES",
    "NOT_METRICS",
    "PLOT_ONLY",
    "ColumnValues",
    "Context",
    "Series",
    "Settings",
    "micros",
    "sorted_runs",
    "to_units",
]

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


def _side(d: Direction) -> int:
    return -1 if d is Direction.HIGHER else 1 if d is Direction.LOWER else 0


def _f(v: Any) -> float:
    x = as_number(v)
    return math.nan if x is None else x


@dataclass
class Series:
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


@dataclass(frozen=True)
class ColumnValues:
    """A pipeline's values by column, aligned with the runs of a :class:`Context` (NaN: no number),
    and what the catalogue's "needs" look at per run; the vectorised alternative to values in each
    :class:`~qcdaemon.qc.guidesets.Run` (same answers)."""

    columns: Mapping[str, np.ndarray]
    searched: np.ndarray  # bool: a search ran (SearchParameters not None/empty)
    ms3: np.ndarray  # bool: the run has MS3 scans, or does not say (NumMs3Scans null or > 0)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def micros(t: dt.datetime) -> int:
    """Microseconds since 1970 (UTC; naive times are UTC): times compared exactly, as integers."""
    return (as_utc(t) - _EPOCH) // _US


class Context:
    """What every metric shares: runs in order, guide sets, masks. ``values``: the runs' values by
    column (else each run's ``values`` are read); ``seq``: the runs whose rules are evaluated (the
    others only train limits)."""

    def __init__(self, runs: Sequence[Run], settings: Settings, guide_sets: Sequence[GuideSet],
                 exclusions: Mapping[str, Iterable[str]], annotations: Sequence[Annotation],
                 all_guide_sets: list[GuideSet] | None = None, seq: np.ndarray | None = None,
                 values: ColumnValues | None = None, times: Sequence[int] | None = None):
        self.runs = runs
        self.settings = settings
        self.values = values
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
        t_us = np.array([micros(r.acquired) for r in runs] if times is None else times, dtype=np.int64)
        # the guide set in force at each run: the latest in-force time at or before its time
        starts = np.array([micros(g.in_force_from) for g in self.gs_list], dtype=np.int64)
        self.gs = np.searchsorted(starts, t_us, side="right").astype(np.int64) - 1
        self.seq = np.ones(self.n, dtype=bool) if seq is None else seq
        self.rejected = np.fromiter((r.rejected for r in runs), bool, self.n)
        self.trains = {i: self._trains(g, t_us) for i, g in enumerate(self.gs_list) if (self.gs == i).any()}
        self.excluded = {m: np.isin(np.arange(self.n), [self.pos[k] for k in ks if k in self.pos])
                         for m, ks in exclusions.items()}
        self._needs: dict[str, np.ndarray] = {}

    def _trains(self, g: GuideSet, t_us: np.ndarray) -> np.ndarray:
        """Which runs ``g`` is trained on (:meth:`GuideSet.trains`, for all runs at once)."""
        if g.run_keys is not None:
            keys = g.run_keys
            return np.fromiter((k in keys for k in self.keys), bool, self.n)
        out = np.ones(self.n, dtype=bool)
        if g.start is not None:
            out &= t_us >= micros(g.start)
        if g.end is not None:
            out &= t_us <= micros(g.end)
        return out

    def needs(self, need: str) -> np.ndarray:
        if need not in self._needs:
            if need not in (NEEDS_SEARCH, NEEDS_MS3):
                raise ValueError(need)
            if self.values is not None:
                ok = self.values.searched if need == NEEDS_SEARCH else self.values.ms3
            elif need == NEEDS_SEARCH:
                ok = np.array([not (p is None or (isinstance(p, str) and p.strip() in ("", "None")))
                               for p in (r.values.get("SearchParameters") for r in self.runs)], dtype=bool)
            else:
                ok = np.array([(c := as_number(r.values.get("NumMs3Scans"))) is None or c > 0 for r in self.runs],
                              dtype=bool)
            self._needs[need] = ok
        return self._needs[need]

    def raw(self, column: str) -> np.ndarray:
        """A column's values as numbers (NaN: none, or not a number)."""
        if self.values is not None:
            got = self.values.columns.get(column)
            return np.full(self.n, np.nan) if got is None else got
        return np.fromiter((_f(r.values.get(column)) for r in self.runs), float, self.n)

    def why_not(self, s: Series) -> np.ndarray:
        """Per run, why ``s`` could not be judged (an object array of texts; meaningful where
        ``s.judged`` is false): the first of no guide set, the value's own reason (no value, a
        condition unmet, a "not computed" sentinel, not positive on a log scale), too few or equal
        training values, else no applicable rule."""
        info, x = s.info, s.x
        why = np.full(self.n, "no rule could be applied", dtype=object)
        min_points = self.settings.min_points
        for gi, g in enumerate(self.gs_list):
            here = s.gs == gi
            base = s.bases.get(gi)
            if base is None:
                got = s.training.get(gi)
                why[here] = (f"not enough runs for limits ({0 if got is None else got.size} usable in guide set "
                             f"{g.id}, {min_points} needed)")
            elif base.sd == 0:
                why[here] = f"no spread in guide set {g.id} (all values equal)"
        finite = np.isfinite(x)
        # the value's own reasons, from the last checked to the first (the first that applies wins)
        if info.scale is Scale.LOG:
            for j in np.flatnonzero(finite & (x <= 0)).tolist():
                why[j] = f"{x[j]:g} is not positive (log scale)"
        for sen in reversed(info.sentinels):
            why[finite & np.isclose(x, sen.value, rtol=1e-12, atol=1e-15)] = sen.reason
        if info.needs is not None:
            why[~self.needs(info.needs)] = NEED_REASONS[info.needs]
        nan = ~finite
        why[nan] = "no value"
        if self.values is None:  # a value that is there but no number says what it is
            for i in np.flatnonzero(nan).tolist():
                run = self.runs[i]
                if (v := run.values.get(info.column)) is not None:
                    why[i] = info.clean(v, run.values)[1]
        why[s.gs < 0] = "no guide set in force"
        return why

    def _values(self, info: MetricInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A metric's values (NaN: none), which are usable (a number, no "not computed" sentinel,
        the condition met, positive on a log scale), and those on the computing scale (NaN: not usable)."""
        x = self.raw(info.column)
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
        return x, ok, y

    def series(self, column: str, specs: tuple[RuleSpec, ...] | None = None) -> Series:
        info = self.settings.catalogue[column]
        specs = self.settings.rules_for(column) if specs is None else specs
        n = self.n
        x, ok, y = self._values(info)
        log = info.scale is Scale.LOG
        side = _side(info.direction)
        usable = ok & ~self.rejected
        if column in self.excluded:
            usable &= ~self.excluded[column]
        bases: dict[int, Baseline | None] = {}
        training: dict[int, np.ndarray] = {}
        for gi, tr in self.trains.items():
            idx = np.flatnonzero(tr & usable)
            training[gi] = idx
            bases[gi] = _baseline(y[idx], self.settings.min_points)
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
        bounds = zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [n])), strict=True) if n else iter(())
        for start, stop in bounds:
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
        return Series(info, specs, x, y, self.gs, bases, training, z, sev, what, stat, seg_limits,
                       series, judged)


def to_units(v: float | None, log: bool) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return 10.0 ** v if log else v


def sorted_runs(runs: Sequence[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (as_utc(r.acquired), r.key))

