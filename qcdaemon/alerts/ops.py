"""The alert use cases behind the API, the CLI and the home page: list (scoped like every read of
the contract), acknowledge, test a channel, channel health. ``user`` None is the local admin (CLI)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from qcdaemon.alerts.delivery import Sender, apprise_send, channel_url, describe_channel, scrub
from qcdaemon.config import Config
from qcdaemon.core.clock import utcnow
from qcdaemon.errors import BadRequest, NotFound
from qcdaemon.store import AsyncStore, Store

STATES = ("open", "resolved")


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.datetime) else v


def _public(a: dict[str, Any]) -> dict[str, Any]:
    out = {k: _iso(v) for k, v in a.items() if k not in ("deliveries", "project_id")}
    out["deliveries"] = [
        {**{k: _iso(v) for k, v in d.items() if k != "attempts_log"},
         "attempts_log": [{k: _iso(v) for k, v in x.items()} for x in d.get("attempts_log", [])]}
        for d in a.get("deliveries", [])
    ]
    return out


async def _visible_ids(store: AsyncStore, user: Mapping[str, Any] | None) -> list[int] | None:
    if user is None or user.get("is_admin"):
        return None
    return [int(p["id"]) for p in await store.call(Store.visible_projects, user)]  # type: ignore[arg-type]


async def list_alerts(store: AsyncStore, cfg: Config, user: Mapping[str, Any] | None, *, project: str | None = None,
                      pipeline: str | None = None, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Alerts newest first, with their deliveries and every attempt. Non-admins see the alerts of the
    projects they see; alerts about the daemon itself (no project) are for admins."""
    if state is not None and state not in STATES:
        raise BadRequest(f"state: expected one of {', '.join(STATES)}, got {state!r}")
    if limit < 0:
        raise BadRequest("limit: must not be negative")
    ids = await _visible_ids(store, user)
    rows = await store.call(Store.alerts_list, ids, state=state, limit=min(limit, 1000))
    if project:
        rows = [r for r in rows if r["scope"].split("/", 1)[0] == project]
    if pipeline:
        rows = [r for r in rows if r["scope"].split("/", 1)[-1] == pipeline]
    return [_public(r) for r in rows]


async def acknowledge(store: AsyncStore, user: Mapping[str, Any] | None, alert_id: Any,
                      *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Mark an alert acknowledged: it sends no more reminders. A member of the alert's project may
    acknowledge it (as a member may annotate); alerts about the daemon need an admin."""
    try:
        aid = int(alert_id)
    except (TypeError, ValueError):
        raise BadRequest(f"alert: expected an alert id (a whole number), got {str(alert_id)[:40]!r}") from None
    alert = await store.call(Store.alert, aid)
    ids = await _visible_ids(store, user)
    if alert is None or (ids is not None and alert["project_id"] not in ids):
        raise NotFound(f"alert {aid} does not exist")
    who = user["email"] if user is not None else "local admin (CLI)"
    row = await store.call(Store.alert_acknowledge, aid, who, now or utcnow())
    return _public(row)


def rules_listing(cfg: Config) -> list[dict[str, Any]]:
    return [{"name": r.name, "condition": r.condition, "scope": r.scope, "project": r.project or None,
             "pipeline": r.pipeline or None, "channels": list(r.channels)} for r in cfg.alerts.rule]


async def channel_status(store: AsyncStore, cfg: Config, *, details: bool = True) -> list[dict[str, Any]]:
    """Every configured channel: ok / failing (``failing_after`` failed attempts in a row) / unused,
    messages waiting; with ``details`` also the kind and host and the last error (no secrets)."""
    health = {h["channel"]: h for h in await store.call(Store.channel_health)}
    out = []
    for ch in cfg.alerts.channel:
        h = health.get(ch.name)
        fails = h["consecutive_failures"] if h else 0
        item: dict[str, Any] = {
            "name": ch.name,
            "state": "unused" if h is None else ("failing" if fails >= cfg.alerts.failing_after else "ok"),
            "consecutive_failures": fails,
            "waiting": h["waiting"] if h else 0,
            "last_ok_at": _iso(h["last_ok_at"]) if h else None,
            "quiet_hours": ch.quiet_hours or None,
        }
        if details:
            item["target"] = describe_channel(ch)
            item["last_error"] = h["last_error"] if h and fails else None
        out.append(item)
    return out


async def test_channel(store: AsyncStore, cfg: Config, name: str, *, sender: Sender = apprise_send) -> dict[str, Any]:
    """Send a test message to one channel now; the attempt is recorded like any other."""
    ch = next((c for c in cfg.alerts.channel if c.name == name), None)
    if ch is None:
        known = ", ".join(c.name for c in cfg.alerts.channel) or "none configured"
        raise NotFound(f"no alert channel {name!r} (channels: {known})")
    now = utcnow()
    title = "[qcdaemon] test message"
    body = (f"This is a test of the alert channel {name!r} of qcdaemon (data in {cfg.data_dir}), sent at "
            f"{now:%Y-%m-%d %H:%M:%S} UTC. If you read this, alerts reach you here.")
    did = await store.call(Store.delivery_add, None, name, "test", title, body, now)
    url = channel_url(ch)
    try:
        error = await asyncio.to_thread(sender, url, title, body)
    except Exception as exc:
        error = scrub(f"{type(exc).__name__}: {exc}", url)
    await store.call(Store.delivery_record, did, ok=error is None, error=error, now=utcnow(), retry_at=None)
    return {"channel": name, "target": describe_channel(ch), "sent": error is None, "error": error}
