"""The warm search worker (qcdaemon.engine.stages.search_warm) with real processes, real sagepy and real files.

Each test starts real ``python -m qcdaemon.search.worker`` processes through the engine's
``WarmSearch`` and checks what the brief promises: one build for two jobs of the same FASTA and
parameters (the worker's build count and the manifest's), a rebuild when the FASTA's content
changes, the idle exit, a cancel that kills the worker, and a ``kill -9`` mid-job that fails the job
with the reason, after which the next job starts a fresh worker.  Times are bounds on polling,
never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from qcdaemon.engine.stages.search_warm import WarmSearch, WorkerSpec
from qcdaemon.search.params import SearchParams
from qcdaemon.search.sagepy_api import unavailable_reason

from .data import BSA_FASTA, YEAST_FASTA, YEAST_RAW

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason="sagepy is not installed")
REPO = Path(__file__).resolve().parents[2]


def _spec(tmp: Path, keep_warm: float = 300, memory_mb: int = 4096) -> WorkerSpec:
    env = {"PYTHONPATH": str(REPO), "RAYON_NUM_THREADS": "2"}
    return WorkerSpec(keep_warm=keep_warm, memory_mb=memory_mb, nice=10, env=tuple(sorted(env.items())),
                      log_file=tmp / "search-db" / "worker.log")


def _job(tmp: Path, name: str, fasta: Path) -> dict[str, Any]:
    logs = tmp / name
    logs.mkdir()
    (logs / "search.err").write_bytes(b"")
    return {"raw": str(YEAST_RAW), "fasta": str(fasta), "params": SearchParams(fdr=0.05).as_dict(),
            "cache_dir": str(tmp / "search-db"), "psms": str(logs / "psms.parquet"),
            "out": str(logs / "search.out"), "err": str(logs / "search.err")}


def _alive(pid: int) -> bool:
    """A live, non-zombie process with this pid."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


async def _poll(cond: Any, bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound} s: {what}")
        await asyncio.sleep(0.05)


async def test_same_fasta_builds_once_a_changed_fasta_rebuilds(tmp_path: Path) -> None:
    pool, spec = WarmSearch(tmp_path / "pids"), _spec(tmp_path)
    albumin = tmp_path / "albumin.fasta"
    shutil.copyfile(BSA_FASTA, albumin)
    try:
        first = await pool.run(_job(tmp_path, "run1", YEAST_FASTA), spec, timeout=600, cancel=asyncio.Event())
        second = await pool.run(_job(tmp_path, "run2", YEAST_FASTA), spec, timeout=600, cancel=asyncio.Event())
        assert first.result.ok and second.result.ok, (first.result.error_excerpt, second.result.error_excerpt)
        assert first.answer is not None and second.answer is not None
        assert first.worker_pid == second.worker_pid
        assert first.answer["database"]["reused"] is False and second.answer["database"]["reused"] is True
        assert first.answer["builds"] == 1 and second.answer["builds"] == 1
        key = first.answer["database"]["key"]
        manifest = json.loads((tmp_path / "search-db" / key / "manifest.json").read_text())
        assert manifest["builds"] == 1
        assert "reused" in (tmp_path / "run2" / "search.err").read_text()
        one = json.loads((tmp_path / "run1" / "search.out").read_text())["values"]
        two = json.loads((tmp_path / "run2" / "search.out").read_text())["values"]
        assert one["SearchPeptides"] >= 40 and two["SearchPeptides"] == one["SearchPeptides"]
        assert (tmp_path / "run2" / "psms.parquet").is_file()

        third = await pool.run(_job(tmp_path, "run3", albumin), spec, timeout=600, cancel=asyncio.Event())
        assert third.answer is not None and third.answer["database"]["reused"] is False
        with albumin.open("a") as fh:  # same path, new content: a new key
            fh.write(">sp|P99999|EXTRA_HUMAN an extra protein\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ\n")
        fourth = await pool.run(_job(tmp_path, "run4", albumin), spec, timeout=600, cancel=asyncio.Event())
        assert fourth.answer is not None and fourth.answer["database"]["reused"] is False
        assert fourth.answer["database"]["key"] != third.answer["database"]["key"]
        assert fourth.answer["builds"] == 3 and fourth.worker_pid == first.worker_pid
        assert fourth.answer["database"]["proteins"] == third.answer["database"]["proteins"] + 1
    finally:
        await pool.close()
    assert first.worker_pid is not None and not _alive(first.worker_pid)
    assert not list((tmp_path / "pids").glob("*.pid"))  # its pid record went with it


