"""The alert conditions as pure functions: values in, "does it hold, and why" out. No store, no clock.

The verdict conditions take verdict dicts shaped like ``qcdaemon.qc.verdicts.Verdict.as_dict()``:
``{"verdict": "pass" | "warn" | "fail" | "not enough data", "reasons": [{"metric", "label", "rule",
"detail", "severity", "value", "low", "high", "z", "text", ...}]}``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from qcdaemon.config import AlertRuleConfig, parse_clock_range, parse_working_hours

# the limit of each clock-dependent condition when a rule gives ``minutes = 0``
DEFAULT_MINUTES = {
    "silence": 120.0,  # SprayQc: no new file for 2 hours after the last one
    "stalled": 30.0,  # SprayQc: a RAW file that has not grown for 30 minutes
    "unreachable": 10.0,
    "queue_stuck": 120.0,
    "hub_unreachable": 30.0,  # a [[hub.source]] the hub cannot pull from
}
EVENT_CONDITIONS = frozenset({"verdict", "stage_failed"})
"""Conditions made of occurrences (failed runs): counted, summarised, resolved by a later success.
The others are states that hold or not at each check."""

GLOBAL_CONDITIONS = frozenset({"daemon_crash", "queue_stuck", "hub_unreachable"})


def limit_minutes(rule: AlertRuleConfig) -> float:
    return rule.minutes if rule.minutes > 0 else DEFAULT_MINUTES.get(rule.condition, 0.0)


@dataclass(frozen=True)
class PipelineRef:
    project: str  # project slug
    pipeline: str  # pipeline slug
    uuid: str = ""

    @property
    def label(self) -> str:
        return f"{self.project}/{self.pipeline}"


def in_scope(rule: AlertRuleConfig, p: PipelineRef | None) -> bool:
    """Does ``rule`` cover pipeline ``p``? (None: something of no pipeline, e.g. the data dir: only
    rules of scope "all" cover it.)"""
    if rule.scope == "all":
        return True
    if p is None:
        return False
    if rule.scope == "project":
        return rule.project == p.project
    return rule.pipeline in (p.label, p.uuid)


# -- verdicts -----------------------------------------------------------------------------------

_RANK = {"pass": 0, "not enough data": 0, "warn": 1, "fail": 2}


def _counted(reason: Mapping[str, Any], severity: str) -> bool:
    sev = str(reason.get("severity", "fail"))
    return _RANK.get(sev, 2) >= _RANK[severity]


def verdict_reasons(verdict: Mapping[str, Any], severity: str = "fail") -> list[dict[str, Any]] | None:
    """The reasons that make ``verdict`` alert under ``severity`` ("fail": only a fail verdict;
    "warn": warn or fail), or None when it does not. A fail verdict with no reason listed gives []."""
    status = str(verdict.get("verdict", ""))
    if _RANK.get(status, 0) < _RANK[severity]:
        return None
    return [dict(r) for r in verdict.get("reasons", []) if isinstance(r, Mapping) and _counted(r, severity)]


def outliers_hold(recent: Sequence[Mapping[str, Any]], k: int, n: int, severity: str = "fail") -> bool:
    """Panorama's "at least K outliers in each of the N most recent runs": ``recent`` are the newest
    runs' verdicts, newest first; an outlier is a reason of at least ``severity`` (a metric outside
    its limits). Fewer than N runs with verdicts: does not hold."""
    if len(recent) < n:
        return False
    return all(sum(1 for r in v.get("reasons", []) if isinstance(r, Mapping) and _counted(r, severity)) >= k
               for v in recent[:n])


def reason_text(r: Mapping[str, Any]) -> str:
    """A reason as a technician reads it: metric, value against limits, rule.

    The verdict's own text gives the limits the rule compared; for the percent rule those are
    percentages of the guide-set mean (``statistic`` is the run's deviation), so the message adds
    the mean and the limits in the metric's units: mean = value / (1 + deviation / 100)."""
    label = r.get("label") or r.get("metric") or "?"
    value, stat, low, high = (_num(r.get(k)) for k in ("value", "statistic", "low", "high"))
    if r.get("rule") == "percent" and value is not None and stat is not None and stat > -100 \
            and (low is not None or high is not None):
        mean = value / (1 + stat / 100)
        lo = _g(mean * (1 + low / 100)) if low is not None else "-∞"
        hi = _g(mean * (1 + high / 100)) if high is not None else "+∞"
        pct = f"{_g(low)} % to {_g(high)} %" if low is not None and high is not None else f"{_g(low or high)} %"
        gs = f"; guide set {r['guide_set']}" if r.get("guide_set") else ""
        return (f"{label}: {_g(value)}, {stat:+.1f} % from the guide-set mean {_g(mean)} (limits {lo} to {hi}:"
                f" {pct}); rule percent, {r.get('detail', '')}{gs}")
    if r.get("text"):
        return str(r["text"])
    limits = f" (limits {_g(r.get('low'))} to {_g(r.get('high'))})" if low is not None or high is not None else ""
    return f"{label}: {_g(r.get('value'))}{limits}, {r.get('rule', '')} {r.get('detail', '')}".strip()


def _num(x: Any) -> float | None:
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def _g(x: Any) -> str:
    if x is None:
        return "none"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


# -- schedules ------------------------------------------------------------------------------------

Schedule = list[tuple[frozenset[int], int, int]]


def parse_schedule(entries: Iterable[str]) -> Schedule:
    return [parse_working_hours(e) for e in entries]


def _intervals(day: dt.date, schedule: Schedule) -> list[tuple[dt.datetime, dt.datetime]]:
    """Working intervals that start on ``day`` (local, naive)."""
    midnight = dt.datetime.combine(day, dt.time())
    out = []
    for days, start, end in schedule:
        if day.weekday() in days:
            a = midnight + dt.timedelta(minutes=start)
            b = midnight + dt.timedelta(minutes=end if end > start else end + 1440)  # over midnight
            out.append((a, b))
    return out


def working_seconds(since: dt.datetime, until: dt.datetime, schedule: Schedule) -> float:
    """Seconds of [since, until] (local naive times) inside the working hours; all of it when
    ``schedule`` is empty (always working). Looks back at most 31 days."""
    if until <= since:
        return 0.0
    if not schedule:
        return (until - since).total_seconds()
    since = max(since, until - dt.timedelta(days=31))
    total = 0.0
    day = since.date() - dt.timedelta(days=1)  # an interval of the day before may run past midnight
    while day <= until.date():
        for a, b in _intervals(day, schedule):
            lo, hi = max(a, since), min(b, until)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += dt.timedelta(days=1)
    return total


def is_working(at: dt.datetime, schedule: Schedule) -> bool:
    if not schedule:
        return True
    return any(a <= at < b for d in (at.date() - dt.timedelta(days=1), at.date()) for a, b in _intervals(d, schedule))


def in_quiet_hours(local: dt.datetime, quiet: str) -> bool:
    """``quiet`` like "22:00-07:00" (may run over midnight); "" = never quiet."""
    if not quiet:
        return False
    start, end = parse_clock_range(quiet)
    m = local.hour * 60 + local.minute
    return start <= m < end if start < end else (m >= start or m < end)


def to_local(utc_naive: dt.datetime, tz: str = "") -> dt.datetime:
    """A stored (naive UTC) time as local wall-clock time, naive: in the IANA zone ``tz`` (an
    instrument's), or the daemon host's when ``tz`` is empty."""
    aware = utc_naive.replace(tzinfo=dt.UTC)
    return (aware.astimezone(ZoneInfo(tz)) if tz else aware.astimezone()).replace(tzinfo=None)


def watch_timezone(watch: Any) -> str:
    """The watch's ``timezone`` (the instrument PC's, added to [[watch]] by the quality-control
    issue) when the configuration has that key; "" (this host's) otherwise."""
    tz = getattr(watch, "timezone", "")
    return tz if isinstance(tz, str) else ""
