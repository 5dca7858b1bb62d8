"""The three stages of a run: native metrics, RawTools, MaxQuant.

Each returns an outcome dict (``state``, optional ``error``, ``exit_code``, ``log_dir``) and writes
its values to the store; the engine records the outcome.  Tools run as low-priority subprocesses
in the run's own work folder; the instrument's folder is only ever read.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .engine import maxquant as mq
from .engine import rawtools as rt
from .engine.maxquant_parse import parse_maxquant, parse_protein_groups
from .engine.rawtools_parse import parse_rawtools
from .engine.runner import run_tool
from .processing import as_datetime, raw_path_of, stages_failed

if TYPE_CHECKING:  # pragma: no cover
    from .processing import Engine

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
Runner = Callable[["Engine", dict[str, Any], Path, asyncio.Event], Awaitable[dict[str, Any]]]


def _fresh_sync(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _fresh(path: Path) -> Path:
    """An empty folder for a stage's attempt (an old attempt's output can be large: off the loop)."""
    return await asyncio.to_thread(_fresh_sync, path)


def _prune(base: Path, keep: tuple[str, ...]) -> None:
    """Remove a finished stage's bulk: staged RAW copies and tool scratch; keep logs and results."""
    for child in base.iterdir() if base.is_dir() else ():
        if child.name not in keep:
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


async def _record_scan_values(engine: "Engine", run: dict[str, Any], source: str, values: dict[str, Any]) -> None:
    store = engine.store
    await store.put_qc_values(run["id"], source, values)
    fields: dict[str, Any] = {}
    acquired = as_datetime(values.get("DateAcquired"))
    if acquired is not None:
        fields["acquired_at"] = acquired
    current = (await store.run(run["id"]))["metrics_engine"]
    if source == "rawtools" or current is None:
        fields["metrics_engine"] = source
    await store.set_run_fields([run["id"]], **fields)


async def native_stage(engine: "Engine", run: dict[str, Any], work: Path, cancel: asyncio.Event) -> dict[str, Any]:
    """Native metrics in a child process: a crash or hang in the RAW reader cannot take the daemon down."""
    raw = await raw_path_of(run)
    base = await _fresh(work / "native-stage")
    argv = [sys.executable, "-m", "qcdaemon.engine.native_cli", str(raw), "--chromatograms"]
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    res = await run_tool(argv, cwd=base, log_dir=base, name="native", timeout=engine.cfg.engine.native_timeout_seconds,
                         nice=engine.cfg.engine.nice, pid_dir=engine.pid_dir, env=env, cancel=cancel)
    if not res.ok:
        return stages_failed(f"native: {res.error_excerpt}", exit_code=res.exit_code, log_dir=str(base))
    doc = json.loads(await asyncio.to_thread(res.stdout_path.read_text))
    await _record_scan_values(engine, run, "native", doc["values"])
    if doc["chromatograms"]:
        await engine.store.put_chromatograms(run["id"], doc["chromatograms"])
    return {"state": "done", "exit_code": 0, "log_dir": str(base)}


async def rawtools_stage(engine: "Engine", run: dict[str, Any], work: Path, cancel: asyncio.Event) -> dict[str, Any]:
    tool = engine.cfg.engine.rawtools
    if not tool.command:
        return {"state": "skipped", "error": "RawTools is not configured ([engine.rawtools] command)"}
    raw = await raw_path_of(run)
    pipeline = await engine.store.pipeline(run["pipeline_id"])
    base = await _fresh(work / "rawtools-stage")
    try:
        return await _rawtools_jobs(engine, run, raw, base, pipeline, cancel)
    finally:  # the staged RAW copy never outlives the stage
        await asyncio.to_thread(shutil.rmtree, base / rt.STAGE_DIR, True)


