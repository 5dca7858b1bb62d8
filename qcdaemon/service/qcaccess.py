"""Who may see and change a pipeline's quality control (the contract's scoping), and the verdict
entry points the engine and the edits call."""

from __future__ import annotations

import datetime as dt
from typing import Any

from qcdaemon.errors import BadRequest, Forbidden
from qcdaemon.service.chartcache import ChartCache
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.rows import PipelineRow, UserRow

from .recording import recompute_sync, record_sync

__all__ = ["QualityBase", "parse_time"]


def parse_time(value: Any, field: str) -> dt.datetime:
    """An ISO 8601 time as aware UTC; a time without offset is UTC."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field}: expected an ISO 8601 time such as 2026-03-01T08:00:00Z")
    try:
        t = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{field}: {value!r} is not an ISO 8601 time") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)



class QualityBase:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.charts = ChartCache()  # chart answers until the store's next write (service/chartcache.py)

    # -- access -------------------------------------------------------------------------------

    async def _visible(self, user: UserRow, project: str, pipeline: str) -> PipelineRow:
        p = await self.store.light(Store.visible_pipeline, user, project, pipeline)
        if p is None:
            raise Forbidden("Missing permissions for requested pipeline.")
        return p

    async def _managed(self, user: UserRow, project: str, pipeline: str) -> PipelineRow:
        p = await self._visible(user, project, pipeline)
        if not user["is_admin"]:
            proj = await self.store.call(Store.project_by_slug, project)
            if proj is None or proj["created_by"] != user["id"]:
                raise Forbidden("changing QC rules, guide sets and exclusions needs the project's "
                                "creator or an admin")
        return p

    # -- verdicts -----------------------------------------------------------------------------

    async def record(self, run_id: int) -> dict[str, Any]:
        """Called when a stage stored a run's values (ID-free first, ID-based later)."""
        return await self.store.call(record_sync, run_id)

    async def recompute(self, pipeline_id: int) -> int:
        return await self.store.call(recompute_sync, pipeline_id)

    async def recompute_for(self, user: UserRow, project: str, pipeline: str) -> dict[str, Any]:
        p = await self._managed(user, project, pipeline)
        return {"recomputed": await self.recompute(p["id"])}
