"""The MaxQuant stage: a per-run mqpar.xml, MaxQuant on a staged copy, combined/txt parsed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pyarrow as pa

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
from qcdaemon.store.proteins import PG_TEXT_COLUMNS
from qcdaemon.store.rows import RunRow
from qcdaemon.tools import maxquant as mq
from qcdaemon.tools import rawtools as rt
from qcdaemon.tools.maxquant_groups import protein_group_tables
from qcdaemon.tools.maxquant_parse import parse_maxquant_groups
from qcdaemon.tools.runner import ToolResult, run_tool
from qcdaemon.tools.tsv import find_table

KEEP_ROWS = 20_000  # a run's groups up to this many are written with its values in one transaction


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

    await _store_result(ctx, run["id"], txt)
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


async def _store_result(ctx: StageContext, run_id: int, txt: Path) -> None:
    """The QC values and the protein groups, read in one pass off the event loop and written in one
    transaction; a table of more than KEEP_ROWS groups is read again and written in blocks after
    the values instead (memory stays bounded for any table: issue 12)."""
    values, groups = await asyncio.to_thread(parse_maxquant_groups, txt, PG_TEXT_COLUMNS, KEEP_ROWS)
    if groups is not None:
        table = pa.concat_tables(groups) if groups else []
        await ctx.store.call(Store.put_maxquant, run_id, values, table)
        return
    await ctx.store.call(Store.put_maxquant, run_id, values, [])
    path = find_table(txt, "proteinGroups.txt")
    assert path is not None  # it was just read
    blocks = protein_group_tables(path, PG_TEXT_COLUMNS)
    done = 0
    while (block := await asyncio.to_thread(next, blocks, None)) is not None:
        await ctx.store.call(Store.put_protein_groups, run_id, block, first_idx=done)
        done += block.num_rows


def _move_txt(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))
