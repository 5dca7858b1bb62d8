"""The engine queue: workers claim stages from the store, run them, and record the outcome.

Jobs live in the store (table ``stages``), so the queue survives crashes: on start-up every stage
left ``running`` is re-queued and re-run; results are written idempotently (a re-run replaces the
stage's values), so nothing is lost and nothing is doubled.  Workers sleep on an event when the
queue is empty: no polling while idle.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from qcdaemon.config import Config
from qcdaemon.engine.stages import RUNNERS, Outcome, StageContext, stages_failed
from qcdaemon.errors import ParseError, QcdaemonError, ToolError
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import Store
from qcdaemon.store.rows import RunRow, StageRow
from qcdaemon.tools.orphans import kill_stale

log = structlog.get_logger("qcdaemon.engine")

STAGES = ("native", "rawtools", "maxquant")


class Engine:
    def __init__(self, svc: QcService, cfg: Config) -> None:
        self.svc = svc
        self.store = svc.store
        self.cfg = cfg
        self.events = {s: asyncio.Event() for s in STAGES}
        self.cancels: dict[tuple[int, str], asyncio.Event] = {}
        self.shutdown_cancels: set[tuple[int, str]] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.pid_dir = cfg.files.pids
        self.ctx = StageContext(store=svc.store, cfg=cfg, pid_dir=self.pid_dir,
                                values_recorded=svc.quality.record)
        svc.engine = self

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(kill_stale, self.pid_dir)  # tools a killed daemon left behind
        requeued = await self.store.call(Store.requeue_interrupted)
        for run_id, stage, state in requeued:
            event = "stage_requeued_after_restart" if state == "queued" else "stage_failed_after_restarts"
            log.info(event, run_key=f"rf{run_id}", stage=stage)
        limits = {"native": 1, "rawtools": self.cfg.engine.rawtools.max_parallel,
                  "maxquant": self.cfg.engine.maxquant.max_parallel}
        for stage, n in limits.items():
            for i in range(n):
                self.tasks.append(asyncio.create_task(self._worker(stage), name=f"engine-{stage}-{i}"))

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

    async def stop(self, timeout: float) -> None:
        """Take no new stages; let running ones finish within ``timeout``; then stop them (re-queued)."""
        self.stopping = True
        self.wake()
        pending: set[asyncio.Task[None]] = set(self.tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        if pending:
            log.warning("engine_stop_forcing", running=[f"rf{r}:{s}" for r, s in self.cancels])
            self.force()
            _, pending = await asyncio.wait(pending, timeout=15)
        for t in pending:
            t.cancel()
        for result in await asyncio.gather(*self.tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("engine_worker_ended_with_error", error=repr(result))

    def force(self) -> None:
        """Stop running tools now; their stages go back to the queue (a user's cancel stays a cancel)."""
        self.stopping = True
        for key, ev in self.cancels.items():
            if not ev.is_set():
                self.shutdown_cancels.add(key)
            ev.set()

    # -- workers ----------------------------------------------------------------------------

    async def _worker(self, stage: str) -> None:
        """Claim and run stages until the engine stops; no error of one job ends the worker."""
        event = self.events[stage]
        while not self.stopping:
            event.clear()
            job = None
            try:
                job = await self.store.call(Store.claim_stage, stage)
                if job is None:
                    await event.wait()
                    continue
                await self._run_job(job)
            except Exception:  # e.g. the store failing (disk full): log, put the job back, go on
                log.exception("engine_worker_error", stage=stage, run_key=f"rf{job['run_id']}" if job else None)
                if job is not None:
                    with contextlib.suppress(Exception):
                        await self.store.call(Store.requeue_stage, job["run_id"], stage)
                await asyncio.sleep(5)
            self.wake()  # a finished first stage unlocks the run's other stages

    async def _run_job(self, job: StageRow) -> None:
        run_id, stage = job["run_id"], job["stage"]
        key = (run_id, stage)
        cancel = self.cancels[key] = asyncio.Event()
        try:
            run = await self.store.call(Store.run, run_id)
            log.info("stage_started", run_key=run["run_key"], stage=stage, attempt=job["attempts"], file=run["name"])
            outcome = await self._outcome(run, stage, cancel)
        finally:
            self.cancels.pop(key, None)
        interrupted = key in self.shutdown_cancels
        self.shutdown_cancels.discard(key)
        state = outcome["state"]
        if interrupted and state != "done":  # stopped by the daemon, not by the tool or the user
            await self.store.call(Store.requeue_stage, run_id, stage, count_attempt=False)
            log.info("stage_interrupted", run_key=run["run_key"], stage=stage)
            return
        if cancel.is_set() and state != "done":
            state, outcome["error"] = "cancelled", "cancelled by user"
        allowed = getattr(getattr(self.cfg.engine, stage, None), "attempts", 1)
        if state == "failed" and job["attempts"] < allowed and not self.stopping:
            await self.store.call(Store.requeue_stage, run_id, stage)
            log.warning("stage_retrying", run_key=run["run_key"], stage=stage, attempt=job["attempts"],
                        of=allowed, error=(outcome.get("error") or "")[:300])
            return
        await self.store.call(Store.finish_stage,
            run_id, stage, state, error=outcome.get("error"), exit_code=outcome.get("exit_code"),
            log_dir=outcome.get("log_dir"),
        )
        event = {"done": "stage_done", "skipped": "stage_skipped", "cancelled": "stage_cancelled"}.get(state, "stage_failed")
        (log.info if state != "failed" else log.warning)(
            event, run_key=run["run_key"], stage=stage, error=(outcome.get("error") or "")[:300] or None
        )

    async def _outcome(self, run: RunRow, stage: str, cancel: asyncio.Event) -> Outcome:
        """Run the stage; a failure of the tool, its output or the stage's own code is an outcome."""
        try:
            return await RUNNERS[stage](self.ctx, run, self.cfg.files.work_of(run["run_key"]), cancel)
        except (ParseError, ToolError, QcdaemonError, OSError) as exc:
            return stages_failed(str(exc))
        except Exception as exc:  # a bug in a stage: record it, keep the daemon going
            log.exception("stage_crashed", run_key=run["run_key"], stage=stage)
            return stages_failed(f"internal error: {type(exc).__name__}: {exc}")
