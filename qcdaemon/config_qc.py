"""The ``[[qc]]`` section: quality-control settings of one pipeline kept in the config file.

One table per pipeline (named as in ``[[watch]]``: ``"project-slug/pipeline-slug"`` or its uuid)
with the pipeline's automatic guide sets and offline time, and per metric (a QC column, as in
``/api/qc-data``) its rules and its catalogue fields::

    [[qc]]
    pipeline = "lab-qc/exploris-480-hela"
    auto_guide_runs = 20
    offline_hours = 24

    [qc.metrics."Ms1MedianSummedIntensity"]
    rules = [{ rule = "levey_jennings", warn = 2, fail = 3 }, { rule = "cusum_mean" }]
    direction = "higher"

Rules are written as the API takes them (:func:`qcdaemon.qc.rulespec.parse_rules`); the
catalogue fields are those of :class:`qcdaemon.qc.catalogue.MetricInfo` (label, unit, direction,
scale, sentinels, needs, shown, mzqc, source). Both are checked here with the same parser the API
uses, so a file that loads holds only settings the daemon accepts. How they reach the store (the
file wins at each start for what it names) is :mod:`qcdaemon.service.qcconfig`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qcdaemon.config_toml import tables
from qcdaemon.errors import ConfigError
from qcdaemon.qc.catalogue import METRIC_FIELDS, Catalogue, is_known
from qcdaemon.qc.rulespec import parse_rules

__all__ = ["QcMetricConfig", "QcPipelineConfig", "build_qc", "qc_warnings"]

MAX_AUTO_GUIDE_RUNS = 10000  # as the API


@dataclass(frozen=True)
class QcMetricConfig:
    """One metric's settings: its rules (None: the defaults) and catalogue fields."""

    rules: tuple[Mapping[str, Any], ...] | None = None  # each as RuleSpec.as_dict() gives it
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QcPipelineConfig:
    pipeline: str
    auto_guide_runs: int | None = None  # automatic guide sets: first N accepted runs (0: none)
    offline_hours: float | None = None  # OFFLINE after this long without a new file
    metrics: Mapping[str, QcMetricConfig] = field(default_factory=dict)


_KEYS = ("pipeline", "auto_guide_runs", "offline_hours", "metrics")


def build_qc(value: Any) -> tuple[QcPipelineConfig, ...]:
    out = tuple(_pipeline(t, f"qc[{i}]") for i, t in enumerate(tables(value, "qc")))
    seen: dict[str, int] = {}
    for i, q in enumerate(out):
        if q.pipeline in seen:
            raise ConfigError(f"qc[{i}].pipeline: {q.pipeline!r} is also qc[{seen[q.pipeline]}]; one [[qc]] per pipeline")
        seen[q.pipeline] = i
    return out


def _pipeline(table: Any, key: str) -> QcPipelineConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{key}: expected a table")
    for k in table:
        if k not in _KEYS:
            raise ConfigError(f"{key}.{k}: unknown key (known keys: {', '.join(_KEYS)})")
    pipeline = table.get("pipeline")
    if not isinstance(pipeline, str) or not pipeline.strip():
        raise ConfigError(f"{key}.pipeline: required, 'project-slug/pipeline-slug' or a pipeline uuid")
    auto = table.get("auto_guide_runs")
    if auto is not None and (isinstance(auto, bool) or not isinstance(auto, int) or not 0 <= auto <= MAX_AUTO_GUIDE_RUNS):
        raise ConfigError(f"{key}.auto_guide_runs: a whole number from 0 (no automatic guide sets) to "
                          f"{MAX_AUTO_GUIDE_RUNS}, not {auto!r}")
    hours = table.get("offline_hours")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, (int, float))
                              or not math.isfinite(hours) or hours <= 0):
        raise ConfigError(f"{key}.offline_hours: a positive number of hours, not {hours!r}")
    metrics = table.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ConfigError(f'{key}.metrics: expected tables such as [{key.split("[")[0]}.metrics."MS1 column"]')
    return QcPipelineConfig(pipeline.strip(), auto, None if hours is None else float(hours),
                            {name: _metric(m, f'{key}.metrics."{name}"', name) for name, m in metrics.items()})


def _metric(table: Any, key: str, name: str) -> QcMetricConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"{key}: expected a table of rules and catalogue fields")
    if not name.strip():
        raise ConfigError(f"{key}: a metric is named by its QC column")
    known = ("rules", *sorted(METRIC_FIELDS))
    if not table:
        raise ConfigError(f"{key}: give rules and/or catalogue fields ({', '.join(known)})")
    rules = None
    overrides: dict[str, Any] = {}
    for k, v in table.items():
        if k == "rules":
            try:
                rules = tuple(s.as_dict() for s in parse_rules(v))
            except ValueError as exc:
                raise ConfigError(f"{key}.rules: {exc}") from None
        elif k in METRIC_FIELDS:
            try:
                Catalogue({name: {k: v}})
            except ValueError as exc:
                text = str(exc)
                raise ConfigError(f"{key}.{k}: {text.split(': ', 1)[1] if text.startswith(name) else text}") from None
            overrides[k] = v
        else:
            raise ConfigError(f"{key}.{k}: unknown key (known keys: {', '.join(known)})")
    return QcMetricConfig(rules, overrides)


def qc_warnings(qc: tuple[QcPipelineConfig, ...]) -> list[str]:
    """Metrics named in ``[[qc]]`` that no source qcdaemon knows writes (a typo, or a column of a
    source added later: its settings apply once a run has it)."""
    return [f'qc[{i}].metrics."{name}": not a QC column qcdaemon knows; the settings apply once a run has '
            "a value of that name (see GET /api/qc/metrics for the names)"
            for i, q in enumerate(qc) for name in q.metrics if not is_known(name)]
