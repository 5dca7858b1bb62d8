"""Configuration: one TOML file read once at start-up into frozen dataclasses.

Every key is documented in ``config.example.toml``; ``tests/test_config.py`` checks that the
example names every field defined here.  Unknown keys and bad values raise :class:`ConfigError`
naming the key, so a typo stops start-up instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

from qcdaemon.core.net import is_loopback
from qcdaemon.core.paths import DataPaths
from qcdaemon.errors import ConfigError
from qcdaemon.hubcfg import HubConfig, split_hub
from qcdaemon.remotecfg import Executors, split_executor_keys
from qcdaemon.search.params import SearchParams

APP = "qcdaemon"
Mode = Literal["foreground", "service"]

DEFAULT_RAWTOOLS_ARGS = "-p -q -x -u -l -m -r TMT11 -chro 12TB"


def default_data_dir(mode: Mode = "foreground") -> Path:
    """User data dir in the foreground, the machine-wide state dir for a system service."""
    if mode == "service":
        if os.name == "nt":  # C:\ProgramData\qcdaemon
            return Path(platformdirs.site_data_path(APP, appauthor=False))
        return Path(platformdirs.site_state_path(APP, appauthor=False))  # /var/lib/qcdaemon
    return platformdirs.user_data_path(APP, appauthor=False)


def default_log_dir(mode: Mode = "foreground") -> Path:
    if mode == "service":
        if os.name == "nt":
            return Path(platformdirs.site_data_path(APP, appauthor=False)) / "logs"
        return Path(platformdirs.site_log_path(APP, appauthor=False))  # /var/log/qcdaemon
    return platformdirs.user_log_path(APP, appauthor=False)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    tls_cert: str = ""
    tls_key: str = ""
    allow_insecure_http: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_upload_mb: int = 20480
    session_hours: int = 336
    login_attempts_per_minute: int = 10
    # slow clients (issue 12): see qcdaemon/server/protocol.py
    header_timeout_seconds: float = 20.0
    keepalive_timeout_seconds: float = 75.0
    min_body_bytes_per_second: int = 1024
    body_rate_window_seconds: float = 30.0
    max_connections_per_client: int = 64


@dataclass(frozen=True)
class PathsConfig:
    data_dir: str = ""
    log_dir: str = ""


@dataclass(frozen=True)
class StoreConfig:
    memory_limit: str = "512MB"
    threads: int = 2


@dataclass(frozen=True)
class ToolConfig:
    command: tuple[str, ...] = ()
    timeout_seconds: int = 3600
    max_parallel: int = 1
    attempts: int = 1


@dataclass(frozen=True)
class MaxQuantConfig(ToolConfig):
    timeout_seconds: int = 6 * 3600
    threads: int = 1
    runtime: str = "auto"  # auto | mono | dotnet | none


@dataclass(frozen=True)
class SearchConfig:
    """The Sage identification search (needs ``qcdaemon[search]``); runs for pipelines with a FASTA."""

    enabled: bool = True
    timeout_seconds: int = 1800
    max_parallel: int = 1
    attempts: int = 1
    threads: int = 2
    memory_mb: int = 4096
    fdr: float = 0.01
    enzyme: str = "trypsin"
    missed_cleavages: int = 1
    fixed_mods: tuple[str, ...] = ("C:Carbamidomethyl",)
    variable_mods: tuple[str, ...] = ("M:Oxidation",)
    tmt: str = ""
    precursor_tolerance_ppm: float = 20.0
    fragment_tolerance: float = 0.0
    fragment_unit: str = "auto"


@dataclass(frozen=True)
class EngineConfig:
    native: bool = True
    native_timeout_seconds: int = 600
    nice: int = 10
    shutdown_timeout: int = 30
    rawtools: ToolConfig = field(default_factory=lambda: ToolConfig(timeout_seconds=1800, max_parallel=1))
    maxquant: MaxQuantConfig = field(default_factory=MaxQuantConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    min_free_mb: int = 1024  # no stage starts with less free space in the data folder (issue 12)
    work_retention_hours: float = 168.0  # work folders of finished runs are removed at start-up after this


@dataclass(frozen=True)
class WatchConfig:
    path: str
    pipeline: str
    owner: str
    patterns: tuple[str, ...] = ("*.raw",)
    recursive: bool = True
    polling: bool = False
    settle_seconds: float = 60.0
    poll_interval: float = 5.0
    timezone: str = ""  # the instrument PC's IANA timezone (RAW times are its wall clock); "": this host's
    working_hours: tuple[str, ...] = ()  # e.g. ["mon-fri 07:00-19:00"]; empty = always (silence alerts)
    follow_symlinks: bool = False  # a symbolic link in the folder is rejected unless this is true (issue 12)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"  # auto | console | json


@dataclass(frozen=True)
class SchedulerConfig:
    sweep_minutes: float = 5.0
    checkpoint_hour: int = 3


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
                    "daemon_crash", "queue_stuck")


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
    minutes: float = 0.0  # silence / stalled / unreachable / queue_stuck limit; 0 = the condition's default
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


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    token_file: str = ""
    token_env: str = ""


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    watch: tuple[WatchConfig, ...] = ()
    log: LogConfig = field(default_factory=LogConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    mode: Mode = "foreground"
    source: str = ""  # the file this was read from ("" = embedded defaults)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    executors: Executors = field(default_factory=Executors)  # where stages run (qcdaemon/remotecfg.py)
    hub: HubConfig = field(default_factory=HubConfig)  # the instrument daemons pulled from (qcdaemon/hubcfg.py)

    @property
    def data_dir(self) -> Path:
        return Path(self.paths.data_dir) if self.paths.data_dir else default_data_dir(self.mode)

    @property
    def log_dir(self) -> Path:
        return Path(self.paths.log_dir) if self.paths.log_dir else default_log_dir(self.mode)

    @property
    def files(self) -> DataPaths:
        """Every file and folder under the data directory."""
        return DataPaths(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.files.db


# --------------------------------------------------------------------------------------------
# Loading and validation


def _coerce(key: str, value: Any, ftype: Any) -> Any:
    """Check one value against the dataclass field type, converting lists to tuples."""
    t = ftype if isinstance(ftype, str) else getattr(ftype, "__name__", str(ftype))
    if t.startswith("tuple[str"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if t == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return value
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if t == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported value {value!r}")  # pragma: no cover


def _build(cls: type, table: Any, prefix: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}"
        f = fields.get(key)
        if f is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{name}: unknown key (known keys: {known})")
        sub = _SUBTABLES.get((cls, key))
        kwargs[key] = _build(sub, value, name) if sub else _coerce(name, value, f.type)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}.{missing[0]}: required key missing")
    return cls(**kwargs)


_SUBTABLES: dict[tuple[type, str], type] = {
    (EngineConfig, "rawtools"): ToolConfig,
    (EngineConfig, "maxquant"): MaxQuantConfig,
    (EngineConfig, "search"): SearchConfig,
}


def _validate(cfg: Config) -> None:
    s = cfg.server
    if not 0 < s.port < 65536:
        raise ConfigError(f"server.port: {s.port} is not a TCP port")
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ConfigError("server.tls_cert: tls_cert and tls_key must be given together")
    for key in ("tls_cert", "tls_key"):
        p = getattr(s, key)
        if p and not Path(p).is_file():
            raise ConfigError(f"server.{key}: file {p} does not exist")
    if s.max_upload_mb <= 0:
        raise ConfigError("server.max_upload_mb: must be positive")
    for key in ("header_timeout_seconds", "keepalive_timeout_seconds", "min_body_bytes_per_second",
                "max_connections_per_client", "body_rate_window_seconds"):  # issue 12: 0 = off
        if getattr(s, key) < 0 or (key == "body_rate_window_seconds" and getattr(s, key) <= 0):
            raise ConfigError(f"server.{key}: must not be negative" if key != "body_rate_window_seconds"
                              else f"server.{key}: must be positive")
    if cfg.engine.min_free_mb < 0 or cfg.engine.work_retention_hours < 0:
        raise ConfigError("engine.min_free_mb: must not be negative" if cfg.engine.min_free_mb < 0
                          else "engine.work_retention_hours: must not be negative")
    if cfg.store.threads < 1:
        raise ConfigError("store.threads: must be at least 1")
    import re

    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)", cfg.store.memory_limit):
        raise ConfigError(f"store.memory_limit: {cfg.store.memory_limit!r} is not a size like '512MB'")
    for name in ("rawtools", "maxquant", "search"):
        tool: ToolConfig = getattr(cfg.engine, name)
        if tool.timeout_seconds <= 0:
            raise ConfigError(f"engine.{name}.timeout_seconds: must be positive")
        if tool.max_parallel < 1:
            raise ConfigError(f"engine.{name}.max_parallel: must be at least 1")
        if tool.attempts < 1:
            raise ConfigError(f"engine.{name}.attempts: must be at least 1")
    try:
        SearchParams.from_config(cfg.engine.search)
    except ConfigError as exc:
        raise ConfigError(f"engine.{exc}") from None
    if cfg.engine.maxquant.runtime not in ("auto", "mono", "dotnet", "none"):
        raise ConfigError("engine.maxquant.runtime: must be one of auto, mono, dotnet, none")
    if cfg.engine.native_timeout_seconds <= 0:
        raise ConfigError("engine.native_timeout_seconds: must be positive")
    if not -20 <= cfg.engine.nice <= 19:
        raise ConfigError("engine.nice: must be between -20 and 19")
    if cfg.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level: {cfg.log.level!r} is not one of debug, info, warning, error")
    if cfg.log.format not in ("auto", "console", "json"):
        raise ConfigError(f"log.format: {cfg.log.format!r} is not one of auto, console, json")
    for i, w in enumerate(cfg.watch):
        key = f"watch[{i}]"
        if not w.path:
            raise ConfigError(f"{key}.path: must not be empty")
        if not _is_absolute(w.path):
            raise ConfigError(f"{key}.path: {w.path!r} must be an absolute path (a service has no useful working folder)")
        if not w.pipeline:
            raise ConfigError(f"{key}.pipeline: must name 'project-slug/pipeline-slug' or a pipeline uuid")
        if "@" not in w.owner:
            raise ConfigError(f"{key}.owner: must be the e-mail of an existing user")
        if w.settle_seconds < 0:
            raise ConfigError(f"{key}.settle_seconds: must not be negative")
        if w.poll_interval <= 0:
            raise ConfigError(f"{key}.poll_interval: must be positive")
        if not w.patterns:
            raise ConfigError(f"{key}.patterns: must name at least one pattern")
        if w.timezone:
            try:
                ZoneInfo(w.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"{key}.timezone: {w.timezone!r} is not an IANA timezone such as 'Europe/Berlin'") from None
    _check_overlaps(cfg.watch)
    _validate_alerts(cfg)


def _is_absolute(path: str) -> bool:
    from pathlib import PureWindowsPath

    return Path(path).expanduser().is_absolute() or PureWindowsPath(path).is_absolute()


def _norm(path: str) -> str:
    return os.path.normcase(os.path.abspath(os.path.expanduser(path))).rstrip("\\/") + os.sep


def _check_overlaps(watches: tuple[WatchConfig, ...]) -> None:
    """One folder feeds one pipeline: the same folder twice, or a folder inside a recursively
    watched one, would send one file to whichever entry sees it first."""
    for i, a in enumerate(watches):
        for j, b in enumerate(watches):
            if i >= j:
                continue
            na, nb = _norm(a.path), _norm(b.path)
            if na == nb:
                raise ConfigError(f"watch[{j}].path: {b.path} is also watch[{i}]; one folder feeds one pipeline")
            for (outer, oi, inner, ii) in ((a, i, b, j), (b, j, a, i)):
                if outer.recursive and _norm(inner.path).startswith(_norm(outer.path)):
                    raise ConfigError(
                        f"watch[{ii}].path: {inner.path} lies inside watch[{oi}] ({outer.path}), which is recursive;"
                        " set recursive = false there or watch separate folders"
                    )


def transport_problem(cfg: Config) -> str | None:
    """Why the server must not start as configured (plain HTTP on the network without opt-in), or None."""
    s = cfg.server
    if is_loopback(s.host) or s.tls_cert or s.allow_insecure_http:
        return None
    return (
        f"server.host: {s.host} is reachable from other machines; set server.tls_cert and server.tls_key "
        "to serve HTTPS, or server.allow_insecure_http = true to accept plain HTTP"
    )


def load_config(path: str | os.PathLike[str] | None = None, *, mode: Mode = "foreground") -> Config:
    """Read ``path`` (or use the embedded defaults when None) and validate it."""
    if path is None:
        cfg = Config(mode=mode)
        _validate(cfg)
        return cfg
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p}: {exc}") from None
    return config_from_dict(data, mode=mode, source=str(p.resolve()))


def config_from_dict(data: dict[str, Any], *, mode: Mode = "foreground", source: str = "") -> Config:
    sections = {
        "server": ServerConfig, "paths": PathsConfig, "store": StoreConfig, "engine": EngineConfig,
        "log": LogConfig, "scheduler": SchedulerConfig, "metrics": MetricsConfig,
    }
    data, executors = split_executor_keys(data)
    data, hub = split_hub(data)
    kwargs: dict[str, Any] = {"executors": executors, "hub": hub}
    for key, value in data.items():
        if key == "watch":
            if isinstance(value, dict):
                value = [value]
            if not isinstance(value, list):
                raise ConfigError("watch: expected [[watch]] tables")
            kwargs["watch"] = tuple(_build(WatchConfig, v, f"watch[{i}]") for i, v in enumerate(value))
        elif key == "alerts":
            kwargs["alerts"] = _build_alerts(value)
        elif key in sections:
            kwargs[key] = _build(sections[key], value, key)
        else:
            raise ConfigError(f"{key}: unknown section (known: {', '.join(sorted([*sections, 'watch', 'alerts']))})")
    cfg = Config(**kwargs, mode=mode, source=source)
    _validate(cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# Alerts ([alerts], [[alerts.channel]], [[alerts.rule]])


def _build_alerts(table: Any) -> AlertsConfig:
    if not isinstance(table, dict):
        raise ConfigError("alerts: expected a table")
    rest = dict(table)
    lists: dict[str, Any] = {}
    for key, cls in (("channel", AlertChannelConfig), ("rule", AlertRuleConfig)):
        value = rest.pop(key, [])
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"alerts.{key}: expected [[alerts.{key}]] tables")
        lists[key] = tuple(_build(cls, v, f"alerts.{key}[{i}]") for i, v in enumerate(value))
    return dataclasses.replace(_build(AlertsConfig, rest, "alerts"), **lists)


def parse_clock_range(text: str) -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` -> (start, end) in minutes after midnight (end may be before start: over midnight)."""
    import re

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


def _validate_alerts(cfg: Config) -> None:
    for i, w in enumerate(cfg.watch):
        for entry in w.working_hours:
            try:
                parse_working_hours(entry)
            except ValueError as exc:
                raise ConfigError(f"watch[{i}].working_hours: {exc}") from None
    a = cfg.alerts
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
