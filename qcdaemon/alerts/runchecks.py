"""The checks on what the store records about runs: QC verdicts (a run's verdict; Panorama's
outliers in each of the last N runs), failed stages, and a stuck engine queue.

* ``verdict``: the stored run verdicts (``qc_verdicts``) computed since a cursor in the store, or
  verdicts pushed with :meth:`RunChecks.verdict_seen`; a later run that passes resolves.
* ``outliers``: the newest verdicts of each pipeline, at every check.
* ``stage_failed``: stages that failed since the last check (a cursor in the store, so a failure
  just before a crash is still reported after the restart); resolved when the same stage of a
  later run of the pipeline finishes.
* ``queue_stuck``: the oldest queued or running stage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from qcdaemon.alerts.conditions import PipelineRef, in_scope, limit_minutes, outliers_hold, reason_text, verdict_reasons
from qcdaemon.alerts.context import OVERLAP, AlertContext, dur, run_number
from qcdaemon.alerts.manager import Finding
from qcdaemon.config import AlertRuleConfig
from qcdaemon.store import Store


class RunChecks:
    def __init__(self, ctx: AlertContext) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        """Cursors start now: what happened before the first start is not news."""
        now = self.ctx.clock()
        for name in ("stage_failed", "verdict"):
            if await self.ctx.store.call(Store.alert_cursor, name) is None:
                await self.ctx.store.call(Store.set_alert_cursor, name, now)

    def steps(self) -> tuple[Callable[[], Awaitable[None]], ...]:
        return (self.stage_failures, self.verdicts, self.outliers, self.queue)

    # -- verdicts -------------------------------------------------------------------------------

    async def verdict_seen(self, run: Mapping[str, Any], verdict: Mapping[str, Any]) -> None:
        """One run's verdict ``{verdict, reasons[]}`` (``run``: run_key, run_name, project_slug,
        pipeline_slug, pipeline_uuid, project_id)."""
        ref = PipelineRef(run["project_slug"], run["pipeline_slug"], run.get("pipeline_uuid", ""))
        for rule in self.ctx.rules_of("verdict"):
            if not in_scope(rule, ref):
                continue
            subject = f"verdict:{ref.uuid or ref.label}"
            reasons = verdict_reasons(verdict, rule.severity)
            if reasons is None:
                if str(verdict.get("verdict")) == "pass" and await self._newer_than_failures(rule, subject, run):
                    await self.ctx.manager.resolve(rule, subject, f"{run['run_name']} ({run['run_key']}) passed")
                continue
            status = str(verdict.get("verdict"))
            lines = [f"{run['run_name']} ({run['run_key']}): verdict {status}"]
            lines += [f"  - {reason_text(r)}" for r in reasons[:8]]
            if len(reasons) > 8:
                lines.append(f"  - ... and {len(reasons) - 8} more reasons")
            lines.append("  " + self.ctx.run_link(ref, run["run_key"]))
            text = "\n".join(lines)
            finding = Finding(subject=subject, scope=ref.label, project_id=run.get("project_id"),
                              title=f"{ref.label}: QC {'failed' if rule.severity == 'fail' else 'warning or failure'}",
                              text=text, detail={"pipeline": ref.label, "reasons": reasons,
                                                 "run_number": run_number(run["run_key"])})
            await self.ctx.manager.occurred(rule, finding, f"{run['run_key']}", text)

    async def _newer_than_failures(self, rule: AlertRuleConfig, subject: str, run: Mapping[str, Any]) -> bool:
        """A pass resolves only when its run came after the failing ones (a recomputed old verdict does not)."""
        alert = await self.ctx.store.call(Store.alert_open_for, rule.name, subject)
        if alert is None:
            return False
        d = alert.get("detail")
        last = d.get("run_number") if isinstance(d, dict) else None
        return not isinstance(last, int) or run_number(run["run_key"]) > last

    async def verdicts(self) -> None:
        if not self.ctx.rules_of("verdict"):
            return
        since = await self.ctx.store.call(Store.alert_cursor, "verdict") or self.ctx.clock()
        rows = await self.ctx.store.call(Store.verdicts_since, since - OVERLAP)
        newest = since
        for row in rows:
            newest = max(newest, row["computed_at"])
            await self.verdict_seen(row, {"verdict": row["verdict"], "reasons": row["reasons"]})
        await self.ctx.store.call(Store.set_alert_cursor, "verdict", newest)

    async def outliers(self) -> None:
        rules = self.ctx.rules_of("outliers")
        if not rules:
            return
        pipelines = await self.ctx.store.call(Store.pipelines_with_verdicts)
        for rule in rules:
            findings = []
            for p in pipelines:
                ref = PipelineRef(p["project_slug"], p["pipeline_slug"], p["pipeline_uuid"])
                if not in_scope(rule, ref):
                    continue
                recent = await self.ctx.store.call(Store.recent_verdicts, int(p["pipeline_id"]), rule.runs)
                if outliers_hold(recent, rule.outliers, rule.runs, rule.severity):
                    runs = "\n".join(f"  {v['run_name']} ({v['run_key']}): {len(v['reasons'])} outliers: "
                                     + "; ".join(reason_text(r) for r in v["reasons"][:4]) for v in recent)
                    findings.append(Finding(
                        subject=f"outliers:{ref.uuid}", scope=ref.label, project_id=p["project_id"],
                        title=f"{ref.label}: at least {rule.outliers} outliers in each of the last {rule.runs} runs",
                        text=f"{runs}\n  {self.ctx.run_link(ref, recent[0]['run_key'])}"))
            await self.ctx.manager.holds(rule, findings)

    # -- stages ---------------------------------------------------------------------------------

    async def stage_failures(self) -> None:
        rules = self.ctx.rules_of("stage_failed")
        since = await self.ctx.store.call(Store.alert_cursor, "stage_failed") or self.ctx.clock()
        rows = await self.ctx.store.call(Store.failed_stages_since, since - OVERLAP)
        newest = since
        for row in rows:
            newest = max(newest, row["ended_at"])
            ref = PipelineRef(row["project_slug"], row["pipeline_slug"], row["pipeline_uuid"])
            for rule in rules:
                if not in_scope(rule, ref) or rule.stage not in ("", row["stage"]):
                    continue
                error = "\n".join((row["error"] or "no error text").strip().splitlines()[:4])[:600]
                text = (f"{row['run_name']} ({row['run_key']}): the {row['stage']} stage failed"
                        f" (attempt {row['attempts']})\n  {error}\n  {self.ctx.run_link(ref, row['run_key'])}")
                finding = Finding(
                    subject=f"stage:{ref.uuid}:{row['stage']}", scope=ref.label, project_id=row["project_id"],
                    title=f"{ref.label}: {row['stage']} stage failed", text=text,
                    detail={"pipeline_id": row["pipeline_id"], "stage": row["stage"],
                            "last_failed_at": row["ended_at"].isoformat(), "run_key": row["run_key"]})
                key = f"{row['run_key']}:{row['stage']}:{row['ended_at'].isoformat()}"
                await self.ctx.manager.occurred(rule, finding, key, text)
        await self.ctx.store.call(Store.set_alert_cursor, "stage_failed", newest)
        for rule in rules:  # a later success of the same stage in the pipeline resolves
            for a in await self.ctx.store.call(Store.alerts_open, rule.name):
                d = a.get("detail") or {}
                if not isinstance(d, dict) or "pipeline_id" not in d:
                    continue
                ok = await self.ctx.store.call(Store.stage_succeeded_after, int(d["pipeline_id"]), str(d["stage"]),
                                           dt.datetime.fromisoformat(str(d["last_failed_at"])))
                if ok is not None:
                    await self.ctx.manager.resolve(rule, a["subject"], f"{ok['run_name']} ({ok['run_key']}): the "
                                               f"{d['stage']} stage finished")

    async def queue(self) -> None:
        rules = self.ctx.rules_of("queue_stuck")
        if not rules:
            return
        now = self.ctx.clock()
        job = await self.ctx.store.call(Store.oldest_job)
        for rule in rules:
            findings = []
            if job is not None and job["since"] is not None and now - job["since"] >= dt.timedelta(minutes=limit_minutes(rule)):
                findings.append(Finding(
                    subject="queue", scope="daemon", project_id=None,
                    title=f"engine queue stuck: {job['stage']} of {job['run_name']} {job['state']} for {dur(now - job['since'])}",
                    text=(f"The {job['stage']} stage of {job['run_name']} ({job['run_key']}) has been {job['state']} for"
                          f" {dur(now - job['since'])} (limit {limit_minutes(rule):g} min). Is a tool hanging, or the"
                          f" engine stopped?\n  {self.ctx.base}/")))
            await self.ctx.manager.holds(rule, findings)
