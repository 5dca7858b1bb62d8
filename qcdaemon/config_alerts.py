"""The ``[alerts]`` section: channels (``[[alerts.channel]]``, apprise URLs), rules
(``[[alerts.rule]]``), the alerting loop's timings, and the clock ranges of quiet and working hours."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from qcdaemon.config_toml import build, tables
from qcdaemon.errors import ConfigError

__all__ = [
    "ALERT_CONDITIONS",
    "WEEKDAYS",
    "AlertChannelConfig",
    "AlertRuleConfig",
    "AlertsConfig",
    "build_alerts",
    "parse_clock_range",
    "parse_working_hours",
    "validate_alerts",
]


@dataclass(frozen=True)
class AlertChannelConfig:
    """One place alerts are sent to: an apprise URL, given inline or (with its secrets) in a file or
    an environment variable; never logged."""

    name: str
    url: str = ""
    url_file: str = ""
    url_env: str = ""
    quiet_hours: str = ""  # "22:00-07:00" (daemon host's local time): held, then one digest


ALERT_CONDITIONS = ("verdict", "outliers", "stage_failed", "silence", "stalled", "unreachable", "disk_space",
                    "daemon_crash", "queue_stuck", "hub_unreachable")


@dataclass(frozen=True)
class AlertRuleConfig:
    name: str
    condition: str
    channels: tuple[str, ...] = ()
    scope: str = "all"  # all | project | pipeline
    project: str = ""  # scope = "project": the project slug
    pipeline: str = ""  # scope = "pipeline": "project-slug/pipeline-slug" or a pipeline uuid
    severity: str = "fail"  # verdict, outliers: "fail", or "warn" (warn or fail)
    outliers: int = 1  # outliers: at least K outliers ...
    runs: int = 1  # ... in each of the N most recent runs (1..5)
    stage: str = ""  # stage_failed: one stage (native, rawtools, maxquant); "" = any
    minutes: float = 0.0  # silence / stalled / (hub_)unreachable / queue_stuck limit; 0 = the default
    min_free_gb: float = 5.0  # disk_space
    repeat_minutes: float = 0.0  # 0 = [alerts] repeat_minutes


@dataclass(frozen=True)
class AlertsConfig:
    check_seconds: float = 30.0
    group_seconds: float = 60.0
    repeat_minutes: float = 240.0
    retry_seconds: float = 30.0
    retry_max_minutes: float = 60.0
    give_up_hours: float = 48.0
    failing_after: int = 3
    base_url: str = ""
    channel: tuple[AlertChannelConfig, ...] = ()
    rule: tuple[AlertRuleConfig, ...] = ()



def build_alerts(table: Any) -> AlertsConfig:
    if not isinstance(table, dict):
        raise ConfigError("alerts: expected a table")
    rest = dict(table)
    lists: dict[str, Any] = {}
    for key, cls in (("channel", AlertChannelConfig), ("rule", AlertRuleConfig)):
        value = tables(rest.pop(key, []), f"alerts.{key}")
        lists[key] = tuple(build(cls, v, f"alerts.{key}[{i}]") for i, v in enumerate(value))
    return dataclasses.replace(build(AlertsConfig, rest, "alerts"), **lists)


def parse_clock_range(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` -> (start, end) in minutes after midnight (end may be before start: over midnight)."""
    m = re.fullmatch(r"\s*([01]?\d|2[0-4]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a time range like '22:00-07:00'")
    start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    if start > 1440 or end > 1440 or start == end:
        raise ValueError(f"{text!r} is not a time range like '22:00-07:00'")
    return start, end


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_working_hours(entry: str) -> tuple[frozenset[int], int, int]:
    """``"mon-fri 07:00-19:00"`` / ``"sat,sun 09:00-13:00"`` / ``"07:00-19:00"`` (every day) ->
    (weekdays 0=Monday.., start minute, end minute)."""
    parts = entry.split()
    if len(parts) == 1:
        days = frozenset(range(7))
    elif len(parts) == 2:
        found: set[int] = set()
        for piece in parts[0].lower().split(","):
            a, _, b = piece.partition("-")
            if a not in WEEKDAYS or (b and b not in WEEKDAYS):
                raise ValueError(f"{entry!r}: days are mon..sun, e.g. 'mon-fri 07:00-19:00'")
            i, j = WEEKDAYS.index(a), WEEKDAYS.index(b or a)
            found.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(j + 1)])
        days = frozenset(found)
    else:
        raise ValueError(f"{entry!r} is not like 'mon-fri 07:00-19:00'")
    start, end = parse_clock_range(parts[-1])
    return days, start, end


