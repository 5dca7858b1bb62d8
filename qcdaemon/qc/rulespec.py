"""Rule specifications: which control rule a metric uses, with which parameters, in the JSON/TOML
form the API, the CLI and the config file write (``{"rule": "levey_jennings", "warn": 2, "fail":
3}``), parsed and checked here. What each rule computes is in :mod:`qcdaemon.qc.rules`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["D4", "KINDS", "WESTGARD_DEFAULT", "WESTGARD_RULES", "RuleSpec", "parse_rule", "parse_rules"]

D4 = 3.267  # Montgomery, Appendix VI, n = 2
WESTGARD_RULES = ("1-2s", "1-3s", "2-2s", "R-4s", "4-1s", "10-x")
WESTGARD_DEFAULT = ("1-3s", "2-2s", "R-4s", "4-1s", "10-x")  # 1-2s is the warning rule
KINDS = ("levey_jennings", "robust", "moving_range", "cusum_mean", "cusum_var", "westgard",
         "cutoff", "percent", "plot_only", "off")


@dataclass(frozen=True)
class RuleSpec:
    """One configured rule of a metric (each kind is defined in :mod:`qcdaemon.qc.rules`)."""

    kind: str
    warn: float | None = None  # SD multiples (LJ, robust) or percent (percent)
    fail: float | None = None
    k: float = 0.5  # CUSUM reference value
    h: float = 5.0  # CUSUM decision interval
    factor: float = D4  # moving range UCL factor
    rules: tuple[str, ...] = WESTGARD_DEFAULT
    min: float | None = None
    max: float | None = None
    warn_min: float | None = None
    warn_max: float | None = None

    @property
    def judges(self) -> bool:
        return self.kind not in ("plot_only", "off")

    @property
    def needs_baseline(self) -> bool:
        return self.kind not in ("cutoff", "plot_only", "off")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.kind}
        if self.kind in ("levey_jennings", "robust", "percent"):
            out |= {"warn": self.warn, "fail": self.fail}
        elif self.kind in ("cusum_mean", "cusum_var"):
            out |= {"k": self.k, "h": self.h}
        elif self.kind == "moving_range":
            out["factor"] = self.factor
        elif self.kind == "westgard":
            out["rules"] = list(self.rules)
        elif self.kind == "cutoff":
            out |= {"min": self.min, "max": self.max, "warn_min": self.warn_min,
                    "warn_max": self.warn_max}
        return out


_DEFAULT_SD = {"warn": 2.0, "fail": 3.0}
_ALLOWED = {
    "levey_jennings": {"warn", "fail"}, "robust": {"warn", "fail"}, "percent": {"warn", "fail"},
    "moving_range": {"factor"}, "cusum_mean": {"k", "h"}, "cusum_var": {"k", "h"},
    "westgard": {"rules"}, "cutoff": {"min", "max", "warn_min", "warn_max"},
    "plot_only": set(), "off": set(),
}


def _num(name: str, v: Any, *, positive: bool = True) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, not {v!r}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be greater than 0, not {v!r}")
    return float(v)


def parse_rule(obj: Mapping[str, Any] | str) -> RuleSpec:
    """A rule from its JSON/TOML form: ``{"rule": "levey_jennings", "warn": 2, "fail": 3}``, or a
    bare kind name. Raises ValueError naming the problem."""
    if isinstance(obj, str):
        obj = {"rule": obj}
    if not isinstance(obj, Mapping):
        raise ValueError(f"a rule is an object with a 'rule' key, not {obj!r}")
    kind = obj.get("rule")
    if kind not in _ALLOWED:
        raise ValueError(f"unknown rule {kind!r}; known: {', '.join(KINDS)}")
    extra = set(obj) - {"rule"} - _ALLOWED[kind]
    if extra:
        raise ValueError(f"rule {kind}: unknown field(s) {sorted(extra)}; "
                         f"allowed: {sorted(_ALLOWED[kind]) or 'none'}")
    kw: dict[str, Any] = {}
    if kind in ("levey_jennings", "robust"):
        kw["warn"] = _num("warn", obj.get("warn", _DEFAULT_SD["warn"]))
        kw["fail"] = _num("fail", obj.get("fail", _DEFAULT_SD["fail"]))
    elif kind == "percent":
        kw["warn"] = _num("warn", obj.get("warn"))
        kw["fail"] = _num("fail", obj.get("fail"))
        if kw["warn"] is None and kw["fail"] is None:
            raise ValueError("rule percent: give warn and/or fail (percent)")
    elif kind in ("cusum_mean", "cusum_var"):
        kw["k"] = _num("k", obj.get("k", 0.5), positive=False)
        kw["h"] = _num("h", obj.get("h", 5.0))
        if kw["k"] < 0:
            raise ValueError("k must not be negative")
    elif kind == "moving_range":
        kw["factor"] = _num("factor", obj.get("factor", D4))
    elif kind == "westgard":
        rules = obj.get("rules", list(WESTGARD_DEFAULT))
        if not isinstance(rules, (list, tuple)) or not rules or any(r not in WESTGARD_RULES for r in rules):
            raise ValueError(f"rule westgard: rules must be a non-empty subset of {list(WESTGARD_RULES)}")
        kw["rules"] = tuple(dict.fromkeys(rules))
    elif kind == "cutoff":
        for key in ("min", "max", "warn_min", "warn_max"):
            kw[key] = _num(key, obj.get(key), positive=False)
        if all(v is None for v in kw.values()):
            raise ValueError("rule cutoff: give at least one of min, max, warn_min, warn_max")
    if kind in ("levey_jennings", "robust", "percent") and kw["warn"] and kw["fail"] \
            and kw["warn"] > kw["fail"]:
        raise ValueError(f"rule {kind}: warn ({kw['warn']}) must not exceed fail ({kw['fail']})")
    return RuleSpec(kind, **kw)


def parse_rules(obj: Any) -> tuple[RuleSpec, ...]:
    """A metric's rules: a list of rules, one rule, or ``"plot_only"`` / ``"off"``."""
    if isinstance(obj, (str, Mapping)):
        obj = [obj]
    if not isinstance(obj, (list, tuple)) or not obj:
        raise ValueError("rules must be a non-empty list")
    specs = tuple(parse_rule(o) for o in obj)
    if len(specs) > 1 and any(not s.judges for s in specs):
        raise ValueError("plot_only and off stand alone, not with other rules")
    return specs


# -- evaluation ------------------------------------------------------------------------------
