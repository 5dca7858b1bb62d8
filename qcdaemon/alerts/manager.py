"""The alert lifecycle: open, count, notify once per burst, repeat at most every interval, resolve.

Everything lives in the store (an alert per rule and subject, its events, the outbox), so a restart
loses nothing and an acknowledgement made through the API or the CLI takes effect at the next tick.

* **Event conditions** (a run's verdict, a failed stage) are occurrences: :meth:`AlertManager.occurred`
  opens the alert of (rule, subject) or adds one event to it (each run counts once). The first
  message goes out once no new event came for ``[alerts] group_seconds`` (at the latest ten such
  windows after the first), so a burst of failures is one message with a count; later messages (at most every ``repeat_minutes``) say how many came since.
  A later success resolves the alert (:meth:`AlertManager.resolve`).
* **State conditions** (silence, stalled file, unreachable folder, disk space, stuck queue) hold or
  not at each check: :meth:`AlertManager.holds` opens alerts for the subjects that hold and
  resolves the rule's other open alerts. They repeat every ``repeat_minutes`` while they hold.
* **Notices** (the daemon restarted after a crash) are one message; the alert is recorded resolved.

Acknowledged alerts send no repeats (their resolution is still announced). Messages to a channel
in its quiet hours are held and sent as one digest after them (:mod:`qcdaemon.alerts.delivery`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from qcdaemon.alerts.conditions import EVENT_CONDITIONS, in_quiet_hours, to_local
from qcdaemon.config import AlertRuleConfig, Config
from qcdaemon.core.clock import utcnow
from qcdaemon.store import AsyncStore, Store

log = structlog.get_logger("qcdaemon.alerts")

Clock = Callable[[], dt.datetime]
MAX_LISTED = 10  # occurrences listed in one message; the rest are counted
GROUP_CAP = 10  # a burst that goes on is announced at the latest this many grouping windows after it began


@dataclass(frozen=True)
class Finding:
    """What a condition found about one subject (a pipeline and stage, a watched folder, a file...)."""

    subject: str  # stable key: the same subject again is the same alert
    scope: str  # instrument/pipeline ("lab-qc/exploris") or "daemon"
    project_id: int | None  # who may see it (None: admins only)
    title: str  # one line, without counts
    text: str  # the body: what, where, values against limits, link
    detail: Mapping[str, Any] = field(default_factory=dict)


def _fmt_time(t: dt.datetime) -> str:
    return to_local(t).strftime("%Y-%m-%d %H:%M") + " (local)"


class AlertManager:
    def __init__(self, store: AsyncStore, cfg: Config, *, clock: Clock = utcnow,
                 wake: Callable[[], None] | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.wake = wake or (lambda: None)
        self.rules = {r.name: r for r in cfg.alerts.rule}
        self.channels = {c.name: c for c in cfg.alerts.channel}

    def repeat_after(self, rule: AlertRuleConfig) -> dt.timedelta:
        return dt.timedelta(minutes=rule.repeat_minutes or self.cfg.alerts.repeat_minutes)

    # -- findings -------------------------------------------------------------------------------

    async def occurred(self, rule: AlertRuleConfig, finding: Finding, event_key: str, event_text: str) -> bool:
        """One occurrence of an event condition; False when this rule had already counted it."""
        now = self.clock()

        def work(store: Store) -> bool:
            if store.alert_event_known(rule.name, event_key):
                return False
            with store.transaction():
                alert = store.alert_open_for(rule.name, finding.subject)
                if alert is None:
                    alert = store.alert_create(rule=rule.name, condition=rule.condition, subject=finding.subject,
                                               scope=finding.scope, project_id=finding.project_id,
                                               title=finding.title, message=finding.text, detail=finding.detail,
                                               now=now)
                else:
                    store.alert_update(alert["id"], message=finding.text, detail=finding.detail)
                store.alert_event_add(alert["id"], rule.name, event_key, now, event_text)
            return True

        added = await self.store.call(work)
        if added:
            log.info("alert_event", rule=rule.name, subject=finding.subject, event_key=event_key)
        return added

    async def holds(self, rule: AlertRuleConfig, findings: Sequence[Finding],
                    cleared: Mapping[str, str] | None = None, otherwise: str = "the condition no longer holds") -> None:
        """The state condition ``rule`` holds for exactly ``findings`` now: open or refresh those,
        resolve the rule's other open alerts (with ``cleared[subject]``, else ``otherwise``, as the reason)."""
        now = self.clock()
        by_subject = {f.subject: f for f in findings}

        def work(store: Store) -> list[tuple[dict[str, Any], str]]:
            to_resolve = []
            with store.transaction():
                open_now = {a["subject"]: a for a in store.alerts_open(rule.name)}
                for subject, f in by_subject.items():
                    a = open_now.get(subject)
                    if a is None:
                        store.alert_create(rule=rule.name, condition=rule.condition, subject=subject, scope=f.scope,
                                           project_id=f.project_id, title=f.title, message=f.text, detail=f.detail,
                                           now=now, events=1)
                    else:
                        store.alert_update(a["id"], title=f.title, message=f.text, detail=f.detail, updated_at=now)
                for subject, a in open_now.items():
                    if subject not in by_subject:
                        to_resolve.append((a, (cleared or {}).get(subject, otherwise)))
            return to_resolve

        for alert, why in await self.store.call(work):
            await self._resolve(alert, why)

    async def resolve(self, rule: AlertRuleConfig, subject: str, why: str) -> bool:
        alert = await self.store.call(Store.alert_open_for, rule.name, subject)
        if alert is None:
            return False
        await self._resolve(alert, why)
        return True

    async def notice(self, rule: AlertRuleConfig, finding: Finding) -> None:
        """A one-off message (the alert is recorded already resolved)."""
        now = self.clock()

        def work(store: Store) -> None:
            with store.transaction():
                a = store.alert_create(rule=rule.name, condition=rule.condition, subject=finding.subject,
                                       scope=finding.scope, project_id=finding.project_id, title=finding.title,
                                       message=finding.text, detail=finding.detail, now=now, state="resolved",
                                       events=1)
                self._queue(store, a, rule, "notice", self._title(rule, finding.title), finding.text, now)
                store.alert_update(a["id"], last_notified_at=now, notified_events=1)

        await self.store.call(work)
        self.wake()

    async def _resolve(self, alert: dict[str, Any], why: str) -> None:
        now = self.clock()
        rule = self.rules.get(alert["rule"])

        def work(store: Store) -> None:
            with store.transaction():
                store.alert_update(alert["id"], state="resolved", resolved_at=now, updated_at=now)
                if rule is None:
                    return
                if alert["last_notified_at"] is None:
                    if alert["condition"] not in EVENT_CONDITIONS:
                        return  # a state that cleared before anyone was told: nothing to say
                    # failures that were not announced yet are, with the news that they are over
                    title, body = self._open_message(store, alert, rule)
                    self._queue(store, alert, rule, "open", title, body + f"\n\nResolved since: {why}", now)
                    return
                title = self._title(rule, "Resolved: " + alert["title"])
                body = (f"{alert['title']}\nResolved at {_fmt_time(now)}: {why}\n"
                        f"Open since {_fmt_time(alert['opened_at'])}; rule {rule.name} ({rule.condition}).")
                self._queue(store, alert, rule, "resolve", title, body, now)

        await self.store.call(work)
        log.info("alert_resolved", rule=alert["rule"], subject=alert["subject"], why=why)
        self.wake()

    # -- notifying ----------------------------------------------------------------------------------

    async def tick(self) -> int:
        """Queue the messages that are due (first message after the grouping window, repeats);
        returns how many alerts were announced."""
        now = self.clock()
        group = dt.timedelta(seconds=self.cfg.alerts.group_seconds)

        def work(store: Store) -> int:
            sent = 0
            for a in store.alerts_open():
                rule = self.rules.get(a["rule"])
                if rule is None:  # the rule left the configuration
                    store.alert_update(a["id"], state="resolved", resolved_at=now, updated_at=now)
                    continue
                if a["last_notified_at"] is None:
                    if a["condition"] in EVENT_CONDITIONS:
                        # a burst: wait until it has been quiet for the window (at most ten windows in all)
                        if now - a["updated_at"] < group and now - a["opened_at"] < GROUP_CAP * group:
                            continue
                    elif now - a["opened_at"] < group:
                        continue
                    title, body = self._open_message(store, a, rule)
                    kind = "open"
                elif a["acknowledged_at"] is not None or now - a["last_notified_at"] < self.repeat_after(rule):
                    continue
                elif a["condition"] in EVENT_CONDITIONS and a["events"] <= a["notified_events"]:
                    continue  # nothing new since the last message
                else:
                    title, body = self._repeat_message(store, a, rule)
                    kind = "repeat"
                with store.transaction():
                    self._queue(store, a, rule, kind, title, body, now)
                    store.alert_update(a["id"], last_notified_at=now, notified_events=a["events"])
                sent += 1
            return sent

        n = await self.store.call(work)
        if n:
            self.wake()
        return n

    def _title(self, rule: AlertRuleConfig, title: str) -> str:
        return f"[qcdaemon] {title}"

    def _open_message(self, store: Store, a: dict[str, Any], rule: AlertRuleConfig) -> tuple[str, str]:
        n = int(a["events"])
        if a["condition"] in EVENT_CONDITIONS:
            events = store.alert_events(a["id"], MAX_LISTED)
            count = f" ({n} runs)" if n > 1 else ""
            title = self._title(rule, a["title"] + count)
            lines = [f"{a['title']}: {n} run{'s' if n != 1 else ''} since {_fmt_time(a['opened_at'])}.",
                     f"Rule: {rule.name} ({rule.condition}); instrument/pipeline: {a['scope']}.", ""]
            lines += [e["text"] for e in events]
            if n > len(events):
                lines.append(f"... and {n - len(events)} more.")
            return title, "\n\n".join(lines[:2]) + "\n\n" + "\n\n".join(lines[3:])
        body = (f"{a['message']}\n\nRule: {rule.name} ({rule.condition}); {a['scope']}; "
                f"since {_fmt_time(a['opened_at'])}.")
        return self._title(rule, a["title"]), body

    def _repeat_message(self, store: Store, a: dict[str, Any], rule: AlertRuleConfig) -> tuple[str, str]:
        if a["condition"] in EVENT_CONDITIONS:
            new = int(a["events"]) - int(a["notified_events"])
            title = self._title(rule, f"{a['title']} ({new} more run{'s' if new != 1 else ''}, {a['events']} in all)")
            body = (f"{a['title']}: {new} more since {_fmt_time(a['last_notified_at'])}, {a['events']} in all since "
                    f"{_fmt_time(a['opened_at'])}.\nLatest: {a['message']}\n\nRule: {rule.name}; {a['scope']}. "
                    "Acknowledge the alert to stop these reminders.")
            return title, body
        body = (f"Still: {a['message']}\n\nOpen since {_fmt_time(a['opened_at'])}; rule {rule.name}; {a['scope']}. "
                "Acknowledge the alert to stop these reminders.")
        return self._title(rule, "Still: " + a["title"]), body

    def _queue(self, store: Store, alert: dict[str, Any], rule: AlertRuleConfig, kind: str, title: str, body: str,
               now: dt.datetime) -> None:
        local = to_local(now)
        for name in rule.channels:
            ch = self.channels.get(name)
            held = ch is not None and in_quiet_hours(local, ch.quiet_hours)
            store.delivery_add(alert["id"], name, kind, title, body, now, held=held)
        log.info("alert_message", rule=rule.name, subject=alert["subject"], kind=kind, channels=list(rule.channels))
