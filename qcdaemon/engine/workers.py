"""The engine queue: workers claim stages from the store, run them, and record the outcome.

Jobs live in the store (table ``stages``), so the queue survives crashes: on start-up every stage
left ``running`` is re-queued and re-run; results are written idempotently (a re-run replaces the
stage's values), so nothing is lost and nothing is doubled.  Workers sleep on an event when the
queue is empty: no polling while idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

import structlog

from qcdaemon.config import Config
from qcdaemon.core.runkeys import run_key
from qcdaemon.engine.reconcile import reconcile
from qcdaemon.engine.recovery import Recovery, stage_error
from qcdaemon.engine.stages import RUNNERS, Outcome, StageContext, stages_failed
from qcdaemon.engine.stages.search_warm import close_warm_searches
from qcdaemon.errors import ParseError, QcdaemonError, ToolError
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import Store
from qcdaemon.store.rows import RunRow, StageRow
from qcdaemon.tools.orphans import kill_stale

log = structlog.get_logger("qcdaemon.engine")

STAGES = ("native", "rawtools", "search", "maxquant")
ERROR_PAUSE_SECONDS = 5.0  # after a worker error (the store failing): before the next try


class Engine:
    """The workers of the persistent queue; an async context manager (start on enter, stop on exit).

    A normal exit stops gracefully (running stages get ``engine.shutdown_timeout``, or none after
    :meth:`force`); an exit by an exception (a later part of start-up failed) stops at once.
    """

    def __init__(self, svc: QcService, cfg: Config, *, error_pause: float = ERROR_PAUSE_SECONDS,
                 reconciled: bool = False) -> None:
        self.svc = svc
        self.store = svc.store
        self.cfg = cfg
        self.error_pause = error_pause
        self.reconciled = reconciled  # the daemon reconciles before its server takes uploads
        self.events = {s: asyncio.Event() for s in STAGES}
        self.cancels: dict[tuple[int, str], asyncio.Event] = {}
        self.shutdown_cancels: set[tuple[int, str]] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.forced = False
        self._halt = asyncio.Event()  # set when the engine stops taking work: ends the pause after an error
        self.pid_dir = cfg.files.pids
        self.ctx = StageContext(store=svc.store, cfg=cfg, pid_dir=self.pid_dir,
                                values_recorded=svc.quality.record)
        svc.engine = self
        self.recovery = Recovery(svc.store, cfg, live=lambda: set(self.cancels), wake=self.wake)  # issue 12

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        try:
            await self.start()
        except BaseException:
            self.force()
            await self.stop(0)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is not None:
            self.force()
        await self.stop(0 if self.forced else self.cfg.engine.shutdown_timeout)

    async def start(self) -> None:
        await asyncio.to_thread(kill_stale, self.pid_dir)  # tools a killed daemon left behind
        if not self.reconciled:
            await reconcile(self.store, self.cfg)  # files, work folders and ledger rows a kill left (issue 12)
        requeued = await self.store.call(Store.requeue_interrupted)
        for run_id, stage, state in requeued:
            event = "stage_requeued_after_restart" if state == "queued" else "stage_failed_after_restarts"
            log.info(event, run_key=run_key(run_id), stage=stage)
        limits = {"native": 1, "rawtools": self.cfg.engine.rawtools.max_parallel,
                  "search": self.cfg.engine.search.max_parallel, "maxquant": self.cfg.engine.maxquant.max_parallel}
        for stage, n in limits.items():
            for i in range(n):
                self.tasks.append(asyncio.create_task(self._worker(stage), name=f"engine-{stage}-{i}"))
        log.info("engine_started", workers=len(self.tasks))
        self.recovery.start()  # stages whose outcome could not be recorded run again once the store can write

    def wake(self) -> None:
        for ev in self.events.values():
            ev.set()

    def cancel(self, run_id: int) -> None:
        # A stage is registered in the same loop step in which its claim completes, and the
        # store serialises claim and cancel, so a running stage is always found here.
        for (rid, _stage), ev in self.cancels.items():
            if rid == run_id:
                ev.set()

    def busy(self) -> int:
        return len(self.cancels)

    def stop_taking(self) -> None:
        """Claim no new stage from now on (running ones go on); the first step of every stop."""
        self.stopping = True
        self._halt.set()
        self.wake()

    async def stop(self, timeout: float) -> None:
        """Take no new stages; let running ones finish within ``timeout``; then stop them (re-queued)."""
        self.stop_taking()
        await self.recovery.stop()
        pending: set[asyncio.Task[None]] = {t for t in self.tasks if not t.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        if pending:
            log.warning("engine_stop_forcing", running=[f"{run_key(r)}:{s}" for r, s in self.cancels])
            self.force()
            _, pending = await asyncio.wait(pending, timeout=15)
        for t in pending:
            t.cancel()
        for result in await asyncio.gather(*self.tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("engine_worker_ended_with_error", error=repr(result))
        await close_warm_searches(self.pid_dir)  # the warm search worker ends with the engine
        if self.tasks:
            log.info("engine_stopped")
        self.tasks = []

    def force(self) -> None:
        """Stop running tools now; their stages go back to the queue (a user's cancel stays a cancel)."""
        self.forced = True
        self.stop_taking()
        for key, ev in self.cancels.items():
            if not ev.is_set():
                self.shutdown_cancels.add(key)
            ev.set()

    # -- workers ----------------------------------------------------------------------------

    async def _worker(self, stage: str) -> None:
        """Claim and run stages until the engine stops; no error of one job ends the worker.

        A job whose outcome could not be recorded (the store failed) is put back in the queue as
        soon as the store answers again, before the next claim: it is never left "running".
        """
        event = self.events[stage]
        unsettled: StageRow | None = None
        while not self.stopping:
            event.clear()
            job = None
            try:
                await self.recovery.wait_for_space()  # after a stage failed on a full disk (issue 12)
                if unsettled is not None:
                    await self.store.call(Store.requeue_stage, unsettled["run_id"], stage)
                    log.info("stage_requeued_after_error", run_key=run_key(unsettled["run_id"]), stage=stage)
                    unsettled = None
                job = await self.store.call(Store.claim_stage, stage)
                if job is None:
                    await event.wait()
                    continue
                if await self._wait_for_space(job):
                    continue
                await self._run_job(job)
            except Exception:  # e.g. the store failing (disk full): log, put the job back, go on
                unsettled = job or unsettled
                log.exception("engine_worker_error", stage=stage,
                              run_key=run_key(unsettled["run_id"]) if unsettled else None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._halt.wait(), self.error_pause)
            self.wake()  # a finished first stage unlocks the run's other stages

    async def _wait_for_space(self, job: StageRow) -> bool:
        """Low-space guard (issue 12): on a nearly full disk the stage goes back to the queue."""
        reason = await self.recovery.low_space()
        if reason is not None:
            log.warning("stage_waiting_for_disk_space", run_key=f"rf{job['run_id']}", stage=job["stage"], reason=reason)
            await self.store.call(Store.requeue_stage, job["run_id"], job["stage"], count_attempt=False)
            with contextlib.suppress(TimeoutError):  # a stop does not wait for this pause
                await asyncio.wait_for(self._halt.wait(), 30)
        return reason is not None

    async def release_stuck(self, run_id: int, *, cancel: bool = False) -> list[str]:
        """A retry or cancel of a stage the store says is running and no worker runs releases it."""
        return [stage for _run, stage in await self.recovery.release(run_id, cancel=cancel)]

    async def _run_job(self, job: StageRow) -> None:
        """Run one claimed stage and record its outcome; every log line meanwhile names the run and stage."""
        with structlog.contextvars.bound_contextvars(run_key=run_key(job["run_id"]), stage=job["stage"]):
            await self._run_bound(job)

    async def _run_bound(self, job: StageRow) -> None:
        run_id, stage = job["run_id"], job["stage"]
        key = (run_id, stage)
        cancel = self.cancels[key] = asyncio.Event()
        try:
            run = await self.store.call(Store.run, run_id)
            log.info("stage_started", attempt=job["attempts"], file=run["name"])
            outcome, disk_full = await self.recovery.explain(await self._outcome(run, stage, cancel))
        finally:
            self.cancels.pop(key, None)
        interrupted = key in self.shutdown_cancels
        self.shutdown_cancels.discard(key)
        state = outcome["state"]
        if interrupted and state != "done":  # stopped by the daemon, not by the tool or the user
            await self.store.call(Store.requeue_stage, run_id, stage, count_attempt=False)
            log.info("stage_interrupted")
            return
        if cancel.is_set() and state != "done":
            state, outcome["error"] = "cancelled", "cancelled by user"
        elif disk_full and not self.stopping:  # not the tool's failure: run it again later
            await self.recovery.hold(run_id, stage, outcome.get("error") or "the disk is full")
            return
        allowed = getattr(getattr(self.cfg.engine, stage, None), "attempts", 1)
        if state == "failed" and job["attempts"] < allowed and not self.stopping:
            await self.store.call(Store.requeue_stage, run_id, stage)
            log.warning("stage_retrying", attempt=job["attempts"], of=allowed, error=(outcome.get("error") or "")[:300])
            return
        await self.store.call(Store.finish_stage,
            run_id, stage, state, error=outcome.get("error"), exit_code=outcome.get("exit_code"),
            log_dir=outcome.get("log_dir"),
        )
        event = {"done": "stage_done", "skipped": "stage_skipped", "cancelled": "stage_cancelled"}.get(state, "stage_failed")
        (log.info if state != "failed" else log.warning)(event, error=(outcome.get("error") or "")[:300] or None)

    async def _outcome(self, run: RunRow, stage: str, cancel: asyncio.Event) -> Outcome:
        """Run the stage; a failure of the tool, its output or the stage's own code is an outcome."""
        try:
            return await RUNNERS[stage](self.ctx, run, self.cfg.files.work_of(run["run_key"]), cancel)
        except (ParseError, ToolError, QcdaemonError, OSError) as exc:
            return stages_failed(stage_error(exc))
        except Exception as exc:  # a bug in a stage: record it, keep the daemon going
            log.exception("stage_crashed")
            return stages_failed(f"internal error: {type(exc).__name__}: {exc}")
