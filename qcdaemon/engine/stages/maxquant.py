"""The MaxQuant stage: a per-run mqpar.xml, MaxQuant on a staged copy, combined/txt parsed."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from qcdaemon.engine.stages.common import (
    Outcome,
    StageContext,
    fresh_dir,
    prune,
    raw_path_of,
    stages_failed,
)
from qcdaemon.store import Store
from qcdaemon.store.rows import RunRow
from qcdaemon.tools import maxquant as mq
from qcdaemon.tools import rawtools as rt
from qcdaemon.tools.maxquant_parse import parse_maxquant, parse_protein_groups
from qcdaemon.tools.runner import run_tool


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
    tool = ctx.cfg.engine.maxquant
    logs = base / "logs"
    staged = await asyncio.to_thread(rt.stage_raw, raw, base / "maxquant")
    mqpar = base / "mqpar.xml"
    label = Path(run["name"]).stem
    await asyncio.to_thread(
        mq.write_mqpar, template, mqpar, raw=staged, fasta=fasta,
        label=label, threads=tool.threads, combined_dir=base,
    )
    argv = mq.maxquant_argv(tool.command, mqpar, tool.runtime)
    res = await run_tool(argv, cwd=base, log_dir=logs, name="maxquant", timeout=tool.timeout_seconds,
                         nice=ctx.cfg.engine.nice, pid_dir=ctx.pid_dir, cancel=cancel)
    if not res.ok:
        return stages_failed(f"maxquant: {res.error_excerpt}", exit_code=res.exit_code, log_dir=str(logs))
    txt = await asyncio.to_thread(mq.find_txt_dir, base)
    if txt is None:
        return stages_failed("MaxQuant exited 0 but wrote no combined/txt folder", exit_code=0, log_dir=str(logs))
    if txt != base / "combined" / "txt":  # MaxQuant 2.6+ writes next to the (staged) raw file
        await asyncio.to_thread(_move_txt, txt, base / "combined" / "txt")
        txt = base / "combined" / "txt"

    def parse() -> tuple[dict[str, Any], list[Any]]:
        groups = parse_protein_groups(txt / "proteinGroups.txt") if (txt / "proteinGroups.txt").exists() else []
        return parse_maxquant(txt), groups

    values, groups = await asyncio.to_thread(parse)
    await ctx.store.call(Store.put_maxquant, run["id"], values, groups)  # one transaction
    return {"state": "done", "exit_code": 0, "log_dir": str(logs)}


def _move_txt(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))
