"""The warm search worker of the search stage: one low-priority child holds the last search database.

``[engine.search] keep_warm_seconds`` > 0: instead of a fresh ``qcdaemon.search.cli`` child per run
(which builds the Sage index again: 13-15 s and 0.67 GB for the yeast proteome), the stage hands the
job to a resident ``qcdaemon.search.worker`` over its stdin/stdout (JSON lines, no network port).
The worker holds the database of the last key (sha256 of FASTA + digest parameters), rebuilds in
place for another key (one database resident), and exits after ``keep_warm_seconds`` idle.  The
stage's promises hold as with the one-shot child: the same nice value, ``RAYON_NUM_THREADS`` and
memory cap (a worker started with other caps is replaced); a cancel or a timeout kills the worker
(the next job starts a fresh one); a worker that dies mid-job fails that attempt with the reason;
its pid record lets a restarted daemon kill one a ``kill -9`` left; :func:`close_warm_searches`
(the engine's stop) ends it.  Jobs take turns (one worker per engine); a job waiting for its turn
can be cancelled, and its timeout starts with its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from qcdaemon.tools.resident import Resident, reap_resident, start_resident, stop_resident
from qcdaemon.tools.runner import ToolResult, read_excerpt

log = structlog.get_logger("qcdaemon.engine")

NAME = "search-worker"


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is started with; a job needing another spec replaces the worker."""

    keep_warm: float
    memory_mb: int
    nice: int
    env: tuple[tuple[str, str], ...]
    log_file: Path  # the worker's own log between jobs (each job logs into its run's log_dir)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "qcdaemon.search.worker", "--keep-warm", f"{self.keep_warm:g}",
                "--memory-mb", str(self.memory_mb)]


@dataclass
class WarmAnswer:
    """One job's end: the worker's answer, or why there is none."""

    result: ToolResult
    answer: dict[str, Any] | None
    worker_pid: int | None


class WarmSearch:
    """The engine's one warm search worker (started on the first job, replaced when it died)."""

    def __init__(self, pid_dir: Path | None) -> None:
        self.pid_dir = pid_dir
        self.worker: Resident | None = None
        self.spec: WorkerSpec | None = None
        self._turn = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None

    async def run(self, job: Mapping[str, Any], spec: WorkerSpec, *, timeout: float,
                  cancel: asyncio.Event) -> WarmAnswer:
        """Run one job; the result describes it like ``run_tool`` would (exit code, timeout, cancel)."""
        started = time.time()
        out, err = Path(job["out"]), Path(job["err"])
        argv = tuple(spec.argv())

        def result(code: int | None, error: str | None, *, timed_out: bool = False,
                   cancelled: bool = False) -> ToolResult:
            return ToolResult(argv, code, timed_out, cancelled, started, time.time(), out, err, error)

        if not await _take_turn(self._turn, cancel):
            return WarmAnswer(result(None, "cancelled before start", cancelled=True), None, None)
        try:
            done = None
            for _ in range(2):  # a second time only when the worker had just exited idle, the job unread
                try:
                    worker = await self._worker_for(spec)
                except OSError as exc:
                    return WarmAnswer(result(None, f"could not start the search worker: {exc.strerror or exc}"),
                                      None, None)
                done = await self._exchange(worker, job, timeout, cancel, result)
                if done.answer is not None or done.result.exit_code != 0:
                    return done
                log.info("search_worker_was_idle_exiting", pid=done.worker_pid)
            assert done is not None
            return WarmAnswer(result(None, "the search worker exited before it read the job"), None, done.worker_pid)
        finally:
            self._turn.release()

    async def _exchange(self, worker: Resident, job: Mapping[str, Any], timeout: float, cancel: asyncio.Event,
                        result: Any) -> WarmAnswer:
        pid = worker.pid
        try:
            outcome, line = await _ask(worker, job, timeout, cancel)
        except asyncio.CancelledError:
            log.warning("search_worker_stopping", pid=pid, reason="task cancelled")
            await asyncio.shield(self._drop(worker))
            raise
        if outcome != "answered":
            log.warning("search_worker_stopping", pid=pid, reason=outcome)
            await self._drop(worker)
            if outcome == "timeout":
                return WarmAnswer(result(None, f"timed out after {timeout:g} s", timed_out=True), None, pid)
            return WarmAnswer(result(None, "cancelled", cancelled=True), None, pid)
        try:
            answer = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            answer = None
        if answer is None:  # the worker died mid-job (or its answer is cut off)
            await self._drop(worker)
            code = worker.proc.returncode
            if code == 0:  # exits 0 only when idle or its stdin closed: it never read this job
                return WarmAnswer(result(0, None), None, pid)
            reason = f"the search worker (pid {pid}) died mid-job: {_exit_text(code)}"
            said = await asyncio.to_thread(read_excerpt, Path(job["out"]), Path(job["err"]))
            reason += f": {said}" if said else ""  # e.g. Rust's "memory allocation of N bytes failed"
            log.warning("search_worker_died", pid=pid, exit_code=code)
            return WarmAnswer(result(code, reason), None, pid)
        if answer.get("exiting"):
            log.warning("search_worker_over_memory", pid=pid, rss_mb=answer.get("rss_mb"))
            await self._drop(worker)
        code = int(answer["exit"])
        return WarmAnswer(result(code, None if code == 0 else f"exit code {code}"), answer, pid)

    async def _worker_for(self, spec: WorkerSpec) -> Resident:
        w = self.worker
        if w is not None and w.proc.returncode is None and self.spec == spec:
            return w
        if w is not None:
            await self._drop(w)
        await asyncio.to_thread(spec.log_file.parent.mkdir, parents=True, exist_ok=True)
        with open(spec.log_file, "ab") as log_fh:  # noqa: ASYNC230 (a local file, opened in no time)
            w = await start_resident(spec.argv(), cwd=spec.log_file.parent, name=NAME, nice=spec.nice,
                                     stderr=log_fh, env=dict(spec.env), pid_dir=self.pid_dir)
        self.worker, self.spec = w, spec
        self._watch = asyncio.ensure_future(self._reap_when_gone(w))
        log.info("search_worker_started", pid=w.pid, keep_warm_seconds=spec.keep_warm, memory_mb=spec.memory_mb)
        return w

    async def _reap_when_gone(self, w: Resident) -> None:
        """An idle worker exits by itself: forget it and its pid record."""
        await w.proc.wait()
        if self.worker is w:
            self.worker = None
            log.info("search_worker_exited", pid=w.pid, exit_code=w.proc.returncode)
        await reap_resident(w)

    async def _drop(self, w: Resident) -> None:
        if self.worker is w:
            self.worker = None
        await stop_resident(w)

    async def close(self) -> None:
        if self.worker is not None:
            await self._drop(self.worker)
        if self._watch is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch


