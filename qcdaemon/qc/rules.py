"""Control rules: textbook statistical quality control on one metric's values (pure, numpy).

Everything here works on the values of one metric under one guide set (a *segment*): ``y`` is
the sequence, in acquisition order, of the runs that have a value, on the metric's computing
scale (log10 for log-scale metrics, :mod:`qcdaemon.qc.catalogue`), and :class:`Baseline` holds the
guide set's statistics on the same scale. Sequential rules (moving range, CUSUM, Westgard) start
afresh at the first run of a segment, so a new guide set (or a baseline reset) restarts them.

Definitions, as in the cited sources:

* **Levey-Jennings** (Levey & Jennings, Am J Clin Pathol 1950; Westgard et al., Clin Chem 27:493,
  1981): limits mean ± k·SD of the guide set, SD the sample standard deviation (n - 1). A value
  beyond ±``fail``·SD (default 3) fails, beyond ±``warn``·SD (default 2) warns.
* **Robust**: median ± k·σ̂, σ̂ = 1.4826·MAD (the MAD scaled to estimate σ of normal data;
  Rousseeuw & Croux, JASA 88:1273, 1993), same defaults.
* **Moving range** (Montgomery, *Introduction to Statistical Quality Control*, 7th ed., §6.4,
  individuals and moving-range chart): MRᵢ = |yᵢ - yᵢ₋₁|; UCL = D₄·MR̄ with D₄ = 3.267 for ranges of
  two, MR̄ the mean moving range of the guide set's consecutive values; LCL = 0. Panorama uses the
  same chart (its constant is rounded to 3.268).
* **CUSUM of the mean** (Montgomery §9.1, tabular CUSUM, on standardised values zᵢ = (yᵢ - μ₀)/σ
  with μ₀, σ from the guide set): C⁺ᵢ = max(0, zᵢ - k + C⁺ᵢ₋₁), C⁻ᵢ = max(0, -zᵢ - k + C⁻ᵢ₋₁),
  C⁺₀ = C⁻₀ = 0; out of control when a sum exceeds the decision interval h. Panorama and MSstatsQC
  (Bennett et al., J Proteome Res 14:2950, 2015; Dogu et al., Mol Cell Proteomics 16:1335, 2017)
  use k = 0.5 and h = 5, the defaults here.
* **CUSUM of the variability** (Hawkins, Technometrics 23:405, 1981, "A CUSUM for a scale
  parameter"; Hawkins & Olwell, *Cumulative Sum Charts and Charting for Quality Improvement*,
  1998; MSstatsQC's CUSUMv): vᵢ = (√|zᵢ| - 0.822)/0.349, approximately N(0, 1) in control, then
  the tabular CUSUM above on vᵢ. Only C⁺ (variability up) is a fault; lower variability never is.
* **Westgard multirules** (Westgard, Barry, Hunt & Groth, Clin Chem 27:493, 1981), on
  zᵢ = (yᵢ - mean)/SD, each judging the newest value with the ones before it:
  ``1-2s`` (warning rule: one value beyond 2 SD), ``1-3s`` (one beyond 3 SD), ``2-2s`` (two
  consecutive beyond the same 2 SD limit), ``R-4s`` (one beyond +2 SD and the other beyond
  -2 SD; the 1981 rule reads within one run of two control materials, here, with one QC sample
  per run, it reads across two consecutive runs as in Westgard's "across runs" application),
  ``4-1s`` (four consecutive beyond the same 1 SD limit), ``10-x`` (ten consecutive on the same
  side of the mean). "Beyond" means strictly greater than the limit in absolute value.
* **Fixed cutoffs**: a value below ``min`` or above ``max`` fails (``warn_min``/``warn_max`` warn);
  in the metric's own units, no guide set needed, both sides as written.
* **Percent deviation** from the guide-set mean (Panorama's mean-deviation cutoff, as a
  percentage): 100·(x - m)/|m|, m the guide-set mean (the geometric mean for log-scale metrics).

One-sided rules: a metric's good direction (:class:`~qcdaemon.qc.catalogue.Direction`) decides
which side is a fault. For "higher is better" only low values (and downward shifts, jumps down,
C⁻) count; for "lower is better" only high ones; for "both" either side. Guide-set statistics
are computed only from at least :data:`MIN_POINTS` usable values (Panorama warns below 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from .rulespec import D4, KINDS, WESTGARD_DEFAULT, WESTGARD_RULES, RuleSpec, parse_rule, parse_rules

__all__ = [
    "CUSUMV_MEAN",
    "CUSUMV_SD",
    "D4",
    "KINDS",
    "MAD_SCALE",
    "MIN_POINTS",
    "WESTGARD_DEFAULT",
    "WESTGARD_RULES",
    "Baseline",
    "RuleResult",
    "RuleSpec",
    "Severity",
    "baseline",
    "evaluate",
    "parse_rule",
    "parse_rules",
]

MIN_POINTS = 5
MAD_SCALE = 1.4826  # 1/Φ⁻¹(3/4): MAD -> σ for normal data
CUSUMV_MEAN, CUSUMV_SD = 0.822, 0.349  # Hawkins 1981: E and SD of √|Z| for Z ~ N(0, 1)


class Severity(IntEnum):
    NONE = 0
    WARN = 1
    FAIL = 2

    @property
    def word(self) -> str:
        return ("none", "warn", "fail")[self]


@dataclass(frozen=True)
class Baseline:
    """Guide-set statistics of one metric, on its computing scale."""

    n: int
    mean: float
    sd: float  # sample SD (n - 1)
    median: float
    mad: float  # unscaled median absolute deviation
    mr_mean: float | None  # mean moving range of consecutive guide-set values

    @property
    def sigma_robust(self) -> float:
        return MAD_SCALE * self.mad


def baseline(ys: Sequence[float] | np.ndarray, min_points: int = MIN_POINTS) -> Baseline | None:
    """Statistics of a guide set's values in acquisition order; None below ``min_points``."""
    a = np.asarray(ys, dtype=float)
    a = a[np.isfinite(a)]
    if a.size < max(min_points, 2):
        return None
    med = float(np.median(a))
    mr = float(np.mean(np.abs(np.diff(a)))) if a.size >= 2 else None
    return Baseline(int(a.size), float(np.mean(a)), float(np.std(a, ddof=1)), med,
                    float(np.median(np.abs(a - med))), mr)



