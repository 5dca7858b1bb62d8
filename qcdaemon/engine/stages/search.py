"""The search stage: Sage identification QC in a low-priority child process, like the native stage.

Runs for pipelines with a FASTA when ``[engine.search] enabled`` and the optional ``sagepy`` package
is installed; otherwise the stage is skipped with the reason.  The child (``python -m
qcdaemon.search.cli``, or with ``keep_warm_seconds`` > 0 the warm worker of ``search_warm``, which
keeps the last database built) reads the RAW file, builds or reuses the search database (manifests
under ``<data dir>/search-db``), searches, and writes the values; its PSM table comes back as Parquet.
The run's ``search.err`` says whether the database was reused.
Values are stored as source ``search`` (so they reach ``/api/qc-data`` next to MaxQuant's), the
PSMs in the ``psms`` table.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import structlog

from qcdaemon.engine.stages.common import (
    Outcome,
    StageContext,
    fresh_dir,
    raw_path_of,
    stages_failed,
    values_recorded,
)
from qcdaemon.engine.stages.search_warm import WorkerSpec, warm_search
from qcdaemon.errors import ConfigError
from qcdaemon.search.params import SearchParams
from qcdaemon.search.sagepy_api import unavailable_reason
from qcdaemon.store import Store
from qcdaemon.store.rows import RunRow
from qcdaemon.tools.runner import ToolResult, run_tool

log = structlog.get_logger("qcdaemon.engine")

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]
EXIT_NO_MS2 = 4  # qcdaemon.search.cli: nothing to search


async def search_stage(ctx: StageContext, run: RunRow, work: Path, cancel: asyncio.Event) -> Outcome:
    cfg = ctx.cfg.engine.search
    if not cfg.enabled:
        return {"state": "skipped", "error": "the search is switched off ([engine.search] enabled = false)"}
    pipeline = await ctx.store.call(Store.pipeline, run["pipeline_id"])
    if not pipeline["fasta_path"]:
        return {"state": "skipped", "error": "the pipeline has no fasta file"}
    missing = await asyncio.to_thread(unavailable_reason)
    if missing:
        return {"state": "skipped", "error": missing}
    try:
        own = pipeline.get("search_params")
        overrides = json.loads(own) if own else None
        params = SearchParams.from_config(cfg, overrides)
    except (ConfigError, ValueError) as exc:
        return stages_failed(f"search: the pipeline's search parameters: {exc}")
    raw = await raw_path_of(run)
    base = await fresh_dir(work / "search-stage")
    psms = base / "psms.parquet"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")])),
           "RAYON_NUM_THREADS": str(params.threads)}
    if cfg.keep_warm_seconds > 0:
        res = await _warm(ctx, raw, pipeline["fasta_path"], params, base, env, cancel)
    else:
        argv = [sys.executable, "-m", "qcdaemon.search.cli", str(raw), "--fasta", str(pipeline["fasta_path"]),
                "--search-params", json.dumps(params.as_dict()), "--cache-dir", str(ctx.cfg.files.search_db),
                "--psms", str(psms), "--memory-mb", str(cfg.memory_mb)]
        res = await run_tool(argv, cwd=base, log_dir=base, name="search", timeout=cfg.timeout_seconds,
                             nice=ctx.cfg.engine.nice, pid_dir=ctx.pid_dir, env=env, cancel=cancel)
    if res.exit_code == EXIT_NO_MS2 and not res.cancelled:
        return {"state": "skipped", "error": f"search: {_reason(res)}", "exit_code": res.exit_code, "log_dir": str(base)}
    if not res.ok:
        return stages_failed(f"search: {_failure(res, cfg.memory_mb)}", exit_code=res.exit_code, log_dir=str(base))
    doc = json.loads(await asyncio.to_thread(res.stdout_path.read_text))
    db = doc.get("database") or {}
    log.info("search_database", reused=bool(db.get("reused")), key=str(db.get("key", ""))[:12],
             build_seconds=db.get("build_seconds"))
    await ctx.store.call(Store.put_qc_values, run["id"], "search", doc["values"])
    table = await asyncio.to_thread(pq.read_table, psms)
    await ctx.store.call(Store.put_psms, run["id"], table)
    await values_recorded(ctx, run["id"])  # the ID-based values update the run's verdict
    return {"state": "done", "exit_code": 0, "log_dir": str(base)}


async def _warm(ctx: StageContext, raw: Path, fasta: str, params: SearchParams, base: Path,
                env: dict[str, str], cancel: asyncio.Event) -> ToolResult:
    """The job in the warm search worker (``search_warm``); the run's log files in ``base`` as ever."""
    cfg = ctx.cfg.engine.search
    spec = WorkerSpec(keep_warm=float(cfg.keep_warm_seconds), memory_mb=cfg.memory_mb, nice=ctx.cfg.engine.nice,
                      env=tuple(sorted(env.items())), log_file=ctx.cfg.files.search_db / "worker.log")
    job: dict[str, Any] = {"raw": str(raw), "fasta": str(fasta), "params": params.as_dict(), "cache_dir": str(ctx.cfg.files.search_db),
           "psms": str(base / "psms.parquet"), "out": str(base / "search.out"), "err": str(base / "search.err")}
    await asyncio.to_thread(Path(job["err"]).write_bytes, b"")
    done = await warm_search(ctx.pid_dir).run(job, spec, timeout=cfg.timeout_seconds, cancel=cancel)
    if done.worker_pid is not None:
        note = f"search worker pid {done.worker_pid}"
        if done.answer is not None:
            note += f": {done.answer.get('builds')} database build(s) in this worker, {done.answer.get('rss_mb')} MB resident"
        elif done.result.error_excerpt:
            note += f": {done.result.error_excerpt}"
        await asyncio.to_thread(_append, Path(job["err"]), note)
    return done.result


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _reason(res: Any) -> str:
    """The child's ``error: ...`` line (its own message), else the runner's excerpt."""
    try:
        lines = res.stderr_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    return res.error_excerpt or f"exit status {res.exit_code}"


def _failure(res: Any, memory_mb: int) -> str:
    text = _reason(res)
    if memory_mb and "memory allocation" in text:
        return (f"the search needed more than its memory cap ([engine.search] memory_mb = {memory_mb}); raise it or "
                f"use fewer missed cleavages or variable modifications ({text.splitlines()[0]})")
    return text
