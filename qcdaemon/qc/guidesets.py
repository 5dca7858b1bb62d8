"""Guide sets (training windows) and the annotations that reset them (pure).

A guide set is trained on runs picked by an acquisition-time range or by run keys, and is *in
force* from its start: "the expected range calculated by a training period is applied to all future
data points, until a new training period is started" (Panorama, LabKey docs "QC guide sets"). Here:

* A manual guide set by dates is in force from its ``start``; one by run keys from the earliest
  acquisition time among its runs.
* Automatic guide sets: the first ``n`` accepted (not rejected) runs of the pipeline, in force
  from its first run; and after each annotation whose kind resets the baseline (a column change,
  say), the first ``n`` accepted runs acquired at or after it, in force from the annotation's time.
  While fewer than ``n`` such runs exist the set holds those there are.
* The guide set in force at a run's acquisition time is the one with the latest in-force time at
  or before it (a manual one before an automatic one with the same time). Before every guide set
  there is none, and such runs have no limits.
* A metric's limits use the guide set's runs that are not rejected, not excluded for that metric,
  and have a value; fewer than 5 leave the metric without limits ("not enough runs for limits").
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_KINDS",
    "Annotation",
    "AnnotationKind",
    "GuideSet",
    "GuideSetIndex",
    "Run",
    "as_utc",
    "automatic_guide_sets",
    "resolve",
]


def as_utc(t: dt.datetime) -> dt.datetime:
    """An aware UTC time; naive times are taken as UTC (the store keeps UTC)."""
    if t.tzinfo is dt.UTC:
        return t
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


@dataclass(frozen=True)
class AnnotationKind:
    name: str
    label: str
    resets_baseline: bool = False


DEFAULT_KINDS: dict[str, AnnotationKind] = {k.name: k for k in (
    AnnotationKind("column_change", "Column change", True),
    AnnotationKind("source_cleaned", "Source cleaned"),
    AnnotationKind("calibration", "Calibration"),
    AnnotationKind("maintenance", "Maintenance"),
    AnnotationKind("instrument_offline", "Instrument offline"),
    AnnotationKind("other", "Other"),
)}


@dataclass(frozen=True)
class Annotation:
    id: int
    kind: str
    time: dt.datetime
    text: str = ""
    author: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "time": as_utc(self.time).isoformat(),
                "text": self.text, "author": self.author}


@dataclass(frozen=True)
class Run:
    """What guide sets and verdicts need of one run."""

    key: str  # "rf12"
    acquired: dt.datetime  # true UTC
    rejected: bool = False
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GuideSet:
    id: str  # "gs3" (stored), "auto-1" (automatic)
    start: dt.datetime | None = None  # training window by acquisition time (inclusive)
    end: dt.datetime | None = None
    run_keys: frozenset[str] | None = None  # or by run keys
    effective: dt.datetime | None = None  # in force from (resolve() fills it)
    automatic: bool = False
    label: str = ""

    @property
    def in_force_from(self) -> dt.datetime:
        """When the guide set takes over (set by :func:`resolve`)."""
        if self.effective is None:
            raise ValueError(f"guide set {self.id}: resolve() the guide sets first")
        return self.effective

    def trains(self, run: Run) -> bool:
        if self.run_keys is not None:
            return run.key in self.run_keys
        t = as_utc(run.acquired)
        return ((self.start is None or t >= as_utc(self.start))
                and (self.end is None or t <= as_utc(self.end)))

    def as_dict(self) -> dict[str, Any]:
        iso = lambda t: as_utc(t).isoformat() if t is not None else None  # noqa: E731
        return {"id": self.id, "label": self.label, "automatic": self.automatic,
                "start": iso(self.start), "end": iso(self.end),
                "run_keys": sorted(self.run_keys) if self.run_keys is not None else None,
                "effective": iso(self.effective)}


def automatic_guide_sets(runs: Sequence[Run], n: int, annotations: Iterable[Annotation] = (),
                         kinds: Mapping[str, AnnotationKind] = DEFAULT_KINDS) -> list[GuideSet]:
    """The automatic guide sets of a pipeline (``runs`` in acquisition order): the first ``n``
    accepted runs, and the first ``n`` after each baseline-resetting annotation."""
    if n <= 0 or not runs:
        return []
    starts: list[tuple[dt.datetime, str]] = [(as_utc(runs[0].acquired), "the first runs")]
    for a in sorted(annotations, key=lambda a: as_utc(a.time)):
        kind = kinds.get(a.kind)
        if kind is not None and kind.resets_baseline:
            starts.append((as_utc(a.time), f"after {kind.label.lower()} #{a.id}"))
    times = [as_utc(r.acquired) for r in runs]
    out: list[GuideSet] = []
    for i, (t0, why) in enumerate(starts, start=1):
        picked: list[str] = []
        for j in range(bisect.bisect_left(times, t0), len(runs)):
            if not runs[j].rejected:
                picked.append(runs[j].key)
                if len(picked) == n:
                    break
        out.append(GuideSet(f"auto-{i}", run_keys=frozenset(picked), effective=t0, automatic=True,
                            label=f"first {n} accepted runs, {why}"))
    return out


def resolve(guide_sets: Iterable[GuideSet], runs: Sequence[Run]) -> list[GuideSet]:
    """Guide sets with their in-force time filled in, in the order they come into force. A set by
    run keys none of which exists is dropped (it cannot be in force anywhere)."""
    acquired = {r.key: as_utc(r.acquired) for r in runs}
    out: list[GuideSet] = []
    for g in guide_sets:
        eff = g.effective
        if eff is None:
            if g.run_keys is not None:
                ts = [acquired[k] for k in g.run_keys if k in acquired]
                if not ts:
                    continue
                eff = min(ts)
            else:
                eff = g.start if g.start is not None else dt.datetime.min.replace(tzinfo=dt.UTC)
        out.append(GuideSet(g.id, g.start, g.end, g.run_keys, as_utc(eff), g.automatic, g.label))
    out.sort(key=lambda g: (g.effective, g.automatic))
    return out


class GuideSetIndex:
    """Which guide set is in force at a time (latest in-force time at or before it)."""

    def __init__(self, guide_sets: Sequence[GuideSet]):
        # among equal in-force times the manual one (sorted first by resolve) wins
        chosen: dict[dt.datetime, GuideSet] = {}
        for g in guide_sets:
            assert g.effective is not None, "resolve() the guide sets first"
            chosen.setdefault(g.effective, g)
        self.sets = [chosen[t] for t in sorted(chosen)]
        self._times = [g.in_force_from for g in self.sets]
        self.by_id = {g.id: g for g in guide_sets}

    def in_force(self, t: dt.datetime) -> GuideSet | None:
        i = bisect.bisect_right(self._times, as_utc(t)) - 1
        return self.sets[i] if i >= 0 else None

    def until(self, g: GuideSet) -> dt.datetime | None:
        """When the next guide set takes over from ``g`` (None: still in force)."""
        i = self.sets.index(g)
        return self.sets[i + 1].effective if i + 1 < len(self.sets) else None
