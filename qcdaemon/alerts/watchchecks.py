"""The checks on the instrument's side: watched folders and volumes, from the watcher's own
observations.

* ``silence``: the newest file seen in each watched folder, counted in the watch's working hours.
* ``stalled``: growth observations from the watcher's settle tracker (a file that grew and then
  stopped growing without being finished).
* ``unreachable``: the watcher's folder status, for longer than a grace period.
* ``disk_space``: free space of the data dir and the watched folders' volumes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from qcdaemon.alerts.conditions import (
    PipelineRef,
    in_scope,
    is_working,
    limit_minutes,
    parse_schedule,
    to_local,
    watch_timezone,
    working_seconds,
)
from qcdaemon.alerts.context import AlertContext, WatcherLike, dur
from qcdaemon.alerts.manager import Finding
from qcdaemon.config import WatchConfig
from qcdaemon.store import Store

log = structlog.get_logger("qcdaemon.alerts")


@dataclass
class _Growth:
    watch_index: int
    path: Path
    first_size: int
    size: int
    changed_at: dt.datetime
    grew: bool = False


class WatchChecks:
    def __init__(self, ctx: AlertContext, watcher: WatcherLike | None) -> None:
        self.ctx = ctx
        self.watcher = watcher
        self.growth: dict[tuple[int, Path], _Growth] = {}
        self.last_new: dict[int, tuple[dt.datetime, str]] = {}
        self.unreachable_since: dict[int, dt.datetime] = {}
        self.schedules = [parse_schedule(w.working_hours) for w in ctx.cfg.watch]

    async def start(self) -> None:
        """A silence counts from the newest file the ledger has seen, or from now."""
        now = self.ctx.clock()
        for i, w in enumerate(self.ctx.cfg.watch):
            seen = await self.ctx.store.call(Store.latest_file_seen, w.path)
            self.last_new[i] = (max(seen, now) if seen else now, "")
        if self.watcher is not None:
            self.watcher.add_file_listener(self.on_file)

    def steps(self) -> tuple[Callable[[], Awaitable[None]], ...]:
        return (self.silence, self.stalled, self.unreachable, self.disk)

    def on_file(self, kind: str, key: tuple[int, Path], watch: WatchConfig, sig: tuple[int, int]) -> None:
        """The settle tracker's listener (on the loop; must not raise or block)."""
        try:
            now = self.ctx.clock()
            index, path = key
            size = int(sig[0])
            if kind == "new":
                self.growth[key] = _Growth(index, path, size, size, now)
                # a new file (its mtime recent, not an old file found by the start-up scan) breaks a silence
                mtime = dt.datetime.fromtimestamp(sig[1] / 1e9, dt.UTC).replace(tzinfo=None)
                seen = min(now, mtime)
                if index not in self.last_new or seen > self.last_new[index][0]:
                    self.last_new[index] = (seen, path.name)
            elif kind == "changed":
                g = self.growth.get(key)
                if g is None:
                    self.growth[key] = _Growth(index, path, size, size, now, grew=True)
                else:
                    g.grew = g.grew or size != g.size
                    g.size, g.changed_at = size, now
                if index not in self.last_new or now > self.last_new[index][0]:
                    self.last_new[index] = (now, path.name)
            else:  # settled or removed: not (or no longer) an acquisition in progress
                self.growth.pop(key, None)
        except Exception:
            log.exception("alerts_file_listener_failed")

    async def silence(self) -> None:
        now = self.ctx.clock()
        for rule in self.ctx.rules_of("silence"):
            limit = limit_minutes(rule) * 60
            findings, cleared = [], {}
            already = {a["subject"] for a in await self.ctx.store.call(Store.alerts_open, rule.name)}
            for i, w in enumerate(self.ctx.cfg.watch):
                ref, project_id, label = await self.ctx.watch_ref(w)
                if not in_scope(rule, ref):
                    continue
                subject = f"silence:{w.path}"
                last, name = self.last_new.get(i, (now, ""))
                sched = self.schedules[i]
                tz = watch_timezone(w)  # working hours are the instrument's wall clock
                quiet = working_seconds(to_local(last, tz), to_local(now, tz), sched)
                # opened only in working hours; an open one stays open through the night until a file comes
                if quiet >= limit and (is_working(to_local(now, tz), sched) or subject in already):
                    findings.append(Finding(
                        subject=subject, scope=label, project_id=project_id,
                        title=f"{label}: no new RAW file for {dur(now - last)}",
                        text=(f"No new RAW file in {w.path} ({label}) since {to_local(last, tz):%Y-%m-%d %H:%M} local time"
                              f" ({dur(now - last)}; {quiet / 60:.0f} min in working hours, limit {limit / 60:g} min)."
                              " Is the instrument running, and is it writing to this folder?\n"
                              + (f"  {self.ctx.base}/pipelines/{ref.project}/{ref.pipeline}" if ref else ""))))
                else:
                    cleared[subject] = f"a new file arrived ({name})" if name else "a new file arrived"
            await self.ctx.manager.holds(rule, findings, cleared)

    async def stalled(self) -> None:
        now = self.ctx.clock()
        for rule in self.ctx.rules_of("stalled"):
            limit = dt.timedelta(minutes=limit_minutes(rule))
            findings = []
            for g in list(self.growth.values()):
                if not g.grew or now - g.changed_at < limit or g.watch_index >= len(self.ctx.cfg.watch):
                    continue
                w = self.ctx.cfg.watch[g.watch_index]
                ref, project_id, label = await self.ctx.watch_ref(w)
                if not in_scope(rule, ref):
                    continue
                findings.append(Finding(
                    subject=f"stalled:{g.path}", scope=label, project_id=project_id,
                    title=f"{label}: acquisition stalled: {g.path.name} stopped growing",
                    text=(f"{g.path} ({label}) grew to {g.size / 1e6:.1f} MB and has not grown for {dur(now - g.changed_at)}"
                          f" (limit {limit_minutes(rule):g} min), but it is not finished. Check the instrument"
                          " (spray, acquisition software, disk).")))
            cleared = {f"stalled:{k[1]}": "the file grows again" for k in self.growth}
            await self.ctx.manager.holds(rule, findings, cleared, otherwise="the file was finished or removed")

    async def unreachable(self) -> None:
        rules = self.ctx.rules_of("unreachable")
        if not rules or self.watcher is None:
            return
        now = self.ctx.clock()
        status = self.watcher.status()
        for i, st in enumerate(status):
            if not st.get("exists", True) or st.get("error"):
                self.unreachable_since.setdefault(i, now)
            else:
                self.unreachable_since.pop(i, None)
        for rule in rules:
            limit = dt.timedelta(minutes=limit_minutes(rule))
            findings = []
            for i, since in self.unreachable_since.items():
                if i >= len(self.ctx.cfg.watch) or now - since < limit:
                    continue
                w = self.ctx.cfg.watch[i]
                ref, project_id, label = await self.ctx.watch_ref(w)
                if not in_scope(rule, ref):
                    continue
                why = status[i].get("error") or "the folder does not exist"
                findings.append(Finding(
                    subject=f"unreachable:{w.path}", scope=label, project_id=project_id,
                    title=f"{label}: watched folder unreachable", text=(
                        f"{w.path} ({label}) has been unreachable for {dur(now - since)} (grace {limit_minutes(rule):g} min):"
                        f" {why}. Is the share or drive connected? New RAW files are not seen meanwhile.")))
            await self.ctx.manager.holds(rule, findings, {f"unreachable:{w.path}": "the folder is reachable again"
                                                      for w in self.ctx.cfg.watch})

    async def disk(self) -> None:
        for rule in self.ctx.rules_of("disk_space"):
            targets: list[tuple[str, Path, PipelineRef | None, int | None, str]] = []
            if rule.scope == "all":
                targets.append(("data dir", self.ctx.cfg.data_dir, None, None, "daemon"))
            for w in self.ctx.cfg.watch:
                ref, project_id, label = await self.ctx.watch_ref(w)
                if in_scope(rule, ref):
                    targets.append((f"watched folder of {label}", Path(w.path), ref, project_id, label))
            findings = []
            for what, path, _ref, project_id, label in targets:
                try:
                    usage = await asyncio.to_thread(shutil.disk_usage, path)
                except OSError:
                    continue  # unreachable: its own condition
                free_gb = usage.free / 1e9
                if free_gb < rule.min_free_gb:
                    findings.append(Finding(
                        subject=f"disk:{path}", scope=label, project_id=project_id,
                        title=f"{label}: low disk space ({free_gb:.1f} GB free)",
                        text=(f"The volume of the {what} ({path}) has {free_gb:.2f} GB free of {usage.total / 1e9:.1f} GB"
                              f" (limit {rule.min_free_gb:g} GB).")))
            await self.ctx.manager.holds(rule, findings)