# -- evaluation ------------------------------------------------------------------------------


@dataclass
class RuleResult:
    """One rule over one segment: a severity per value, what it compared, and chart series."""

    severity: np.ndarray  # int8 per value
    what: list[str | None]  # per value: which sub-rule or limit fired (None if nothing)
    statistic: np.ndarray | None = None  # per value: the charted statistic (C⁺/C⁻, MR, %)
    limits: dict[str, float | None] = field(default_factory=dict)  # on the computing scale
    series: dict[str, np.ndarray] = field(default_factory=dict)


def _side_mask(a: np.ndarray, t: float, side: int) -> np.ndarray:
    """Values beyond ``t`` on the faulty side: side +1 high is bad, -1 low is bad, 0 either."""
    if side > 0:
        return a > t
    if side < 0:
        return a < -t
    return np.abs(a) > t


def _runs(b: np.ndarray, n: int) -> np.ndarray:
    """True at i when b[i-n+1..i] are all true (n consecutive)."""
    c = np.concatenate(([0], np.cumsum(b.astype(np.int64))))
    out = np.zeros(b.size, dtype=bool)
    if b.size >= n:
        out[n - 1:] = (c[n:] - c[:-n]) == n
    return out


def _tabular_cusum(w: np.ndarray) -> np.ndarray:
    """C_i = max(0, C_{i-1} + w_i), C_0 = 0, as S_i - min(0, min_{j<=i} S_j) with S the partial
    sums of w (the Lindley recursion written in closed form)."""
    s = np.cumsum(w)
    return s - np.minimum(np.minimum.accumulate(s), 0.0)


