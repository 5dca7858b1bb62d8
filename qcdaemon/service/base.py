"""What every part of :class:`~qcdaemon.service.qcservice.QcService` shares: the store, the configuration,
the sealing key, the running engine (if any) and the visibility check of a pipeline."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from qcdaemon.config import Config
from qcdaemon.errors import Forbidden, NotFound
from qcdaemon.service.answercache import AnswerCache
from qcdaemon.service.quality import QualityService
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.rows import PipelineRow, UserRow

T = TypeVar("T")


def found(row: T | None, what: str) -> T:
    """A row that was just written must be there; if not, the store lost it: say which."""
    if row is None:
        raise NotFound(f"{what} does not exist")
    return row


class EngineControl(Protocol):
    """What the use cases may ask of a running engine: look at the queue again, stop a run's stages."""

    def wake(self) -> None: ...

    def cancel(self, run_id: int) -> None: ...

    async def release_stuck(self, run_id: int, *, cancel: bool = False) -> list[str]: ...


class ServiceBase:
    def __init__(self, store: AsyncStore, cfg: Config, key: bytes) -> None:
        self.store = store
        self.cfg = cfg
        self.key = key
        self.engine: EngineControl | None = None  # set by the daemon when the engine runs (wake, cancel)
        self.quality = QualityService(store)  # QC verdicts, charts, guide sets, rules (qcdaemon.service.quality)
        # the read routes' answers until the store's next write, compressed on a thread of their own
        # (files under the data directory: one process at a time has it, as it has the store)
        self.answers = AnswerCache(cfg.data_dir / "cache" / "answers")
        self._answer_pool = ThreadPoolExecutor(1, thread_name_prefix="qcd-answers")

    async def visible_pipeline(self, user: UserRow, project: str, pipeline: str) -> PipelineRow:
        p = await self.store.light(Store.visible_pipeline, user, project, pipeline)
        if p is None:
            raise Forbidden("Missing permissions for requested pipeline.")
        return p
