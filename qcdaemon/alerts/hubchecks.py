"""The hub's check on its sources (issue 17): ``hub_unreachable``, a ``[[hub.source]]`` the hub
could not pull from for longer than the rule's ``minutes`` (default 30).

It reads what the hub's puller records per source after each pull (``ok``, and when not, the
``error``: the same dict ``/api/status`` shows as ``hub_sources``).  The outage counts from the
first check that found the source failing, on the alerts' own clock, kept in the store
(``hub_source_failures``) so that the alert's "since" and its timing survive a restart of the hub;
one alert per source, with the source, its address, the last error and since when, resolved (one
"Resolved" message) when a pull succeeds again.  A source not yet asked (``ok`` None, just after a
start) is not failing, but an alert left open by the previous run of the daemon stays open until
the source answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from qcdaemon.alerts.conditions import in_scope, limit_minutes, to_local
from qcdaemon.alerts.context import AlertContext, HubLike, dur
from qcdaemon.alerts.manager import Finding
from qcdaemon.store import Store


class HubChecks:
    def __init__(self, ctx: AlertContext, hub: HubLike | None) -> None:
        self.ctx = ctx
        self.hub = hub
        self.failing_since: dict[str, dt.datetime] | None = None  # read from the store at the first check
        self.urls = {s.name: s.url for s in ctx.cfg.hub.sources}

    def steps(self) -> tuple[Callable[[], Awaitable[None]], ...]:
        return (self.sources,)

    async def sources(self) -> None:
        if self.hub is None:
            return
        now = self.ctx.clock()
        status = dict(self.hub.status)
        failing = await self._failing(status, now)  # kept with no rule too: one added later starts right
        rules = [r for r in self.ctx.rules_of("hub_unreachable") if in_scope(r, None)]
        if not rules:
            return
        answering = {f"hub:{n}": "the source answers again" for n, st in status.items() if st.get("ok")}
        for rule in rules:
            limit = dt.timedelta(minutes=limit_minutes(rule))
            already = {a["subject"]: a for a in await self.ctx.store.call(Store.alerts_open, rule.name)}
            findings = []
            for name, st in sorted(status.items()):
                subject, since = f"hub:{name}", failing.get(name) if st.get("ok") is False else None
                if since is not None and (now - since >= limit or subject in already):  # a restart keeps it open
                    findings.append(self._finding(name, since, now, st, limit_minutes(rule)))
                elif st.get("ok") is None and subject in already:  # not asked yet since a start: as it was
                    a = already[subject]
                    findings.append(Finding(subject=subject, scope="hub", project_id=None, title=a["title"],
                                            text=a["message"]))
            await self.ctx.manager.holds(rule, findings, answering, otherwise="the source is no longer configured")

    async def _failing(self, status: Mapping[str, Mapping[str, Any]], now: dt.datetime) -> dict[str, dt.datetime]:
        """Since when each failing source has failed: recorded at the first check that finds it
        failing, forgotten when it answers (or is no longer configured); kept as it is while the
        source has not been asked since a start.  The store is written only when that changes."""
        if self.failing_since is None:
            self.failing_since = await self.ctx.store.read(Store.hub_failing)
        changes: dict[str, dt.datetime | None] = {}
        for name, st in status.items():
            if st.get("ok") is False and name not in self.failing_since:
                changes[name] = now
            elif st.get("ok") and name in self.failing_since:
                changes[name] = None
        changes |= {name: None for name in self.failing_since if name not in status}
        if changes:  # in the store first: a failed write is tried again at the next check
            await self.ctx.store.call(Store.set_hub_failing, changes)
            for name, since in changes.items():
                if since is None:
                    self.failing_since.pop(name, None)
                else:
                    self.failing_since[name] = since
        return self.failing_since

    def _finding(self, name: str, since: dt.datetime, now: dt.datetime, st: Mapping[str, Any],
                 minutes: float) -> Finding:
        url = self.urls.get(name, "")
        error = st.get("error") or "no answer"
        return Finding(
            subject=f"hub:{name}", scope="hub", project_id=None,
            title=f"hub: source {name} unreachable",
            text=(f"The hub has not been able to pull from its source {name} ({url}) since"
                  f" {to_local(since):%Y-%m-%d %H:%M} local time ({dur(now - since)}; limit {minutes:g} min)."
                  f" Last error: {error}. Its runs stay as last pulled; the other sources are pulled as usual."
                  " Is the instrument PC on, its qcdaemon running, and the hub's token for it still valid?\n"
                  f"  {self.ctx.base}/api/status"))
