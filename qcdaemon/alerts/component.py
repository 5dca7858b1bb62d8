"""The alerts component of the daemon: ``async with AlertsComponent(store, cfg, watcher=..., scheduler=...)``.

It runs every check on a scheduler job (:meth:`AlertsComponent.check`): those on runs, stages and
the queue (:mod:`qcdaemon.alerts.runchecks`) and those on watched folders and volumes, fed with the
watcher's growth observations (:mod:`qcdaemon.alerts.watchchecks`), and a hub's on its sources
(:mod:`qcdaemon.alerts.hubchecks`); then the lifecycle's tick
queues the messages that are due, and the outbox worker sends them. ``daemon_crash``: a marker file
in the data dir that a clean stop removes.

Every "now" comes from the injected ``clock`` (naive UTC), so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from qcdaemon.alerts.conditions import to_local
from qcdaemon.alerts.context import AlertContext, HubLike, SchedulerLike, WatcherLike, base_url
from qcdaemon.alerts.delivery import Outbox, Sender, apprise_send
from qcdaemon.alerts.hubchecks import HubChecks
from qcdaemon.alerts.manager import AlertManager, Clock, Finding
from qcdaemon.alerts.runchecks import RunChecks
from qcdaemon.alerts.watchchecks import WatchChecks
from qcdaemon.config import Config, WatchConfig
from qcdaemon.core.clock import utcnow
from qcdaemon.store import AsyncStore

log = structlog.get_logger("qcdaemon.alerts")


class AlertsComponent:
    def __init__(self, store: AsyncStore, cfg: Config, *, watcher: WatcherLike | None = None,
                 scheduler: SchedulerLike | None = None, clock: Clock = utcnow, sender: Sender = apprise_send,
                 hub: HubLike | None = None) -> None:
        self.cfg = cfg
        self.scheduler = scheduler
        self.clock = clock
        self.outbox = Outbox(store, cfg, clock=clock, sender=sender)
        self.manager = AlertManager(store, cfg, clock=clock, wake=self.outbox.wake)
        self.ctx = AlertContext(store, cfg, self.manager, clock, base_url(cfg))
        self.runs = RunChecks(self.ctx)
        self.watches = WatchChecks(self.ctx, watcher)
        self.hub = HubChecks(self.ctx, hub)  # a hub's sources (issue 17)
        self._task: asyncio.Task[None] | None = None
        self._check_lock = asyncio.Lock()
        self.crashed_before = False

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> AlertsComponent:
        marker = self.cfg.files.running_marker
        self.crashed_before = await asyncio.to_thread(marker.exists)
        await asyncio.to_thread(marker.write_text, f"{self.clock().isoformat()}\n")
        await self.runs.start()
        await self.watches.start()
        if self.crashed_before:
            log.warning("daemon_restarted_after_crash", marker=str(marker))
            await self._crash_notice(self.clock())
        self._task = asyncio.create_task(self.outbox.run(), name="alerts-outbox")
        if self.scheduler is not None:
            self.scheduler.add_job(self.check, "interval", seconds=self.cfg.alerts.check_seconds, id="alerts_check")
        log.info("alerts_started", rules=len(self.cfg.alerts.rule), channels=len(self.cfg.alerts.channel))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if exc_type is None:  # a clean stop: the next start is not "after a crash"
            await asyncio.to_thread(self.cfg.files.running_marker.unlink, True)

    async def _crash_notice(self, now: dt.datetime) -> None:
        host = socket.gethostname()
        for rule in self.ctx.rules_of("daemon_crash"):
            await self.manager.notice(rule, Finding(
                subject=f"crash:{now.isoformat()}", scope="daemon", project_id=None,
                title=f"qcdaemon on {host} restarted after an unclean stop",
                text=(f"qcdaemon on {host} (data in {self.cfg.data_dir}) started at {to_local(now):%Y-%m-%d %H:%M}"
                      " local time, and its previous run did not stop cleanly (crash, kill or power loss). "
                      "Stages that were running are re-queued; check the daemon's log.\n" + self.ctx.base + "/"),
            ))

    # -- what the watcher and the quality-control code tell ---------------------------------------

    def on_file(self, kind: str, key: tuple[int, Path], watch: WatchConfig, sig: tuple[int, int]) -> None:
        """The settle tracker's listener (on the loop; must not raise or block)."""
        self.watches.on_file(kind, key, watch, sig)

    async def verdict_seen(self, run: Mapping[str, Any], verdict: Mapping[str, Any]) -> None:
        """One run's verdict ``{verdict, reasons[]}`` (``run``: run_key, run_name, project_slug,
        pipeline_slug, pipeline_uuid, project_id)."""
        await self.runs.verdict_seen(run, verdict)

    # -- the periodic check -------------------------------------------------------------------------

    async def check(self) -> None:
        """Evaluate every condition once and queue the messages that are due (the scheduler's job)."""
        if self._check_lock.locked():
            return
        async with self._check_lock:
            for step in (*self.runs.steps(), *self.watches.steps(), *self.hub.steps()):
                try:
                    await step()
                except Exception:
                    log.exception("alert_check_failed", check=step.__name__)
            try:
                await self.manager.tick()
            except Exception:
                log.exception("alert_tick_failed")
