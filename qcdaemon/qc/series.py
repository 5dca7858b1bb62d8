"""One pipeline's QC settings and the per-metric engine behind verdicts and charts (pure, numpy).

:class:`Settings` says which rules judge which metric; :class:`Context` holds what every metric
shares (runs in acquisition order, the guide set in force at each run, rejections, exclusions)
and :meth:`Context.series` computes one metric over the runs: values on its computing scale, the
limits of each guide set from its usable training values, and each rule's result per run, rule
by rule over the stretches of runs under one guide set (:mod:`qcdaemon.qc.rules`).
"""

from __future__ import annotations

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
from .rules import MIN_POINTS, Baseline, RuleResult, RuleSpec, evaluate, parse_rule
from .rules import baseline as _baseline

__all__ = ["DEFAULT_RULES", "NOT_METRICS", "PLOT_ONLY", "Context", "Series", "Settings", "sorted_runs", "to_units"]

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


class Context:
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

    def series(self, column: str, specs: tuple[RuleSpec, ...] | None = None) -> Series:
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
        return Series(info, specs, x, y, self.gs, bases, training, z, sev, what, stat, seg_limits,
                       series, judged)



def to_units(v: float | None, log: bool) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return 10.0 ** v if log else v



def sorted_runs(runs: Sequence[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (as_utc(r.acquired), r.key))

