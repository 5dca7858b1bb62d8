"""The lab-wide view's configuration (issue 17): a daemon that pulls from instrument daemons.

::

    [hub]
    interval_seconds = 30          # how often each source is asked for what changed
    timeout_seconds = 30           # one HTTP request to a source
    batch = 200                    # runs per page of GET /api/changes
    data_batch = 500               # protein groups or PSMs per page of GET /api/changes/run

    [[hub.source]]
    name = "orbitrap-1"            # the origin each pulled run keeps
    url = "https://orbi1.lab:8000"
    token_file = "/etc/qcdaemon/orbi1.token"   # or: token = "..."
    pipelines = {"proteomics/tmt-qc" = "core/orbi1-tmt"}   # default: the same project/pipeline

Split off the configuration before ``config.py`` builds it (:func:`split_hub`).  Pure: values in,
values out (a ``token_file`` is read by the puller, at each pull, so a rotated token is taken).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from qcdaemon.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TARGET = re.compile(r"[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True)
class HubSource:
    name: str
    url: str
    token: str = ""
    token_file: str = ""
    pipelines: tuple[tuple[str, str], ...] = ()  # the source's project/pipeline -> the hub's


@dataclass(frozen=True)
class HubConfig:
    sources: tuple[HubSource, ...] = ()
    interval_seconds: float = 30.0
    timeout_seconds: float = 30.0
    batch: int = 200
    data_batch: int = 500

    @property
    def enabled(self) -> bool:
        return bool(self.sources)


def split_hub(data: dict[str, Any]) -> tuple[dict[str, Any], HubConfig]:
    """The configuration without ``[hub]``, and ``[hub]`` parsed.

    Raises:
        ConfigError: a bad value, naming its key.
    """
    if "hub" not in data:
        return data, HubConfig()
    rest = {k: v for k, v in data.items() if k != "hub"}
    table = data["hub"]
    if not isinstance(table, dict):
        raise ConfigError("hub: expected a table")
    table = dict(table)
    raw = table.pop("source", [])
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError("hub.source: expected [[hub.source]] tables")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in ("interval_seconds", "timeout_seconds", "batch", "data_batch"):
            raise ConfigError(f"hub.{key}: unknown key (known: interval_seconds, timeout_seconds, batch, data_batch,"
                              " source)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"hub.{key}: expected a positive number, got {value!r}")
        kwargs[key] = int(value) if key in ("batch", "data_batch") else float(value)
    if kwargs.get("batch", 1) > 1000:
        raise ConfigError("hub.batch: at most 1000")
    if kwargs.get("data_batch", 1) > 1000:  # the source answers at most 1000 groups (5000 PSMs) a page
        raise ConfigError("hub.data_batch: at most 1000")
    sources = tuple(_source(i, s) for i, s in enumerate(raw))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError("hub.source: two sources have the same name")
    return rest, HubConfig(sources=sources, **kwargs)


def _source(i: int, table: Any) -> HubSource:
    where = f"hub.source[{i}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(table) - {"name", "url", "token", "token_file", "pipelines"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key (known: name, url, token, token_file, pipelines)")
    for key in ("name", "url", "token", "token_file"):
        if not isinstance(table.get(key, ""), str):
            raise ConfigError(f"{where}.{key}: expected a string")
    name, url = table.get("name", ""), str(table.get("url", "")).rstrip("/")
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}.name: expected a short name of letters, digits, '.', '_', '-', got {name!r}")
    if not re.fullmatch(r"https?://[^\s/]+", url):
        raise ConfigError(f"{where}.url: expected http(s)://host:port, got {url!r}")
    if bool(table.get("token")) == bool(table.get("token_file")):
        raise ConfigError(f"{where}: give exactly one of token, token_file")
    pipelines = table.get("pipelines", {})
    if not isinstance(pipelines, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _TARGET.fullmatch(v) for k, v in pipelines.items()
    ):
        raise ConfigError(f'{where}.pipelines: expected a table like {{"project/pipeline" = "hub-project/hub-pipeline"}}'
                          " (slugs: lower-case letters, digits, '-')")
    return HubSource(name=name, url=url, token=table.get("token", ""), token_file=table.get("token_file", ""),
                     pipelines=tuple(sorted(pipelines.items())))
