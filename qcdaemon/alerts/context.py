"""What every alert check shares: the store, the configuration, the lifecycle manager, the clock,
the daemon's address for links, and the pipelines named by watches (looked up once)."""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from qcdaemon.alerts.conditions import PipelineRef
from qcdaemon.alerts.manager import AlertManager, Clock
from qcdaemon.config import AlertRuleConfig, Config, WatchConfig
from qcdaemon.core.runkeys import run_id_of
from qcdaemon.store import AsyncStore, Store

OVERLAP = dt.timedelta(seconds=5)  # cursors re-read this far back (events are deduplicated)


class WatcherLike(Protocol):
    def status(self) -> list[dict[str, Any]]: ...

    def add_file_listener(self, listener: Any) -> None: ...


class HubLike(Protocol):
    """The hub's puller: per source, ``{"ok": bool | None, "error": str, ...}`` after each pull."""

    status: dict[str, dict[str, Any]]


class SchedulerLike(Protocol):
    def add_job(self, func: Any, trigger: str, **kwargs: Any) -> Any: ...


def base_url(cfg: Config) -> str:
    """The daemon's address as the lab reaches it (``[alerts] base_url``, else the server's)."""
    if cfg.alerts.base_url:
        return cfg.alerts.base_url.rstrip("/")
    s = cfg.server
    host = socket.gethostname() if s.host in ("0.0.0.0", "::", "") else s.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if s.tls_cert else 'http'}://{host}:{s.port}"


@dataclass
class AlertContext:
    store: AsyncStore
    cfg: Config
    manager: AlertManager
    clock: Clock
    base: str
    _pipelines: dict[str, tuple[PipelineRef, int] | None] = field(default_factory=dict)

    def rules_of(self, condition: str) -> list[AlertRuleConfig]:
        return [r for r in self.cfg.alerts.rule if r.condition == condition]

    def run_link(self, ref: PipelineRef, run_key: str) -> str:
        return f"{self.base}/pipelines/{ref.project}/{ref.pipeline}?run={run_key}"

    async def pipeline(self, ref: str) -> tuple[PipelineRef, int] | None:
        """The pipeline a watch names ("project/pipeline" or a uuid) and its project id; None while it does not exist."""
        if self._pipelines.get(ref) is None:
            p = await self.store.call(Store.find_pipeline, ref)
            self._pipelines[ref] = (PipelineRef(p["project_slug"], p["slug"], p["uuid"]), int(p["project_id"])) \
                if p else None
        return self._pipelines[ref]

    async def watch_ref(self, w: WatchConfig) -> tuple[PipelineRef | None, int | None, str]:
        found = await self.pipeline(w.pipeline)
        if found is None:
            return None, None, w.pipeline
        return found[0], found[1], found[0].label


def run_number(run_key: str) -> int:
    return run_id_of(run_key) or 0


def dur(d: dt.timedelta) -> str:
    s = int(d.total_seconds())
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"