def _by_sd(y: np.ndarray, center: float, sigma: float, spec: RuleSpec, side: int, label: str,
           sym: str = "SD") -> RuleResult:
    z = (y - center) / sigma
    sev = np.zeros(y.size, dtype=np.int8)
    what: list[str | None] = [None] * y.size
    for level, k in ((Severity.WARN, spec.warn), (Severity.FAIL, spec.fail)):
        if k is None:
            continue
        hit = _side_mask(z, k, side)
        sev[hit] = level
        for i in np.flatnonzero(hit):
            what[i] = f"beyond {label} ± {k:g}·{sym}"
    limits: dict[str, float | None] = {"center": center}
    for name, k in (("warn", spec.warn), ("fail", spec.fail)):
        if k is not None:
            limits[f"{name}_low"] = center - k * sigma if side <= 0 else None
            limits[f"{name}_high"] = center + k * sigma if side >= 0 else None
    return RuleResult(sev, what, z, limits)


def evaluate(spec: RuleSpec, y: np.ndarray, base: Baseline | None, side: int,
             raw: np.ndarray | None = None, log: bool = False) -> RuleResult | None:
    """Apply one rule to a segment's values ``y`` (computing scale; ``raw`` the values in the
    metric's units, for cutoffs and percent). None when the rule needs a baseline it lacks (no
    guide set, fewer than 5 usable values, or zero spread)."""
    raw = y if raw is None else raw
    if spec.kind == "cutoff":
        return _cutoff(spec, raw)
    if base is None:
        return None
    if spec.kind == "levey_jennings":
        return _by_sd(y, base.mean, base.sd, spec, side, "mean") if base.sd > 0 else None
    if spec.kind == "robust":
        s = base.sigma_robust
        return _by_sd(y, base.median, s, spec, side, "median", "1.4826·MAD") if s > 0 else None
    if spec.kind == "percent":
        return _percent(spec, raw, base, side, log)
    if spec.kind == "moving_range":
        return _moving_range(spec, y, base, side)
    if base.sd <= 0:
        return None
    z = (y - base.mean) / base.sd
    if spec.kind in ("cusum_mean", "cusum_var"):
        return _cusum(spec, z, side)
    if spec.kind == "westgard":
        return _westgard(z, spec.rules, side)
    raise ValueError(f"rule {spec.kind} has no evaluation")


def _cutoff(spec: RuleSpec, raw: np.ndarray) -> RuleResult:
    n = raw.size
    sev = np.zeros(n, dtype=np.int8)
    what: list[str | None] = [None] * n
    for level, lo, hi in ((Severity.WARN, spec.warn_min, spec.warn_max),
                          (Severity.FAIL, spec.min, spec.max)):
        if lo is not None:
            for i in np.flatnonzero(raw < lo):
                sev[i], what[i] = level, f"below {'warn_min' if level == 1 else 'min'} {lo:g}"
        if hi is not None:
            for i in np.flatnonzero(raw > hi):
                sev[i], what[i] = level, f"above {'warn_max' if level == 1 else 'max'} {hi:g}"
    return RuleResult(sev, what, None, {"min": spec.min, "max": spec.max,
                                        "warn_min": spec.warn_min, "warn_max": spec.warn_max})


def _percent(spec: RuleSpec, raw: np.ndarray, base: Baseline, side: int, log: bool) -> RuleResult | None:
    m = 10.0 ** base.mean if log else base.mean
    if m == 0:
        return None
    pct = 100.0 * (raw - m) / abs(m)
    sev = np.zeros(raw.size, dtype=np.int8)
    what: list[str | None] = [None] * raw.size
    for level, p in ((Severity.WARN, spec.warn), (Severity.FAIL, spec.fail)):
        if p is not None:
            for i in np.flatnonzero(_side_mask(pct, p, side)):
                sev[i], what[i] = level, f"more than {p:g} % from the guide-set mean"
    return RuleResult(sev, what, pct, {"center": base.mean, "percent_warn": spec.warn,
                                       "percent_fail": spec.fail})


