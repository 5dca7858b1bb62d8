"""The alerts component of the daemon: the checks behind every condition, on a scheduler job, and
the outbox worker. ``async with AlertsComponent(store, cfg, watcher=..., scheduler=...)``.

What each condition looks at:

* ``stage_failed``: stages that failed since the last check (a cursor in the store, so a failure
  just before a crash is still reported after the restart); resolved when the same stage of a
  later run of the pipeline finishes.
* ``verdict`` / ``outliers``: the stored run verdicts (``qc_verdicts``) once the quality-control
  tables exist, or verdicts pushed with :meth:`AlertsComponent.verdict_seen`.
* ``silence``: the newest file seen in each watched folder, counted in the watch's working hours.
* ``stalled``: growth observations from the watcher's settle tracker (a file that grew and then
  stopped growing without being finished).
* ``unreachable``: the watcher's folder status; ``disk_space``: free space of the data dir and
  the watched folders' volumes; ``queue_stuck``: the oldest queued or running stage.
* ``daemon_crash``: a marker file in the data dir that a clean stop removes.

Every "now" comes from the injected ``clock`` (naive UTC), so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import structlog

from qcdaemon.alerts.conditions import (
    GLOBAL_CONDITIONS,
    PipelineRef,
    in_scope,
    is_working,
    limit_minutes,
    outliers_hold,
    parse_schedule,
    reason_text,
    to_local,
    verdict_reasons,
    watch_timezone,
    working_seconds,
)
from qcdaemon.alerts.delivery import Outbox, Sender, apprise_send
from qcdaemon.alerts.manager import AlertManager, Clock, Finding
from qcdaemon.config import AlertRuleConfig, Config, WatchConfig
from qcdaemon.core.clock import utcnow
from qcdaemon.core.runkeys import run_id_of
from qcdaemon.store import AsyncStore, Store

log = structlog.get_logger("qcdaemon.alerts")

OVERLAP = dt.timedelta(seconds=5)  # cursors re-read this far back (events are deduplicated)


class WatcherLike(Protocol):
    def status(self) -> list[dict[str, Any]]: ...

    def add_file_listener(self, listener: Any) -> None: ...


class SchedulerLike(Protocol):
    def add_job(self, func: Any, trigger: str, **kwargs: Any) -> Any: ...


@dataclass
class _Growth:
    watch_index: int
    path: Path
    first_size: int
    size: int
    changed_at: dt.datetime
    grew: bool = False


def base_url(cfg: Config) -> str:
    if cfg.alerts.base_url:
        return cfg.alerts.base_url.rstrip("/")
    s = cfg.server
    host = socket.gethostname() if s.host in ("0.0.0.0", "::", "") else s.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if s.tls_cert else 'http'}://{host}:{s.port}"


class AlertsComponent:
    def __init__(self, store: AsyncStore, cfg: Config, *, watcher: WatcherLike | None = None,
                 scheduler: SchedulerLike | None = None, clock: Clock = utcnow, sender: Sender = apprise_send) -> None:
        self.store = store
        self.cfg = cfg
        self.watcher = watcher
        self.scheduler = scheduler
        self.clock = clock
        self.outbox = Outbox(store, cfg, clock=clock, sender=sender)
        self.manager = AlertManager(store, cfg, clock=clock, wake=self.outbox.wake)
        self.rules = cfg.alerts.rule
        self.base = base_url(cfg)
        self.growth: dict[tuple[int, Path], _Growth] = {}
        self.last_new: dict[int, tuple[dt.datetime, str]] = {}
        self.unreachable_since: dict[int, dt.datetime] = {}
        self.schedules = [parse_schedule(w.working_hours) for w in cfg.watch]
        self._pipelines: dict[str, tuple[PipelineRef, int] | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._check_lock = asyncio.Lock()
        self.crashed_before = False

    def _of(self, condition: str) -> list[AlertRuleConfig]:
        return [r for r in self.rules if r.condition == condition]

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> AlertsComponent:
        marker = self.cfg.files.running_marker
        self.crashed_before = await asyncio.to_thread(marker.exists)
        await asyncio.to_thread(marker.write_text, f"{self.clock().isoformat()}\n")
        now = self.clock()
        for name in ("stage_failed", "verdict"):
            if await self.store.call(Store.alert_cursor, name) is None:
                await self.store.call(Store.set_alert_cursor, name, now)
        for i, w in enumerate(self.cfg.watch):
            seen = await self.store.call(Store.latest_file_seen, w.path)
            self.last_new[i] = (max(seen, now) if seen else now, "")
        if self.watcher is not None:
            self.watcher.add_file_listener(self.on_file)
        if self.crashed_before:
            log.warning("daemon_restarted_after_crash", marker=str(marker))
            await self._crash_notice(now)
        self._task = asyncio.create_task(self.outbox.run(), name="alerts-outbox")
        if self.scheduler is not None:
            self.scheduler.add_job(self.check, "interval", seconds=self.cfg.alerts.check_seconds, id="alerts_check")
        log.info("alerts_started", rules=len(self.rules), channels=len(self.cfg.alerts.channel))
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
        for rule in self._of("daemon_crash"):
            await self.manager.notice(rule, Finding(
                subject=f"crash:{now.isoformat()}", scope="daemon", project_id=None,
                title=f"qcdaemon on {socket.gethostname()} restarted after an unclean stop",
                text=(f"qcdaemon on {socket.gethostname()} (data in {self.cfg.data_dir}) started at {to_local(now):%Y-%m-%d %H:%M}"
                      " local time, and its previous run did not stop cleanly (crash, kill or power loss). "
                      "Stages that were running are re-queued; check the daemon's log.\n" + self.base + "/"),
            ))

    # -- growth observations from the watcher -----------------------------------------------------

    def on_file(self, kind: str, key: tuple[int, Path], watch: WatchConfig, sig: tuple[int, int]) -> None:
        """The settle tracker's listener (on the loop; must not raise or block)."""
        try:
            now = self.clock()
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

    # -- verdicts pushed by the quality-control code --------------------------------------------

    async def verdict_seen(self, run: Mapping[str, Any], verdict: Mapping[str, Any]) -> None:
        """One run's verdict ``{verdict, reasons[]}`` (``run``: run_key, run_name, project_slug,
        pipeline_slug, pipeline_uuid, project_id)."""
        ref = PipelineRef(run["project_slug"], run["pipeline_slug"], run.get("pipeline_uuid", ""))
        for rule in self._of("verdict"):
            if not in_scope(rule, ref):
                continue
            subject = f"verdict:{ref.uuid or ref.label}"
            reasons = verdict_reasons(verdict, rule.severity)
            if reasons is None:
                if str(verdict.get("verdict")) == "pass" and await self._newer_than_failures(rule, subject, run):
                    await self.manager.resolve(rule, subject, f"{run['run_name']} ({run['run_key']}) passed")
                continue
            status = str(verdict.get("verdict"))
            lines = [f"{run['run_name']} ({run['run_key']}): verdict {status}"]
            lines += [f"  - {reason_text(r)}" for r in reasons[:8]]
            if len(reasons) > 8:
                lines.append(f"  - ... and {len(reasons) - 8} more reasons")
            lines.append("  " + self.run_link(ref, run["run_key"]))
            text = "\n".join(lines)
            finding = Finding(subject=subject, scope=ref.label, project_id=run.get("project_id"),
                              title=f"{ref.label}: QC {'failed' if rule.severity == 'fail' else 'warning or failure'}",
                              text=text, detail={"pipeline": ref.label, "reasons": reasons,
                                                 "run_number": _run_number(run["run_key"])})
            await self.manager.occurred(rule, finding, f"{run['run_key']}", text)

    async def _newer_than_failures(self, rule: AlertRuleConfig, subject: str, run: Mapping[str, Any]) -> bool:
        """A pass resolves only when its run came after the failing ones (a recomputed old verdict does not)."""
        alert = await self.store.call(Store.alert_open_for, rule.name, subject)
        if alert is None:
            return False
        d = alert.get("detail")
        last = d.get("run_number") if isinstance(d, dict) else None
        return not isinstance(last, int) or _run_number(run["run_key"]) > last

    def run_link(self, ref: PipelineRef, run_key: str) -> str:
        return f"{self.base}/pipelines/{ref.project}/{ref.pipeline}?run={run_key}"

    # -- the periodic check -------------------------------------------------------------------------

    async def check(self) -> None:
        """Evaluate every condition once and queue the messages that are due (the scheduler's job)."""
        if self._check_lock.locked():
            return
        async with self._check_lock:
            steps = (self._check_stage_failures, self._check_verdicts, self._check_outliers, self._check_silence,
                     self._check_stalled, self._check_unreachable, self._check_disk, self._check_queue)
            for step in steps:
                try:
                    await step()
                except Exception:
                    log.exception("alert_check_failed", check=step.__name__)
            try:
                await self.manager.tick()
            except Exception:
                log.exception("alert_tick_failed")

    async def _pipeline(self, ref: str) -> tuple[PipelineRef, int] | None:
        if ref not in self._pipelines or self._pipelines[ref] is None:
            p = await self.store.call(Store.find_pipeline, ref)
            self._pipelines[ref] = (PipelineRef(p["project_slug"], p["slug"], p["uuid"]), int(p["project_id"])) \
                if p else None
        return self._pipelines[ref]

    async def _watch_ref(self, w: WatchConfig) -> tuple[PipelineRef | None, int | None, str]:
        found = await self._pipeline(w.pipeline)
        if found is None:
            return None, None, w.pipeline
        return found[0], found[1], found[0].label

    async def _check_stage_failures(self) -> None:
        rules = self._of("stage_failed")
        since = await self.store.call(Store.alert_cursor, "stage_failed") or self.clock()
        rows = await self.store.call(Store.failed_stages_since, since - OVERLAP)
        newest = since
        for row in rows:
            newest = max(newest, row["ended_at"])
            ref = PipelineRef(row["project_slug"], row["pipeline_slug"], row["pipeline_uuid"])
            for rule in rules:
                if not in_scope(rule, ref) or rule.stage not in ("", row["stage"]):
                    continue
                error = "\n".join((row["error"] or "no error text").strip().splitlines()[:4])[:600]
                text = (f"{row['run_name']} ({row['run_key']}): the {row['stage']} stage failed"
                        f" (attempt {row['attempts']})\n  {error}\n  {self.run_link(ref, row['run_key'])}")
                finding = Finding(
                    subject=f"stage:{ref.uuid}:{row['stage']}", scope=ref.label, project_id=row["project_id"],
                    title=f"{ref.label}: {row['stage']} stage failed", text=text,
                    detail={"pipeline_id": row["pipeline_id"], "stage": row["stage"],
                            "last_failed_at": row["ended_at"].isoformat(), "run_key": row["run_key"]})
                key = f"{row['run_key']}:{row['stage']}:{row['ended_at'].isoformat()}"
                await self.manager.occurred(rule, finding, key, text)
        await self.store.call(Store.set_alert_cursor, "stage_failed", newest)
        for rule in rules:  # a later success of the same stage in the pipeline resolves
            for a in await self.store.call(Store.alerts_open, rule.name):
                d = a.get("detail") or {}
                if not isinstance(d, dict) or "pipeline_id" not in d:
                    continue
                ok = await self.store.call(Store.stage_succeeded_after, int(d["pipeline_id"]), str(d["stage"]),
                                           dt.datetime.fromisoformat(str(d["last_failed_at"])))
                if ok is not None:
                    await self.manager.resolve(rule, a["subject"], f"{ok['run_name']} ({ok['run_key']}): the "
                                               f"{d['stage']} stage finished")

    async def _check_verdicts(self) -> None:
        if not self._of("verdict"):
            return
        since = await self.store.call(Store.alert_cursor, "verdict") or self.clock()
        rows = await self.store.call(Store.verdicts_since, since - OVERLAP)
        newest = since
        for row in rows:
            newest = max(newest, row["computed_at"])
            await self.verdict_seen(row, {"verdict": row["verdict"], "reasons": row["reasons"]})
        await self.store.call(Store.set_alert_cursor, "verdict", newest)

    async def _check_outliers(self) -> None:
        rules = self._of("outliers")
        if not rules:
            return
        pipelines = await self.store.call(Store.pipelines_with_verdicts)
        for rule in rules:
            findings = []
            for p in pipelines:
                ref = PipelineRef(p["project_slug"], p["pipeline_slug"], p["pipeline_uuid"])
                if not in_scope(rule, ref):
                    continue
                recent = await self.store.call(Store.recent_verdicts, int(p["pipeline_id"]), rule.runs)
                if outliers_hold(recent, rule.outliers, rule.runs, rule.severity):
                    runs = "\n".join(f"  {v['run_name']} ({v['run_key']}): {len(v['reasons'])} outliers: "
                                     + "; ".join(reason_text(r) for r in v["reasons"][:4]) for v in recent)
                    findings.append(Finding(
                        subject=f"outliers:{ref.uuid}", scope=ref.label, project_id=p["project_id"],
                        title=f"{ref.label}: at least {rule.outliers} outliers in each of the last {rule.runs} runs",
                        text=f"{runs}\n  {self.run_link(ref, recent[0]['run_key'])}"))
            await self.manager.holds(rule, findings)

    async def _check_silence(self) -> None:
        now = self.clock()
        for rule in self._of("silence"):
            limit = limit_minutes(rule) * 60
            findings, cleared = [], {}
            already = {a["subject"] for a in await self.store.call(Store.alerts_open, rule.name)}
            for i, w in enumerate(self.cfg.watch):
                ref, project_id, label = await self._watch_ref(w)
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
                        title=f"{label}: no new RAW file for {_dur(now - last)}",
                        text=(f"No new RAW file in {w.path} ({label}) since {to_local(last, tz):%Y-%m-%d %H:%M} local time"
                              f" ({_dur(now - last)}; {quiet / 60:.0f} min in working hours, limit {limit / 60:g} min)."
                              " Is the instrument running, and is it writing to this folder?\n"
                              + (f"  {self.base}/pipelines/{ref.project}/{ref.pipeline}" if ref else ""))))
                else:
                    cleared[subject] = f"a new file arrived ({name})" if name else "a new file arrived"
            await self.manager.holds(rule, findings, cleared)

    async def _check_stalled(self) -> None:
        now = self.clock()
        for rule in self._of("stalled"):
            limit = dt.timedelta(minutes=limit_minutes(rule))
            findings = []
            for g in list(self.growth.values()):
                if not g.grew or now - g.changed_at < limit or g.watch_index >= len(self.cfg.watch):
                    continue
                w = self.cfg.watch[g.watch_index]
                ref, project_id, label = await self._watch_ref(w)
                if not in_scope(rule, ref):
                    continue
                findings.append(Finding(
                    subject=f"stalled:{g.path}", scope=label, project_id=project_id,
                    title=f"{label}: acquisition stalled: {g.path.name} stopped growing",
                    text=(f"{g.path} ({label}) grew to {g.size / 1e6:.1f} MB and has not grown for {_dur(now - g.changed_at)}"
                          f" (limit {limit_minutes(rule):g} min), but it is not finished. Check the instrument"
                          " (spray, acquisition software, disk).")))
            cleared = {f"stalled:{k[1]}": "the file grows again" for k in self.growth}
            await self.manager.holds(rule, findings, cleared, otherwise="the file was finished or removed")

    async def _check_unreachable(self) -> None:
        rules = self._of("unreachable")
        if not rules or self.watcher is None:
            return
        now = self.clock()
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
                if i >= len(self.cfg.watch) or now - since < limit:
                    continue
                w = self.cfg.watch[i]
                ref, project_id, label = await self._watch_ref(w)
                if not in_scope(rule, ref):
                    continue
                why = status[i].get("error") or "the folder does not exist"
                findings.append(Finding(
                    subject=f"unreachable:{w.path}", scope=label, project_id=project_id,
                    title=f"{label}: watched folder unreachable", text=(
                        f"{w.path} ({label}) has been unreachable for {_dur(now - since)} (grace {limit_minutes(rule):g} min):"
                        f" {why}. Is the share or drive connected? New RAW files are not seen meanwhile.")))
            await self.manager.holds(rule, findings, {f"unreachable:{w.path}": "the folder is reachable again"
                                                      for w in self.cfg.watch})

    async def _check_disk(self) -> None:
        for rule in self._of("disk_space"):
            targets: list[tuple[str, Path, PipelineRef | None, int | None, str]] = []
            if rule.scope == "all":
                targets.append(("data dir", self.cfg.data_dir, None, None, "daemon"))
            for w in self.cfg.watch:
                ref, project_id, label = await self._watch_ref(w)
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
            await self.manager.holds(rule, findings)

    async def _check_queue(self) -> None:
        rules = self._of("queue_stuck")
        if not rules:
            return
        now = self.clock()
        job = await self.store.call(Store.oldest_job)
        for rule in rules:
            findings = []
            if job is not None and job["since"] is not None and now - job["since"] >= dt.timedelta(minutes=limit_minutes(rule)):
                findings.append(Finding(
                    subject="queue", scope="daemon", project_id=None,
                    title=f"engine queue stuck: {job['stage']} of {job['run_name']} {job['state']} for {_dur(now - job['since'])}",
                    text=(f"The {job['stage']} stage of {job['run_name']} ({job['run_key']}) has been {job['state']} for"
                          f" {_dur(now - job['since'])} (limit {limit_minutes(rule):g} min). Is a tool hanging, or the"
                          f" engine stopped?\n  {self.base}/")))
            await self.manager.holds(rule, findings)


def _run_number(run_key: str) -> int:
    return run_id_of(run_key) or 0


def _dur(d: dt.timedelta) -> str:
    s = int(d.total_seconds())
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def global_rules(rules: Sequence[AlertRuleConfig]) -> list[AlertRuleConfig]:
    return [r for r in rules if r.condition in GLOBAL_CONDITIONS]
