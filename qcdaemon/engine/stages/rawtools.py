"""The RawTools stage: the real RawTools on a staged copy of the RAW file, its outputs parsed."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from qcdaemon.engine.stages.common import (
    Outcome,
    StageContext,
    cap_tool_logs,
    fresh_dir,
    raw_path_of,
    record_scan_values,
    stages_failed,
)
from qcdaemon.store import Store
from qcdaemon.store.rows import PipelineRow, RunRow
from qcdaemon.tools import rawtools as rt
from qcdaemon.tools.rawtools_parse import parse_rawtools
from qcdaemon.tools.runner import run_tool


async def rawtools_stage(ctx: StageContext, run: RunRow, work: Path, cancel: asyncio.Event) -> Outcome:
    tool = ctx.cfg.engine.rawtools
    if not tool.command:
        return {"state": "skipped", "error": rt.rawtools_missing_reason()}
    raw = await raw_path_of(run)
    pipeline = await ctx.store.call(Store.pipeline, run["pipeline_id"])
    base = await fresh_dir(work / "rawtools-stage")
    try:
        return await _rawtools_jobs(ctx, run, raw, base, pipeline, cancel)
    finally:  # the staged RAW copy never outlives the stage
        await asyncio.to_thread(shutil.rmtree, base / rt.STAGE_DIR, True)


async def _rawtools_jobs(ctx: StageContext, run: RunRow, raw: Path, base: Path, pipeline: PipelineRow,
                         cancel: asyncio.Event) -> Outcome:
    tool = ctx.cfg.engine.rawtools
    staged = await asyncio.to_thread(rt.stage_raw, raw, base / rt.STAGE_DIR)
    deadline = time.monotonic() + tool.timeout_seconds
    notes: list[str] = []
    exit_code = 0
    for name, argv in rt.rawtools_jobs(tool.command, staged, base, pipeline["rawtools_args"]):
        job = rt.job_dir(base, name)
        res = await run_tool(
            argv, cwd=job, log_dir=job, name=name, timeout=max(deadline - time.monotonic(), 1),
            nice=ctx.cfg.engine.nice, pid_dir=ctx.pid_dir, cancel=cancel,
        )
        await cap_tool_logs(res)
        if res.ok:
            continue
        # RawTools 2.0.7 throws after writing its metrics on some runs (MS1-only: exit 1 in the
        # chromatogram and QC-table writers). A crash after the outputs exist keeps them.
        exited = res.exit_code is not None and not res.timed_out and not res.cancelled
        missing = await asyncio.to_thread(rt.rawtools_outputs_ok, base, (name,)) if exited else "stopped"
        if missing is not None:
            return stages_failed(f"{name}: {res.error_excerpt}", exit_code=res.exit_code, log_dir=str(job))
        exit_code = exit_code or int(res.exit_code or 0)
        detail = await asyncio.to_thread(rt.outputs_summary, base, name)
        notes.append(f"{name} exited {res.exit_code} after writing {detail}; the outputs are kept"
                     f" ({_first_line(res.error_excerpt)})")
    reason = await asyncio.to_thread(rt.rawtools_outputs_ok, base)
    if reason:
        return stages_failed(f"RawTools wrote no usable output: {reason}", exit_code=exit_code, log_dir=str(base))
    values = await asyncio.to_thread(
        parse_rawtools, rt.job_dir(base, "rawtools_metrics"), rt.job_dir(base, "rawtools_qc"), raw_name=staged.name
    )
    values["RawFilePath"] = str(raw.parent)  # RawTools saw the staged copy; report the real folder
    await record_scan_values(ctx, run, "rawtools", values)
    return {"state": "done", "exit_code": exit_code, "log_dir": str(base), "error": "; ".join(notes) or None}


def _first_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0][:200] if lines else "no error text"