def validate_alerts(a: AlertsConfig) -> None:
    for key in ("check_seconds", "retry_seconds", "retry_max_minutes", "give_up_hours", "repeat_minutes"):
        if getattr(a, key) <= 0:
            raise ConfigError(f"alerts.{key}: must be positive")
    if a.group_seconds < 0:
        raise ConfigError("alerts.group_seconds: must not be negative")
    if a.failing_after < 1:
        raise ConfigError("alerts.failing_after: must be at least 1")
    names: set[str] = set()
    for i, ch in enumerate(a.channel):
        key = f"alerts.channel[{i}]"
        if not ch.name or ch.name in names:
            raise ConfigError(f"{key}.name: must be given and unique")
        names.add(ch.name)
        if sum(bool(x) for x in (ch.url, ch.url_file, ch.url_env)) != 1:
            raise ConfigError(f"{key}.url: give exactly one of url, url_file, url_env")
        if ch.quiet_hours:
            try:
                parse_clock_range(ch.quiet_hours)
            except ValueError as exc:
                raise ConfigError(f"{key}.quiet_hours: {exc}") from None
    rules: set[str] = set()
    for i, r in enumerate(a.rule):
        key = f"alerts.rule[{i}]"
        if not r.name or r.name in rules:
            raise ConfigError(f"{key}.name: must be given and unique")
        rules.add(r.name)
        if r.condition not in ALERT_CONDITIONS:
            raise ConfigError(f"{key}.condition: {r.condition!r} is not one of {', '.join(ALERT_CONDITIONS)}")
        if not r.channels:
            raise ConfigError(f"{key}.channels: name at least one [[alerts.channel]]")
        for c in r.channels:
            if c not in names:
                raise ConfigError(f"{key}.channels: no [[alerts.channel]] is named {c!r}")
        if r.scope not in ("all", "project", "pipeline"):
            raise ConfigError(f"{key}.scope: must be all, project or pipeline")
        if r.condition == "hub_unreachable" and r.scope != "all":  # a hub's sources have no project or pipeline
            raise ConfigError(f"{key}.scope: rule {r.name!r} (hub_unreachable) watches the hub's sources, which"
                              " belong to no project or pipeline; it needs scope = \"all\"")
        if r.scope == "project" and not r.project:
            raise ConfigError(f"{key}.project: scope = \"project\" needs the project slug")
        if r.scope == "pipeline" and not r.pipeline:
            raise ConfigError(f"{key}.pipeline: scope = \"pipeline\" needs 'project-slug/pipeline-slug' or a uuid")
        if r.severity not in ("fail", "warn"):
            raise ConfigError(f"{key}.severity: must be fail or warn")
        if r.outliers < 1:
            raise ConfigError(f"{key}.outliers: must be at least 1")
        if not 1 <= r.runs <= 5:
            raise ConfigError(f"{key}.runs: must be between 1 and 5 (as Panorama)")
        if r.minutes < 0 or r.repeat_minutes < 0:
            raise ConfigError(f"{key}.minutes: must not be negative")
        if r.min_free_gb < 0:
            raise ConfigError(f"{key}.min_free_gb: must not be negative")
