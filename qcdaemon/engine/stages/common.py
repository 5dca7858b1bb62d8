"""What every stage shares: the context it runs in, its outcome, work folders, recording scan values."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Required, TypedDict

from qcdaemon.config import Config
from qcdaemon.core.states import StageState
from qcdaemon.errors import ToolError
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.rows import RunRow


@dataclass(frozen=True)
class StageContext:
    """What a stage may use: the store gate, the configuration, and where tools leave their pid marks."""

    store: AsyncStore
    cfg: Config
    pid_dir: Path


class Outcome(TypedDict, total=False):
    """What a stage's attempt came to; the engine records it on the stage's row."""

    state: Required[str]  # a StageState value
    error: str | None
    exit_code: int | None
    log_dir: str | None


Runner = Callable[[StageContext, RunRow, Path, asyncio.Event], Awaitable[Outcome]]


def stages_failed(error: str, *, exit_code: int | None = None, log_dir: str | None = None) -> Outcome:
    return Outcome(state=StageState.FAILED, error=error, exit_code=exit_code, log_dir=log_dir)


def as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value).replace(tzinfo=None)
        except ValueError:
            return None
    return None


async def raw_path_of(run: RunRow) -> Path:
    """The run's RAW file (checked off the loop: on a share a stat can hang)."""
    path = Path(run["stored_path"] or "")
    if not run["stored_path"] or not await asyncio.to_thread(path.is_file):
        raise ToolError(f"the RAW file {run['stored_path']} is no longer there")
    return path


def _fresh_dir_sync(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def fresh_dir(path: Path) -> Path:
    """An empty folder for a stage's attempt (an old attempt's output can be large: off the loop)."""
    return await asyncio.to_thread(_fresh_dir_sync, path)


def prune(base: Path, keep: tuple[str, ...]) -> None:
    """Remove a finished stage's bulk: staged RAW copies and tool scratch; keep logs and results."""
    for child in base.iterdir() if base.is_dir() else ():
        if child.name not in keep:
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


async def record_scan_values(ctx: StageContext, run: RunRow, source: str, values: dict[str, Any]) -> None:
    store = ctx.store
    await store.call(Store.put_qc_values, run["id"], source, values)
    fields: dict[str, Any] = {}
    acquired = as_datetime(values.get("DateAcquired"))
    if acquired is not None:
        fields["acquired_at"] = acquired
    current = (await store.call(Store.run, run["id"]))["metrics_engine"]
    if source == "rawtools" or current is None:
        fields["metrics_engine"] = source
    await store.call(Store.set_run_fields, [run["id"]], fields)


