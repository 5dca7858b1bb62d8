"""What a verdict says: its status (pass / warn / fail / not enough data), one :class:`Reason` per
violation (metric, rule, value, limits, z-score, guide set), and why metrics were not judged."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAIL", "NOT_ENOUGH", "PASS", "WARN", "Reason", "Verdict"]

PASS, WARN, FAIL, NOT_ENOUGH = "pass", "warn", "fail", "not enough data"


@dataclass(frozen=True, slots=True)
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
