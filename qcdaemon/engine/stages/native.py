"""The native stage: ID-free metrics from the RAW file in a low-priority child process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from qcdaemon.engine.stages.common import (
    Outcome,
    StageContext,
    fresh_dir,
    raw_path_of,
    record_scan_values,
    stages_failed,
)
from qcdaemon.store import Store
from qcdaemon.store.rows import RunRow
from qcdaemon.tools.runner import run_tool

_PACKAGE_ROOT = Path(__file__).resolve().parents[3]


async def native_stage(ctx: StageContext, run: RunRow, work: Path, cancel: asyncio.Event) -> Outcome:
    """Native metrics in a child process: a crash or hang in the RAW reader cannot take the daemon down."""
    raw = await raw_path_of(run)
    base = await fresh_dir(work / "native-stage")
    argv = [sys.executable, "-m", "qcdaemon.rawfile.cli", str(raw), "--chromatograms"]
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    res = await run_tool(argv, cwd=base, log_dir=base, name="native", timeout=ctx.cfg.engine.native_timeout_seconds,
                         nice=ctx.cfg.engine.nice, pid_dir=ctx.pid_dir, env=env, cancel=cancel)
    if not res.ok:
        return stages_failed(f"native: {res.error_excerpt}", exit_code=res.exit_code, log_dir=str(base))
    doc = json.loads(await asyncio.to_thread(res.stdout_path.read_text))
    await record_scan_values(ctx, run, "native", doc["values"])
    if doc["chromatograms"]:
        await ctx.store.call(Store.put_chromatograms, run["id"], doc["chromatograms"])
    return {"state": "done", "exit_code": 0, "log_dir": str(base)}
