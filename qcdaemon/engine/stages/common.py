"""What every stage shares: the context it runs in, its outcome, work folders, recording scan values."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any, Required, TypedDict
from zoneinfo import ZoneInfo

import structlog

from qcdaemon.config import Config
from qcdaemon.core.states import StageState
from qcdaemon.errors import QcdaemonError, ToolError
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.rows import RunRow
from qcdaemon.tools.logcap import cap_log
from qcdaemon.tools.runner import ToolResult


@dataclass(frozen=True)
class StageContext:
    """What a stage may use: the store gate, the configuration, and where tools leave their pid marks."""

    store: AsyncStore
    cfg: Config
    pid_dir: Path
    # called with the run id after a stage stored the run's QC values (the run's verdict)
    values_recorded: Callable[[int], Awaitable[Any]] | None = None


log = structlog.get_logger("qcdaemon.engine")


class Outcome(TypedDict, total=False):
    """What a stage's attempt came to; the engine records it on the stage's row."""

    state: Required[str]  # a StageState value
    error: str | None
    exit_code: int | None
    log_dir: str | None


Runner = Callable[[StageContext, RunRow, Path, asyncio.Event], Awaitable[Outcome]]


def stages_failed(error: str, *, exit_code: int | None = None, log_dir: str | None = None) -> Outcome:
    return Outcome(state=StageState.FAILED, error=error, exit_code=exit_code, log_dir=log_dir)


def as_datetime_local(value: Any) -> dt.datetime | None:
    """A datetime or ISO text as it was written (naive stays naive, an offset is kept)."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


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


def watch_timezone(cfg: Config, watch_path: str | None) -> tzinfo | None:
    """The timezone of the instrument PC behind a watched folder (None: the daemon host's)."""
    for w in cfg.watch:
        if watch_path is not None and w.path == watch_path and w.timezone:
            return ZoneInfo(w.timezone)
    return None


def wall_clock_to_utc(t: dt.datetime, tz: tzinfo | None) -> dt.datetime:
    """A RAW file's acquisition time (the instrument PC's wall clock, naive) as naive true UTC."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz) if tz is not None else t.astimezone()  # astimezone: host local time
    return t.astimezone(dt.UTC).replace(tzinfo=None)


async def values_recorded(ctx: StageContext, run_id: int) -> None:
    """Tell the QC verdicts about new values; a verdict problem never fails the stage."""
    if ctx.values_recorded is None:
        return
    try:
        await ctx.values_recorded(run_id)
    except (QcdaemonError, ValueError, KeyError) as exc:
        log.warning("verdict_failed", run_key=f"rf{run_id}", error=str(exc))


async def record_scan_values(ctx: StageContext, run: RunRow, source: str, values: dict[str, Any]) -> None:
    store = ctx.store
    await store.call(Store.put_qc_values, run["id"], source, values)
    fields: dict[str, Any] = {}
    acquired = as_datetime_local(values.get("DateAcquired"))
    if acquired is not None:
        watch = await store.call(Store.watch_path_of, run["id"])
        fields["acquired_at"] = wall_clock_to_utc(acquired, watch_timezone(ctx.cfg, watch))
    current = (await store.call(Store.run, run["id"]))["metrics_engine"]
    if source == "rawtools" or current is None:
        fields["metrics_engine"] = source
    await store.call(Store.set_run_fields, [run["id"]], fields)
    await values_recorded(ctx, run["id"])


async def cap_tool_logs(res: ToolResult) -> None:
    """Keep a tool's stdout/stderr logs bounded (head and tail, the cut noted): a chatty tool run
    after run must not fill the data disk.  The error excerpt was read from the whole logs before."""
    await asyncio.to_thread(lambda: (cap_log(res.stdout_path), cap_log(res.stderr_path)))