async def test_an_idle_worker_exits_after_keep_warm_seconds(tmp_path: Path) -> None:
    pool = WarmSearch(tmp_path / "pids")
    try:
        done = await pool.run(_job(tmp_path, "run1", BSA_FASTA), _spec(tmp_path, keep_warm=1), timeout=600,
                              cancel=asyncio.Event())
        assert done.result.ok and done.worker_pid is not None
        pid = done.worker_pid
        await _poll(lambda: not _alive(pid), 120, "the idle worker's exit")
        await _poll(lambda: pool.worker is None and not list((tmp_path / "pids").glob("*.pid")), 30,
                    "the pool forgets the exited worker and its pid record")
        assert "idle for 1 s, exiting" in (tmp_path / "search-db" / "worker.log").read_text()
    finally:
        await pool.close()


async def _start_and_wait_for_worker(pool: WarmSearch, job: dict[str, Any], spec: WorkerSpec,
                                     cancel: asyncio.Event) -> tuple[asyncio.Task[Any], int]:
    task = asyncio.create_task(pool.run(job, spec, timeout=600, cancel=cancel))
    await _poll(lambda: pool.worker is not None or task.done(), 60, "the worker's start")
    assert pool.worker is not None, task.result()
    pid = pool.worker.pid
    # mid-search: the worker is building the yeast index (its resident memory grows past 200 MB)
    await _poll(lambda: _rss_mb(pid) > 200 or task.done(), 120, "the worker's build")
    assert not task.done(), task.result()
    return task, pid


async def test_cancel_mid_search_kills_the_worker_and_the_next_job_starts_a_fresh_one(tmp_path: Path) -> None:
    pool, spec, cancel = WarmSearch(tmp_path / "pids"), _spec(tmp_path), asyncio.Event()
    try:
        task, pid = await _start_and_wait_for_worker(pool, _job(tmp_path, "run1", YEAST_FASTA), spec, cancel)
        cancel.set()
        done = await asyncio.wait_for(task, 60)
        assert done.result.cancelled and not done.result.ok and done.answer is None
        await _poll(lambda: not _alive(pid), 30, "the cancelled worker's end")
        again = await pool.run(_job(tmp_path, "run2", BSA_FASTA), spec, timeout=600, cancel=asyncio.Event())
        assert again.result.ok and again.worker_pid not in (None, pid)
    finally:
        await pool.close()


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is POSIX")
async def test_a_worker_killed_mid_job_fails_the_job_with_the_reason(tmp_path: Path) -> None:
    pool, spec = WarmSearch(tmp_path / "pids"), _spec(tmp_path)
    try:
        task, pid = await _start_and_wait_for_worker(pool, _job(tmp_path, "run1", YEAST_FASTA), spec, asyncio.Event())
        os.kill(pid, signal.SIGKILL)
        done = await asyncio.wait_for(task, 60)
        assert not done.result.ok and done.result.exit_code == -signal.SIGKILL
        assert done.result.error_excerpt is not None
        assert f"the search worker (pid {pid}) died mid-job: killed by SIGKILL" in done.result.error_excerpt
        again = await pool.run(_job(tmp_path, "run2", BSA_FASTA), spec, timeout=600, cancel=asyncio.Event())
        assert again.result.ok and again.worker_pid not in (None, pid)
    finally:
        await pool.close()


