"""The ``[[watch]]`` section: one table per instrument output folder, and its checks (absolute
paths, one folder feeding one pipeline, timezones, working hours)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from qcdaemon.config_alerts import parse_working_hours
from qcdaemon.errors import ConfigError

__all__ = ["WatchConfig", "validate_watches"]


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


def validate_watches(watches: tuple[WatchConfig, ...]) -> None:
    for i, w in enumerate(watches):
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
    _check_overlaps(watches)
    for i, w in enumerate(watches):
        for entry in w.working_hours:
            try:
                parse_working_hours(entry)
            except ValueError as exc:
                raise ConfigError(f"watch[{i}].working_hours: {exc}") from None

def _is_absolute(path: str) -> bool:
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
