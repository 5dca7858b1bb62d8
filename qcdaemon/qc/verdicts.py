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
from dataclasses import dataclass
from typing import overload

import numpy as np

from .catalogue import Scale, as_number
from .charts import CHART_KINDS, chart
from .guidesets import Annotation, GuideSet, GuideSetIndex, Run, as_utc, automatic_guide_sets, resolve
from .reasons import FAIL, NOT_ENOUGH, PASS, WARN, Reason, Verdict
from .rules import RuleSpec, Severity
from .series import ColumnValues, Context, Series, Settings, sorted_runs, to_units
from .status import instrument_status

__all__ = [
    "CHART_KINDS",
    "FAIL",
    "NOT_ENOUGH",
    "PASS",
    "WARN",
    "ColumnValues",
    "Evaluation",
    "Frame",
    "Plan",
    "Reason",
    "Settings",
    "Verdict",
    "chart",
    "evaluate_from",
    "evaluate_pipeline",
    "evaluate_run",
    "frame",
    "instrument_status",
    "judged_columns",
    "plan_run",
]

_WORDS = ("none", "warn", "fail")  # by Severity value


def _reason_limits(spec: RuleSpec, lim: Mapping[str, float | None], sev: int, log: bool,
                   ) -> tuple[float | None, float | None]:
    if spec.kind in ("levey_jennings", "robust"):
        word = "fail" if sev == Severity.FAIL else "warn"
        return to_units(lim.get(f"{word}_low"), log), to_units(lim.get(f"{word}_high"), log)
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


class _Prepared:
    """One series as plain lists (fast to index per run), and its reasons' limits as computed."""

    def __init__(self, ctx: Context, s: Series) -> None:
        self.s, self.col, self.log = s, s.info.column, s.info.scale is Scale.LOG
        any_hit = np.zeros(ctx.n, dtype=bool)
        for sev in s.sev:
            any_hit |= sev > 0
        self.judged, self.why, self.hit = s.judged.tolist(), ctx.why_not(s).tolist(), any_hit.tolist()
        self.sevs = [sev.tolist() for sev in s.sev]
        self.x, self.z, self.gs = s.x.tolist(), s.z.tolist(), s.gs.tolist()
        self.stat = [st.tolist() for st in s.stat]
        self._limits: dict[tuple[int, int, int], tuple[float | None, float | None]] = {}

    def reasons(self, i: int, gid: str | None) -> list[Reason]:
        """The violations of run ``i``, one per rule that warned or failed it."""
        s, out, gi = self.s, [], self.gs[i]
        for si, spec in enumerate(s.specs):
            level = self.sevs[si][i]
            if not level:
                continue
            lim = self._limits.get((si, gi, level))
            if lim is None:
                lim = self._limits[(si, gi, level)] = _reason_limits(spec, s.seg_limits[si].get(gi, {}), level,
                                                                     self.log)
            st, z = self.stat[si][i], self.z[i]
            if spec.kind in ("levey_jennings", "robust"):  # the rule's own standardised value
                st, z = math.nan, st
            elif spec.kind == "westgard":
                st = math.nan
            out.append(Reason(self.col, s.info.label, spec.kind, s.what[si].get(i, spec.kind), _WORDS[level],
                              self.x[i], lim[0], lim[1], z if math.isfinite(z) else None,
                              st if math.isfinite(st) else None, gid if spec.needs_baseline else None))
        return out


def _verdicts(ctx: Context, columns: Sequence[str], which: Iterable[int]) -> dict[str, Verdict]:
    prepared = [_Prepared(ctx, ctx.series(c)) for c in columns]
    gids = [ctx.gs_list[g].id if g >= 0 else None for g in ctx.gs.tolist()]
    out: dict[str, Verdict] = {}
    for i in which:
        reasons: list[Reason] = []
        checked: list[str] = []
        unchecked: dict[str, str] = {}
        gid = gids[i]
        for p in prepared:
            if not p.judged[i]:
                unchecked[p.col] = p.why[i]
                continue
            checked.append(p.col)
            if p.hit[i]:
                reasons.extend(p.reasons(i, gid))
        if any(r.severity == "fail" for r in reasons):
            status = FAIL
        elif reasons:
            status = WARN
        else:
            status = PASS if checked else NOT_ENOUGH
        out[ctx.keys[i]] = Verdict(ctx.keys[i], status, tuple(reasons), tuple(checked), unchecked, gid)
    return out


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
    runs = sorted_runs(runs)
    ctx = Context(runs, settings, guide_sets, exclusions or {}, annotations)
    which = range(ctx.n) if only is None else [ctx.pos[k] for k in only if k in ctx.pos]
    return Evaluation(_verdicts(ctx, _columns(runs, settings, columns), which), ctx.guide_sets)


def evaluate_from(fr: Frame, settings: Settings, start: int, values: ColumnValues,
                  exclusions: Mapping[str, Iterable[str]] | None = None,
                  columns: Iterable[str] | None = None) -> dict[str, Verdict]:
    """Verdicts of the frame's runs from position ``start`` on, ``values`` aligned with them. What
    those verdicts depend on lies at or after ``start`` when a guide set comes into force there (a
    guide set is only trained on runs at or after its in-force time, and sequential rules restart
    when it takes over), so they are those of :func:`evaluate_pipeline` (tested); ``start`` 0 gives
    every verdict."""
    runs = fr.runs[start:]
    ctx = Context(runs, settings, (), exclusions or {}, (), all_guide_sets=fr.guide_sets, values=values)
    cols = settings.judged(dict.fromkeys([*(columns if columns is not None else values.columns), *settings.rules]))
    return _verdicts(ctx, cols, range(ctx.n))


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
    ordered = sorted_runs(runs)
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
    ctx = Context(sub, settings, (), exclusions or {}, annotations, all_guide_sets=all_sets, seq=seq)
    return _verdicts(ctx, cols, [ctx.pos[key]])[key]


@dataclass(frozen=True)
class Plan:
    """What one run's verdict depends on (for loading only those values from the store)."""

    alone: bool  # only this run's verdict can change (else recompute the pipeline)
    training: tuple[str, ...]  # keys of the in-force guide set's training runs
    earlier: Sequence[str]  # earlier runs of its guide-set period, newest first
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
    return Plan(alone, training, _Earlier(runs, start, pos), _history(settings.rules_for(c) for c in cols), cols)


class _Earlier(Sequence[str]):
    """The keys of ``runs[start:stop]``, newest first, made when looked at (a plan needs few)."""

    def __init__(self, runs: Sequence[Run], start: int, stop: int) -> None:
        self._runs, self._start, self._stop = runs, start, max(start, stop)

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._runs[self._stop - 1 - (i % len(self))].key
