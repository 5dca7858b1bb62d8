"""The MaxQuant stage: a per-run mqpar.xml, MaxQuant on a staged copy, combined/txt parsed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from qcdaemon.engine.stages.common import (
    Outcome,
    StageContext,
    cap_tool_logs,
    fresh_dir,
    prune,
    raw_path_of,
    stages_failed,
    values_recorded,
)
from qcdaemon.remote.maxquant import MaxQuantInputs, RemoteRun, maxquant_remote
from qcdaemon.store import Store
from qcdaemon.store.rows import RunRow
from qcdaemon.tools import maxquant as mq
from qcdaemon.tools import rawtools as rt
from qcdaemon.tools.maxquant_parse import parse_maxquant
from qcdaemon.tools.maxquant_proteins import protein_group_batches
from qcdaemon.tools.runner import ToolResult, run_tool


async def maxquant_stage(ctx: StageContext, run: RunRow, work: Path, cancel: asyncio.Event) -> Outcome:
    tool = ctx.cfg.engine.maxquant
    if not tool.command:
        return {"state": "skipped", "error": "MaxQuant is not configured ([engine.maxquant] command)"}
    pipeline = await ctx.store.call(Store.pipeline, run["pipeline_id"])
    fasta, mqpar = pipeline["fasta_path"], pipeline["mqpar_path"]
    if not fasta or not mqpar:
        return {"state": "skipped", "error": "the pipeline has no fasta or mqpar file"}
    raw = await raw_path_of(run)
    base = await fresh_dir(work / "maxquant-stage")
    try:
        return await _maxquant_run(ctx, run, raw, base, Path(fasta), Path(mqpar), cancel)
    finally:  # keep the logs, the mqpar and combined/txt; drop the staged RAW and MaxQuant's scratch (GBs)
        await asyncio.to_thread(_prune_maxquant, base)


def _prune_maxquant(base: Path) -> None:
    prune(base, ("logs", "mqpar.xml", "combined"))
    combined = base / "combined"
    if combined.is_dir():
        prune(combined, ("txt",))


async def _maxquant_run(ctx: StageContext, run: RunRow, raw: Path, base: Path, fasta: Path, template: Path,
                        cancel: asyncio.Event) -> Outcome:
    logs = base / "logs"
    label = Path(run["name"]).stem
    rcfg = ctx.cfg.executors.of("maxquant")
    if rcfg.is_remote:  # on a Dask worker (issue 17)
        inputs = MaxQuantInputs(run["id"], raw, base, fasta, template, label)
        res: RemoteRun | ToolResult = await maxquant_remote(ctx.store, ctx.cfg, rcfg, inputs, cancel)
    else:  # an earlier attempt's Dask job and worker (before a config change) no longer say where it ran
        await ctx.store.call(Store.set_remote_job, run["id"], "maxquant", None)
        res = await _maxquant_local(ctx, raw, base, fasta, template, label, cancel)
    if not res.ok:
        return stages_failed(f"maxquant: {res.error_excerpt}", exit_code=res.exit_code, log_dir=str(logs))
    txt = await asyncio.to_thread(mq.find_txt_dir, base)
    if txt is None:
        return stages_failed("MaxQuant exited 0 but wrote no combined/txt folder", exit_code=0, log_dir=str(logs))
    if txt != base / "combined" / "txt":  # MaxQuant 2.6+ writes next to the (staged) raw file
        await asyncio.to_thread(_move_txt, txt, base / "combined" / "txt")
        txt = base / "combined" / "txt"

    values = await asyncio.to_thread(parse_maxquant, txt)
    await ctx.store.call(Store.put_qc_values, run["id"], "maxquant", values)
    await _store_protein_groups(ctx, run["id"], txt / "proteinGroups.txt")
    await values_recorded(ctx, run["id"])
    return {"state": "done", "exit_code": 0, "log_dir": str(logs)}


async def _maxquant_local(ctx: StageContext, raw: Path, base: Path, fasta: Path, template: Path, label: str,
                          cancel: asyncio.Event) -> ToolResult:
    tool = ctx.cfg.engine.maxquant
    staged = await asyncio.to_thread(rt.stage_raw, raw, base / "maxquant")
    mqpar = base / "mqpar.xml"
    await asyncio.to_thread(
        mq.write_mqpar, template, mqpar, raw=staged, fasta=fasta,
        label=label, threads=tool.threads, combined_dir=base,
    )
    argv = mq.maxquant_argv(tool.command, mqpar, tool.runtime)
    res = await run_tool(argv, cwd=base, log_dir=base / "logs", name="maxquant", timeout=tool.timeout_seconds,
                         nice=ctx.cfg.engine.nice, pid_dir=ctx.pid_dir, cancel=cancel)
    await cap_tool_logs(res)
    return res


async def _store_protein_groups(ctx: StageContext, run_id: int, path: Path) -> None:
    """The groups in batches read off the event loop: memory stays bounded for any table (issue 12)."""
    if not await asyncio.to_thread(path.exists):
        await ctx.store.call(Store.put_protein_groups, run_id, [])
        return
    batches = protein_group_batches(path)
    done = 0
    while batch := await asyncio.to_thread(next, batches, None):
        await ctx.store.call(Store.put_protein_groups, run_id, batch, first_idx=done)
        done += len(batch)


def _move_txt(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))