async def _rawtools_jobs(engine: "Engine", run: dict[str, Any], raw: Path, base: Path, pipeline: dict[str, Any],
                         cancel: asyncio.Event) -> dict[str, Any]:
    tool = engine.cfg.engine.rawtools
    staged = await asyncio.to_thread(rt.stage_raw, raw, base / rt.STAGE_DIR)
    deadline = time.monotonic() + tool.timeout_seconds
    for name, argv in rt.rawtools_jobs(tool.command, staged, base, pipeline["rawtools_args"]):
        job = rt.job_dir(base, name)
        res = await run_tool(
            argv, cwd=job, log_dir=job, name=name, timeout=max(deadline - time.monotonic(), 1),
            nice=engine.cfg.engine.nice, pid_dir=engine.pid_dir, cancel=cancel,
        )
        if not res.ok:
            return stages_failed(f"{name}: {res.error_excerpt}", exit_code=res.exit_code, log_dir=str(job))
    reason = rt.rawtools_outputs_ok(base)
    if reason:
        return stages_failed(f"RawTools wrote no usable output: {reason}", exit_code=0, log_dir=str(base))
    values = await asyncio.to_thread(
        parse_rawtools, rt.job_dir(base, "rawtools_metrics"), rt.job_dir(base, "rawtools_qc"), raw_name=staged.name
    )
    values["RawFilePath"] = str(raw.parent)  # RawTools saw the staged copy; report the real folder
    await _record_scan_values(engine, run, "rawtools", values)
    return {"state": "done", "exit_code": 0, "log_dir": str(base)}


async def maxquant_stage(engine: "Engine", run: dict[str, Any], work: Path, cancel: asyncio.Event) -> dict[str, Any]:
    tool = engine.cfg.engine.maxquant
    if not tool.command:
        return {"state": "skipped", "error": "MaxQuant is not configured ([engine.maxquant] command)"}
    pipeline = await engine.store.pipeline(run["pipeline_id"])
    if not pipeline["fasta_path"] or not pipeline["mqpar_path"]:
        return {"state": "skipped", "error": "the pipeline has no fasta or mqpar file"}
    raw = await raw_path_of(run)
    base = await _fresh(work / "maxquant-stage")
    try:
        return await _maxquant_run(engine, run, raw, base, pipeline, cancel)
    finally:  # keep the logs, the mqpar and combined/txt; drop the staged RAW and MaxQuant's scratch (GBs)
        await asyncio.to_thread(_prune_maxquant, base)


def _prune_maxquant(base: Path) -> None:
    _prune(base, ("logs", "mqpar.xml", "combined"))
    combined = base / "combined"
    if combined.is_dir():
        _prune(combined, ("txt",))


async def _maxquant_run(engine: "Engine", run: dict[str, Any], raw: Path, base: Path, pipeline: dict[str, Any],
                        cancel: asyncio.Event) -> dict[str, Any]:
    tool = engine.cfg.engine.maxquant
    logs = base / "logs"
    staged = await asyncio.to_thread(rt.stage_raw, raw, base / "maxquant")
    mqpar = base / "mqpar.xml"
    label = Path(run["name"]).stem
    await asyncio.to_thread(
        mq.write_mqpar, Path(pipeline["mqpar_path"]), mqpar, raw=staged, fasta=Path(pipeline["fasta_path"]),
        label=label, threads=tool.threads, combined_dir=base,
    )
    argv = mq.maxquant_argv(tool.command, mqpar, tool.runtime)
    res = await run_tool(argv, cwd=base, log_dir=logs, name="maxquant", timeout=tool.timeout_seconds,
                         nice=engine.cfg.engine.nice, pid_dir=engine.pid_dir, cancel=cancel)
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
    await engine.store.put_qc_values(run["id"], "maxquant", values)
    await engine.store.put_protein_groups(run["id"], groups)
    return {"state": "done", "exit_code": 0, "log_dir": str(logs)}


def _move_txt(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))


RUNNERS: dict[str, Runner] = {"native": native_stage, "rawtools": rawtools_stage, "maxquant": maxquant_stage}