def _moving_range(spec: RuleSpec, y: np.ndarray, base: Baseline, side: int) -> RuleResult | None:
    if not base.mr_mean:
        return None
    d = np.diff(y, prepend=np.nan)  # first value of a segment has no moving range
    mr = np.abs(d)
    ucl = spec.factor * base.mr_mean
    bad = np.nan_to_num(mr, nan=0.0) > ucl
    if side:
        bad &= np.nan_to_num(d, nan=0.0) * side > 0  # a jump towards the good side is no fault
    sev = np.where(bad, Severity.FAIL, Severity.NONE).astype(np.int8)
    what: list[str | None] = [f"moving range above {spec.factor:g} × mean MR" if b else None for b in bad]
    return RuleResult(sev, what, mr, {"center": base.mr_mean, "ucl": ucl, "lcl": 0.0})


def _cusum(spec: RuleSpec, z: np.ndarray, side: int) -> RuleResult:
    w = z if spec.kind == "cusum_mean" else (np.sqrt(np.abs(z)) - CUSUMV_MEAN) / CUSUMV_SD
    cpos = _tabular_cusum(w - spec.k)
    cneg = _tabular_cusum(-w - spec.k)
    hit_pos, hit_neg = cpos > spec.h, cneg > spec.h
    if spec.kind == "cusum_var":
        hit_neg[:] = False  # decreased variability is never a fault
    elif side > 0:
        hit_neg[:] = False
    elif side < 0:
        hit_pos[:] = False
    sev = np.where(hit_pos | hit_neg, Severity.FAIL, Severity.NONE).astype(np.int8)
    word = "mean" if spec.kind == "cusum_mean" else "variability"
    what: list[str | None] = [f"CUSUM⁺ ({word} up) above h = {spec.h:g}" if p else
                              f"CUSUM⁻ ({word} down) above h = {spec.h:g}" if q else None
                              for p, q in zip(hit_pos, hit_neg, strict=True)]
    stat = np.where(hit_neg & ~hit_pos, cneg, cpos)
    return RuleResult(sev, what, stat, {"h": spec.h, "k": spec.k}, {"cusum_pos": cpos, "cusum_neg": cneg})


def _westgard(z: np.ndarray, rules: Sequence[str], side: int) -> RuleResult:
    """Westgard et al. 1981 multirules on standardised values (see the module docstring)."""
    n = z.size
    hi = {t: z > t for t in (0, 1, 2)}
    lo = {t: z < -t for t in (0, 1, 2)}
    sides = [s for s in ((+1, hi), (-1, lo)) if side == 0 or s[0] == side]

    def shifted(b: np.ndarray) -> np.ndarray:
        return np.concatenate(([False], b[:-1])) if n else b

    fired: list[tuple[str, Severity, np.ndarray]] = []  # (rule, level, mask), in the order asked
    for rule in rules:
        mask = np.zeros(n, dtype=bool)
        for sgn, beyond in sides:
            other = lo if sgn > 0 else hi
            if rule == "1-2s":
                mask |= beyond[2]
            elif rule == "1-3s":
                mask |= _side_mask(z, 3, sgn)
            elif rule == "2-2s":
                mask |= _runs(beyond[2], 2)
            elif rule == "R-4s":
                mask |= beyond[2] & shifted(other[2])
            elif rule == "4-1s":
                mask |= _runs(beyond[1], 4)
            elif rule == "10-x":
                mask |= _runs(beyond[0], 10)
        fired.append((rule, Severity.WARN if rule == "1-2s" else Severity.FAIL, mask))
    sev = np.zeros(n, dtype=np.int8)
    for _, level, mask in fired:
        sev = np.maximum(sev, np.where(mask, level, 0).astype(np.int8))
    # which rules fired at the worst level of each value, as a bit code per value, then its text
    code = np.zeros(n, dtype=np.int64)
    for bit, (_, level, mask) in enumerate(fired):
        code |= (mask & (sev == level)).astype(np.int64) << bit
    names: dict[int, str | None] = {0: None}
    what: list[str | None] = []
    for c in code.tolist():
        if c not in names:
            names[c] = ", ".join(r for bit, (r, _, _) in enumerate(fired) if c >> bit & 1)
        what.append(names[c])
    return RuleResult(sev, what, z, {"center": 0.0})
