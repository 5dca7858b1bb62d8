"""Configuration: one TOML file read once at start-up into frozen dataclasses.

Every key is documented in ``config.example.toml``; ``tests/test_config.py`` checks that the
example names every field defined here.  Unknown keys and bad values raise :class:`ConfigError`
naming the key, so a typo stops start-up instead of being silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

from qcdaemon.config_alerts import (
    ALERT_CONDITIONS,
    AlertChannelConfig,
    AlertRuleConfig,
    AlertsConfig,
    build_alerts,
    parse_clock_range,
    parse_working_hours,
    validate_alerts,
)
from qcdaemon.config_qc import QcMetricConfig, QcPipelineConfig, build_qc
from qcdaemon.config_toml import build, tables
from qcdaemon.config_watch import WatchConfig, validate_watches
from qcdaemon.core.net import is_loopback
from qcdaemon.core.paths import DataPaths
from qcdaemon.errors import ConfigError
from qcdaemon.hubcfg import HubConfig, split_hub
from qcdaemon.remotecfg import Executors, split_executor_keys
from qcdaemon.search.params import SearchParams

__all__ = [  # the alerts' and the QC section's types live in their own modules; importable from here
    "ALERT_CONDITIONS",
    "DEFAULT_RAWTOOLS_ARGS",
    "AlertChannelConfig",
    "AlertRuleConfig",
    "AlertsConfig",
    "Config",
    "EngineConfig",
    "LogConfig",
    "MaxQuantConfig",
    "MetricsConfig",
    "PathsConfig",
    "QcMetricConfig",
    "QcPipelineConfig",
    "SchedulerConfig",
    "SearchConfig",
    "ServerConfig",
    "StoreConfig",
    "ToolConfig",
    "WatchConfig",
    "config_from_dict",
    "default_data_dir",
    "default_log_dir",
    "load_config",
    "parse_clock_range",
    "parse_working_hours",
    "transport_problem",
]

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
    # DuckDB's cap (buffer pool and working memory) while reads come; the pool is dropped to
    # store.memory.CACHE_FLOOR once they stop (AsyncStore).  Measured on issue 13's 1,000-run
    # bench: 128 MB / 64 MB as the standing cap cost protein-groups 60-130 ms CPU a request.
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
    keep_warm_seconds: int = 300  # the warm search worker's idle life; 0 = a fresh child per run
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
class LogConfig:
    level: str = "info"
    format: str = "auto"  # auto | console | json


@dataclass(frozen=True)
class SchedulerConfig:
    sweep_minutes: float = 5.0
    checkpoint_hour: int = 3


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
    qc: tuple[QcPipelineConfig, ...] = ()  # [[qc]]: per-pipeline QC settings (qcdaemon.config_qc)
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
    if cfg.engine.search.keep_warm_seconds < 0:
        raise ConfigError("engine.search.keep_warm_seconds: must not be negative")
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
    validate_watches(cfg.watch)
    validate_alerts(cfg.alerts)



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
            kwargs["watch"] = tuple(build(WatchConfig, v, f"watch[{i}]") for i, v in enumerate(tables(value, "watch")))
        elif key == "alerts":
            kwargs["alerts"] = build_alerts(value)
        elif key == "qc":
            kwargs["qc"] = build_qc(value)
        elif key in sections:
            kwargs[key] = build(sections[key], value, key, _SUBTABLES)
        else:
            raise ConfigError(f"{key}: unknown section (known: {', '.join(sorted([*sections, 'watch', 'alerts', 'qc']))})")
    cfg = Config(**kwargs, mode=mode, source=source)
    _validate(cfg)
    return cfg


# --------------------------------------------------------------------------------------------
