"""Where a stage runs: the executor keys of ``[engine.<stage>]`` (issue 17).

``executor = "local"`` (the default) runs the stage's tool as a child of the daemon
(``qcdaemon.tools.runner``); ``executor = "dask"`` hands the same command to a Dask cluster
through its scheduler (``qcdaemon.remote``).  The keys live in the stage's own table::

    [engine.maxquant]
    executor = "dask"
    scheduler = "tcp://dask.lab:8786"
    path_map = {"/data/instrument" = "/cluster/instrument"}   # or: transfer = true

They are split off the table before ``config.py`` builds it (:func:`split_executor_keys`), so the
stage's own dataclass stays as it was.  Pure: values in, values out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from qcdaemon.errors import ConfigError

#: Stages that may run on a Dask cluster.  MaxQuant is the heavy one (an hour of all cores per run);
#: the native metrics and RawTools are minutes at most and stay on the instrument PC.
REMOTE_STAGES = ("maxquant",)
EXECUTORS = ("local", "dask")
ON_SCHEDULER_DOWN = ("fail", "wait")


@dataclass(frozen=True)
class RemoteConfig:
    """How one stage is executed."""

    executor: str = "local"
    scheduler: str = ""  # tcp://host:8786 or tls://host:8786
    # daemon-side folder prefix -> the same folder as the workers see it (a share both sides mount)
    path_map: tuple[tuple[str, str], ...] = ()
    transfer: bool = False  # no share: the RAW file goes to the worker, the tables come back
    transfer_max_mb: int = 4096  # the largest RAW file sent to a worker
    output_max_mb: int = 256  # the most a worker may send back (tables and logs)
    on_scheduler_down: str = "fail"  # fail: the attempt fails at once; wait: the stage waits for it
    connect_timeout_seconds: float = 10.0
    tls_ca_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def is_remote(self) -> bool:
        return self.executor == "dask"


@dataclass(frozen=True)
class Executors:
    """The executor of every stage that has one configured (the others run locally)."""

    stages: tuple[tuple[str, RemoteConfig], ...] = ()

    def of(self, stage: str) -> RemoteConfig:
        return dict(self.stages).get(stage, _LOCAL)


_LOCAL = RemoteConfig()
_KEYS = {f.name for f in dataclasses.fields(RemoteConfig)}


def split_executor_keys(data: dict[str, Any]) -> tuple[dict[str, Any], Executors]:
    """The configuration without the executor keys of ``[engine.<stage>]``, and those keys parsed.

    Raises:
        ConfigError: a bad value, naming its key.
    """
    engine = data.get("engine")
    if not isinstance(engine, dict):
        return data, Executors()
    engine = dict(engine)
    found: list[tuple[str, RemoteConfig]] = []
    for stage, table in engine.items():
        if not isinstance(table, dict) or not _KEYS & set(table):
            continue
        rest = {k: v for k, v in table.items() if k not in _KEYS}
        ours = {k: v for k, v in table.items() if k in _KEYS}
        engine[stage] = rest
        found.append((stage, _parse(stage, ours)))
    return {**data, "engine": engine}, Executors(tuple(found))


def _parse(stage: str, table: dict[str, Any]) -> RemoteConfig:
    prefix = f"engine.{stage}"
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}"
        default = getattr(_LOCAL, key)
        if key == "path_map":
            kwargs[key] = _path_map(name, value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{name}: expected true or false, got {value!r}")
            kwargs[key] = value
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name}: expected a number, got {value!r}")
            kwargs[key] = type(default)(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        else:
            kwargs[key] = value
    cfg = RemoteConfig(**kwargs)
    _validate(prefix, stage, cfg)
    return cfg


def _path_map(name: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f'{name}: expected a table of folders, like {{"/data/instrument" = "/cluster/instrument"}}')
    for here, there in value.items():
        for side, path in (("daemon-side", here), ("worker-side", there)):
            if not (PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()):
                raise ConfigError(f"{name}: the {side} folder {path!r} must be an absolute path")
    # the longest prefix first, so a nested share wins over the one around it
    return tuple(sorted(value.items(), key=lambda kv: -len(kv[0])))


def _validate(prefix: str, stage: str, cfg: RemoteConfig) -> None:
    if cfg.executor not in EXECUTORS:
        raise ConfigError(f"{prefix}.executor: {cfg.executor!r} is not one of {', '.join(EXECUTORS)}")
    if cfg.on_scheduler_down not in ON_SCHEDULER_DOWN:
        raise ConfigError(f"{prefix}.on_scheduler_down: must be one of {', '.join(ON_SCHEDULER_DOWN)}")
    for key in ("transfer_max_mb", "output_max_mb", "connect_timeout_seconds"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{prefix}.{key}: must be positive")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError(f"{prefix}.tls_cert: tls_cert and tls_key must be given together")
    if not cfg.is_remote:
        return
    if stage not in REMOTE_STAGES:
        raise ConfigError(f"{prefix}.executor: only {', '.join(REMOTE_STAGES)} can run on a Dask cluster")
    if "://" not in cfg.scheduler:
        raise ConfigError(f'{prefix}.scheduler: the Dask scheduler\'s address, like "tcp://host:8786"')
    if cfg.scheduler.startswith("tls://") != bool(cfg.tls_cert):
        raise ConfigError(f"{prefix}.scheduler: a tls:// address needs tls_cert and tls_key (and tcp:// none)")
    if cfg.transfer == bool(cfg.path_map):
        raise ConfigError(f"{prefix}.path_map: give either path_map (a share both sides see) or transfer = true")


field_names = tuple(sorted(_KEYS))
__all__ = ["REMOTE_STAGES", "Executors", "RemoteConfig", "field_names", "split_executor_keys"]
