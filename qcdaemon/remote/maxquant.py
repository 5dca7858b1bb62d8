"""The MaxQuant stage's remote half: the same MaxQuantCmd command, run on a Dask worker.

Two ways for the worker to reach the files:

* ``path_map``: the work folder (and the FASTA file) lie on a share both sides mount.  The mqpar
  and the command name the workers' paths; the worker writes ``combined/txt`` and its logs
  straight into the work folder, which the stage then reads as after a local run.
* ``transfer``: no share.  The RAW file, the FASTA file and the mqpar go to the worker with their
  SHA-256 (checked there); the worker sends back ``combined/txt`` and the logs' tails, at most
  ``output_max_mb``, each checked here against the SHA-256 the worker computed.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from qcdaemon.config import Config
from qcdaemon.errors import ToolError
from qcdaemon.remote.client import RemoteJob, RemoteOutcome, run_remote
from qcdaemon.remote.paths import map_path
from qcdaemon.remotecfg import RemoteConfig
from qcdaemon.store import AsyncStore
from qcdaemon.tools import maxquant as mq
from qcdaemon.tools import rawtools as rt
from qcdaemon.tools.excerpt import read_excerpt


@dataclass(frozen=True)
class MaxQuantInputs:
    run_id: int
    raw: Path  # the instrument's file (read only)
    base: Path  # the stage's work folder
    fasta: Path
    template: Path  # the pipeline's mqpar.xml
    label: str


@dataclass(frozen=True)
class RemoteRun:
    """Like ``tools.runner.ToolResult`` as the stage reads it, plus where the job ran."""

    ok: bool
    exit_code: int | None
    error_excerpt: str | None
    worker: str | None


async def maxquant_remote(store: AsyncStore, cfg: Config, rcfg: RemoteConfig, inp: MaxQuantInputs,
                          cancel: asyncio.Event) -> RemoteRun:
    """Run MaxQuant for one run on the cluster; its tables end in ``base/combined/txt``."""
    build = _transfer_job if rcfg.transfer else _mapped_job
    job, files = await asyncio.to_thread(build, cfg, rcfg, inp)
    tool = cfg.engine.maxquant
    res = await run_remote(store, rcfg, RemoteJob(inp.run_id, "maxquant", job, files, tool.timeout_seconds), cancel)
    if res.files is not None:
        await asyncio.to_thread(_land, res.files, inp.base)
    return await _described(res, inp.base / "logs", tool.timeout_seconds)


def _common(cfg: Config) -> dict[str, object]:
    tool = cfg.engine.maxquant
    return {"name": "maxquant", "timeout": tool.timeout_seconds, "nice": cfg.engine.nice}


def _mapped_job(cfg: Config, rcfg: RemoteConfig, inp: MaxQuantInputs) -> tuple[dict[str, object], None]:
    tool, pm = cfg.engine.maxquant, rcfg.path_map

    def there(p: Path) -> str:
        return map_path(p, pm, key="engine.maxquant.path_map")

    staged = rt.stage_raw(inp.raw, inp.base / "maxquant")
    mqpar = inp.base / "mqpar.xml"
    mq.write_mqpar(inp.template, mqpar, raw=Path(there(staged)), fasta=Path(there(inp.fasta)), label=inp.label,
                   threads=tool.threads, combined_dir=Path(there(inp.base)))
    argv = mq.maxquant_argv(tool.command, Path(there(mqpar)), tool.runtime)
    return {**_common(cfg), "argv": argv, "cwd": there(inp.base), "log_dir": there(inp.base / "logs")}, None


def _transfer_job(cfg: Config, rcfg: RemoteConfig,
                  inp: MaxQuantInputs) -> tuple[dict[str, object], dict[str, tuple[bytes, str]]]:
    tool = cfg.engine.maxquant
    size = inp.raw.stat().st_size
    if size > rcfg.transfer_max_mb * 1024 * 1024:
        raise ToolError(f"the RAW file is {size / 2**20:.0f} MB, more than engine.maxquant.transfer_max_mb"
                        f" ({rcfg.transfer_max_mb}) allows to send to a worker")
    root = PurePosixPath(f"/qcdaemon-transfer-{uuid.uuid4().hex}")  # the worker puts its own folder here
    raw_rel, fasta_rel = f"maxquant/{inp.raw.name}", f"fasta/{inp.fasta.name}"
    mqpar = inp.base / "mqpar.xml"
    mq.write_mqpar(inp.template, mqpar, raw=Path(root / raw_rel), fasta=Path(root / fasta_rel), label=inp.label,
                   threads=tool.threads, combined_dir=Path(root))
    files = {rel: _with_digest(p.read_bytes()) for rel, p in
             ((raw_rel, inp.raw), (fasta_rel, inp.fasta), ("mqpar.xml", mqpar))}
    argv = mq.maxquant_argv(tool.command, Path(root / "mqpar.xml"), tool.runtime)
    job = {**_common(cfg), "argv": argv, "cwd": str(root), "log_dir": str(root / "logs"), "transfer": True,
           "root": str(root), "rewrite": ["mqpar.xml"], "output_max_bytes": rcfg.output_max_mb * 1024 * 1024}
    return job, files


def _with_digest(data: bytes) -> tuple[bytes, str]:
    return data, hashlib.sha256(data).hexdigest()


def _land(files: dict[str, tuple[bytes, str]], base: Path) -> None:
    """Write what the worker sent back into the work folder, each file checked by its SHA-256."""
    for rel, (data, digest) in files.items():
        if hashlib.sha256(data).hexdigest() != digest:
            raise ToolError(f"{rel} came back from the worker damaged (SHA-256 differs)")
        target = (base / rel).resolve()
        if base.resolve() not in target.parents or not rel.startswith(("combined/txt/", "logs/")):
            raise ToolError(f"the worker sent back {rel!r}, which is not a MaxQuant table or log")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


async def _described(res: RemoteOutcome, logs: Path, timeout: float) -> RemoteRun:
    if res.outcome == "exited" and res.exit_code == 0:
        return RemoteRun(True, 0, None, res.worker)
    where = f" (on {res.worker})" if res.worker else ""
    if res.outcome == "exited":
        excerpt = await asyncio.to_thread(read_excerpt, logs / "maxquant.out", logs / "maxquant.err")
        reason = f"exit code {res.exit_code}: {excerpt}" if excerpt else f"exit code {res.exit_code}"
    elif res.outcome == "timeout":
        reason = f"timed out after {timeout:g} s"
    elif res.outcome == "not_started":
        excerpt = await asyncio.to_thread(read_excerpt, logs / "maxquant.out", logs / "maxquant.err")
        reason = res.error or excerpt or "the command could not be started on the worker"
    else:
        reason = res.error or res.outcome
    return RemoteRun(False, res.exit_code, reason + where, res.worker)