async def test_a_search_over_the_memory_cap_fails_with_the_reason_and_the_next_job_gets_a_fresh_worker(
        tmp_path: Path) -> None:
    pool = WarmSearch(tmp_path / "pids")
    try:
        # 700 MB of data segment: less than the yeast index needs (0.8 GB of data segment, 0.65 GB resident)
        over = await pool.run(_job(tmp_path, "run1", YEAST_FASTA), _spec(tmp_path, memory_mb=700), timeout=600,
                              cancel=asyncio.Event())
        assert not over.result.ok and over.worker_pid is not None and not _alive(over.worker_pid)
        assert over.result.error_excerpt is not None and "died mid-job" in over.result.error_excerpt
        assert "memory allocation" in over.result.error_excerpt  # what the stage turns into the memory-cap hint
        again = await pool.run(_job(tmp_path, "run2", BSA_FASTA), _spec(tmp_path, memory_mb=4096), timeout=600,
                               cancel=asyncio.Event())
        assert again.result.ok and again.worker_pid != over.worker_pid
    finally:
        await pool.close()


def test_keep_warm_seconds_is_configured_and_checked() -> None:
    from qcdaemon.config import Config, config_from_dict
    from qcdaemon.errors import ConfigError

    assert Config().engine.search.keep_warm_seconds == 300
    assert config_from_dict({"engine": {"search": {"keep_warm_seconds": 0}}}).engine.search.keep_warm_seconds == 0
    with pytest.raises(ConfigError, match="engine.search.keep_warm_seconds: must not be negative"):
        config_from_dict({"engine": {"search": {"keep_warm_seconds": -1}}})


async def test_a_timeout_kills_the_worker(tmp_path: Path) -> None:
    pool = WarmSearch(tmp_path / "pids")
    try:
        done = await pool.run(_job(tmp_path, "run1", YEAST_FASTA), _spec(tmp_path), timeout=1, cancel=asyncio.Event())
        assert done.result.timed_out and not done.result.ok and done.result.error_excerpt == "timed out after 1 s"
        assert done.worker_pid is not None and not _alive(done.worker_pid) and pool.worker is None
    finally:
        await pool.close()


async def test_a_restarted_daemon_kills_a_worker_left_behind_by_its_pid_record(tmp_path: Path) -> None:
    from qcdaemon.tools.orphans import kill_stale

    pool = WarmSearch(tmp_path / "pids")
    try:
        done = await pool.run(_job(tmp_path, "run1", BSA_FASTA), _spec(tmp_path), timeout=600, cancel=asyncio.Event())
        assert done.result.ok and done.worker_pid is not None and _alive(done.worker_pid)
        [record] = (tmp_path / "pids").glob("search-worker-*.pid")
        assert record.read_text().split()[0] == str(done.worker_pid)
        # what Engine.start does first: a worker that outlived its daemon is killed by its record's mark
        assert await asyncio.to_thread(kill_stale, tmp_path / "pids") == [done.worker_pid]
        await _poll(lambda: not _alive(done.worker_pid), 30, "the stale worker's death")  # type: ignore[arg-type]
    finally:
        await pool.close()


async def test_a_job_sent_as_the_worker_exits_idle_goes_to_a_fresh_worker(tmp_path: Path) -> None:
    pool, spec = WarmSearch(tmp_path / "pids"), _spec(tmp_path, keep_warm=1)
    try:
        first = await pool.run(_job(tmp_path, "run1", BSA_FASTA), spec, timeout=600, cancel=asyncio.Event())
        assert first.result.ok and first.worker_pid is not None
        # block the event loop until the worker has exited idle: the pool cannot have noticed yet
        deadline = time.monotonic() + 120
        while _alive(first.worker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # on purpose: the loop must not see the exit
        assert not _alive(first.worker_pid) and pool.worker is not None and pool.worker.pid == first.worker_pid
        second = await pool.run(_job(tmp_path, "run2", BSA_FASTA), spec, timeout=600, cancel=asyncio.Event())
        assert second.result.ok, second.result.error_excerpt
        assert second.answer is not None and second.worker_pid != first.worker_pid
    finally:
        await pool.close()