async def _take_turn(lock: asyncio.Lock, cancel: asyncio.Event) -> bool:
    """Acquire ``lock`` unless ``cancel`` is set first (then False, the lock not held)."""
    if cancel.is_set():
        return False
    taker = asyncio.ensure_future(lock.acquire())
    stopper = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({taker, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the task was cancelled while waiting: never leave the lock held
        stopper.cancel()
        if taker.done() and not taker.cancelled():
            lock.release()
        else:
            taker.cancel()
        raise
    stopper.cancel()
    if not taker.done():
        taker.cancel()
        return False
    if cancel.is_set():
        lock.release()
        return False
    return True


async def _ask(worker: Resident, job: Mapping[str, Any], timeout: float, cancel: asyncio.Event) -> tuple[str, bytes]:
    """Send the job, wait for the answer line: ("answered", line; b"" = the worker died), "timeout", "cancel"."""
    assert worker.proc.stdin is not None and worker.proc.stdout is not None
    try:
        worker.proc.stdin.write((json.dumps(dict(job)) + "\n").encode())
        await worker.proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        await worker.proc.wait()
        return "answered", b""
    reader = asyncio.ensure_future(worker.proc.stdout.readline())
    stopper = asyncio.ensure_future(cancel.wait())
    try:
        async with asyncio.timeout(timeout):
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        return "timeout", b""
    finally:
        stopper.cancel()
        if not reader.done():
            reader.cancel()
    if not reader.done() or reader.cancelled():
        return "cancel", b""
    line = reader.result()
    if not line:
        await worker.proc.wait()
    return "answered", line


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name} (exit code {code})"
    return f"exit code {code}"


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path | None, WarmSearch]] = (
    weakref.WeakKeyDictionary())


def warm_search(pid_dir: Path | None) -> WarmSearch:
    """The warm search of the engine with this pid folder in the running loop."""
    pools = _POOLS.setdefault(asyncio.get_running_loop(), {})
    if pid_dir not in pools:
        pools[pid_dir] = WarmSearch(pid_dir)
    return pools[pid_dir]


async def close_warm_searches(pid_dir: Path | None) -> None:
    """Stop the warm worker of the engine with this pid folder (the engine's stop calls this)."""
    pools = _POOLS.get(asyncio.get_running_loop(), {})
    pool = pools.pop(pid_dir, None)
    if pool is not None:
        await pool.close()
