"""The half of a remote stage that runs on a Dask worker: one tool command, like ``tools.runner``.

Shipped to the workers by value (``cloudpickle.register_pickle_by_value``), so a worker needs only
``distributed`` and the tool, not qcdaemon: this module imports the standard library and
``distributed`` alone.  The job is a plain dict (see ``qcdaemon.remote.jobs``):

* ``argv``, ``cwd``, ``log_dir``: the command as the worker sees it (paths already mapped), or,
  with ``transfer``, containing ``root`` (a placeholder the worker replaces with a fresh folder of
  its own, into which the sent files are written first, each checked against its SHA-256);
* ``timeout``, ``nice``, ``grace``: as for a local tool;
* ``cancel``: the name of a ``distributed.Event`` the daemon sets to stop the tool;
* ``marker``: a name in the scheduler's metadata (``set_metadata``) set to the worker's address
  when the job starts.  Found already set, the job ran before on a worker that was lost: the job then fails at
  once instead of running a second time under Dask's own re-scheduling, so that the daemon's
  attempt counter, not the scheduler's ``allowed-failures``, decides about a retry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.5
MARKERS = "qcdaemon-started"  # the scheduler's metadata: job marker -> the worker it started on
LOG_TAIL_BYTES = 1 << 20  # what of each tool log comes back with a transfer


class WorkerLost(RuntimeError):
    """The job had started before on a worker that was lost."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_job(job: dict[str, Any], files: dict[str, tuple[bytes, str]] | None = None) -> dict[str, Any]:
    """Run the job's command to its end, timeout or cancel; what happened, and with ``transfer``
    the output files (relative path -> (bytes, SHA-256))."""
    from distributed import Event, get_client, get_worker

    worker = get_worker().address
    marker = [MARKERS, job["marker"]]
    earlier = get_client().get_metadata(marker, None)
    if earlier:
        raise WorkerLost(f"the job started before on worker {earlier}, which was lost")
    get_client().set_metadata(marker, worker)
    root = Path(tempfile.mkdtemp(prefix="qcdaemon-job-")) if job.get("transfer") else None
    try:
        if root is not None:
            job = _unpack(job, files or {}, root)
            Path(job["cwd"]).mkdir(parents=True, exist_ok=True)
        if not Path(job["cwd"]).is_dir():  # made by the daemon: missing here, the share is not (or no longer) mounted
            return {"worker": worker, "outcome": "not_started", "exit_code": None,
                    "error": f"the work folder {job['cwd']} is not there on the worker (is the share mounted?)"}
        outcome, code = _run(job, Event(job["cancel"]), get_worker())
        out: dict[str, Any] = {"worker": worker, "outcome": outcome, "exit_code": code}
        if root is not None:
            out["files"] = _pack(root, job, int(job["output_max_bytes"]))
        return out
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _unpack(job: dict[str, Any], files: dict[str, tuple[bytes, str]], root: Path) -> dict[str, Any]:
    """Write the sent files under ``root`` (checked), and put ``root`` into the job's paths."""
    placeholder = job["root"]
    for rel, (data, digest) in files.items():
        if sha256_of(data) != digest:
            raise ValueError(f"{rel} arrived damaged (SHA-256 differs)")
        target = (root / rel).resolve()
        if root.resolve() not in target.parents:
            raise ValueError(f"{rel} points outside the job's folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in job.get("rewrite", ()):
            data = data.replace(placeholder.encode(), str(root).encode())
        target.write_bytes(data)

    def local(s: str) -> str:
        return s.replace(placeholder, str(root))

    return {**job, "argv": [local(a) for a in job["argv"]], "cwd": local(job["cwd"]), "log_dir": local(job["log_dir"])}


def _pack(root: Path, job: dict[str, Any], limit: int) -> dict[str, tuple[bytes, str]]:
    """The tables (the shallowest ``combined/txt``) and the logs' tails, at most ``limit`` bytes."""
    out: dict[str, tuple[bytes, str]] = {}
    txt = sorted((p for p in root.rglob("txt") if p.is_dir() and p.parent.name == "combined"),
                 key=lambda p: (len(p.parts), str(p)))
    wanted = [p for p in txt[0].rglob("*") if p.is_file()] if txt else []
    total = sum(p.stat().st_size for p in wanted)
    if total > limit:
        raise ValueError(f"the outputs are {total} bytes, more than the {limit} bytes allowed back")
    for p in wanted:
        data = p.read_bytes()
        out["combined/txt/" + p.relative_to(txt[0]).as_posix()] = (data, sha256_of(data))
    logs = Path(job["log_dir"])
    for p in sorted(logs.glob("*")) if logs.is_dir() else ():
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - LOG_TAIL_BYTES))
            data = f.read()
        out["logs/" + p.name] = (data, sha256_of(data))
    return out


def _run(job: dict[str, Any], cancel: Any, worker: Any = None) -> tuple[str, int | None]:
    """Start the command in its own session at low priority; "exited", "timeout", "cancel", or
    "worker_closing" when the worker shuts down under the job (it lost its scheduler, say): the
    result could reach no one, and a job submitted again elsewhere must not race a leftover tool
    writing into the same share."""
    log_dir, name = Path(job["log_dir"]), job.get("name", "tool")
    log_dir.mkdir(exist_ok=True)  # in the work folder; never the share's own folders
    argv = list(job["argv"])
    if os.name == "posix" and shutil.which("nice"):  # no preexec_fn in a threaded worker
        argv = ["nice", "-n", str(int(job.get("nice", 10))), *argv]
    deadline = time.monotonic() + float(job["timeout"])
    with open(log_dir / f"{name}.out", "wb") as out, open(log_dir / f"{name}.err", "wb") as err:
        try:
            proc = subprocess.Popen(argv, cwd=job["cwd"], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env={**os.environ, **job.get("env", {})}, start_new_session=os.name == "posix")
        except OSError as exc:
            err.write(f"could not start {argv[0]}: {exc}\n".encode())
            return "not_started", None
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return "exited", proc.wait(timeout=POLL_SECONDS)
            stop = ("timeout" if time.monotonic() > deadline else "cancel" if _is_set(cancel)
                    else "worker_closing" if _closing(worker) else None)
            if stop:
                _stop(proc, float(job.get("grace", 5.0)))
                return stop, proc.returncode


def _is_set(event: Any) -> bool:
    try:
        return bool(event.is_set())
    except Exception:  # the scheduler is away for a moment: the deadline still applies
        return False


def _closing(worker: Any) -> bool:
    """The worker is closing or closed (not when it retires gracefully: then its jobs finish)."""
    status = getattr(getattr(worker, "status", None), "name", "running")
    return status in ("closing", "closed", "failed")


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the tool's process group, ``grace`` seconds, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if os.name == "posix":
                os.killpg(proc.pid, sig)
            else:
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
            return
