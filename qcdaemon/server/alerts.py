"""Alerts over HTTP: ``POST /api/alerts``, ``POST /api/alerts/ack``, the home page's alert table with
its acknowledge form (``POST /alerts/ack``), and ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

import datetime as dt
import hmac
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.process_collector import ProcessCollector

from qcdaemon import __version__
from qcdaemon.alerts import ops
from qcdaemon.core.net import is_loopback
from qcdaemon.errors import Forbidden, NotFound, Unauthorized
from qcdaemon.server.body import read_body, read_form
from qcdaemon.server.jsonout import json_response
from qcdaemon.server.keys import AUTH_KIND, CONFIG, SERVICE, STATE, USER
from qcdaemon.server.middleware import check_csrf, require_user
from qcdaemon.store import Store


async def api_alerts(request: web.Request) -> web.Response:
    """``{alerts: [...], rules: [...], channels: [...]}``; see docs/api.md."""
    body = await read_body(request)
    user = require_user(request)
    svc = request.app[SERVICE]
    cfg = request.app[CONFIG]
    limit = body.int_or_none("limit")
    alerts = await ops.list_alerts(svc.store, cfg, user, project=body.text("project"), pipeline=body.text("pipeline"),
                                   state=body.text("state"), limit=100 if limit is None else limit)
    return json_response({
        "alerts": alerts,
        "rules": ops.rules_listing(cfg),
        "channels": await ops.channel_status(svc.store, cfg, details=bool(user["is_admin"])),
    })


async def api_alert_ack(request: web.Request) -> web.Response:
    body = await read_body(request)
    user = require_user(request)
    alert = body.text("alert", required=True)
    return json_response(await ops.acknowledge(request.app[SERVICE].store, user, alert))


async def page_alert_ack(request: web.Request) -> web.StreamResponse:
    """The home page's Acknowledge button (form: ``alert``, ``csrfmiddlewaretoken``): 302 to ``/``."""
    form = await read_form(request)
    user = request[USER]
    if user is None:
        raise Unauthorized("Authentication credentials were not provided.")
    if request[AUTH_KIND] == "session":
        token = form.get("csrfmiddlewaretoken")
        check_csrf(request, token if isinstance(token, str) else None)
    await ops.acknowledge(request.app[SERVICE].store, user, form.get("alert"))
    return web.Response(status=302, headers={"Location": "/"})


async def home_section(request: web.Request, user: Mapping[str, Any], csrf: str) -> str:
    """Open alerts the user may see, each with an Acknowledge button, and channels that keep failing."""
    svc = request.app[SERVICE]
    cfg = request.app[CONFIG]
    if not cfg.alerts.rule:
        return ""
    alerts = await ops.list_alerts(svc.store, cfg, user, state="open", limit=50)
    parts = ["<h2>Open alerts</h2>"]
    failing = [c for c in await ops.channel_status(svc.store, cfg, details=False) if c["state"] == "failing"]
    for c in failing:
        parts.append(f"<p class=failed>Alert channel <b>{html.escape(c['name'])}</b> is failing: "
                     f"{c['consecutive_failures']} failed attempts in a row, {c['waiting']} messages waiting.</p>")
    if not alerts:
        parts.append("<p class=muted>None.</p>")
        return "".join(parts)
    parts.append("<table><tr><th>Alert</th><th>Rule</th><th>Since (UTC)</th><th>Count</th><th></th></tr>")
    for a in alerts:
        ack = (f"acknowledged by {html.escape(a['acknowledged_by'] or '')}" if a["acknowledged_at"] else
               '<form class=inline method="post" action="/alerts/ack">'
               f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf)}">'
               f'<input type="hidden" name="alert" value="{int(a["id"])}">'
               '<button type="submit">Acknowledge</button></form>')
        parts.append(f"<tr><td class=failed title=\"{html.escape(a['message'])}\">{html.escape(a['title'])}</td>"
                     f"<td>{html.escape(a['rule'])}</td><td>{html.escape(str(a['opened_at'])[:19])}</td>"
                     f"<td>{int(a['events'])}</td><td>{ack}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


# -- /metrics -------------------------------------------------------------------------------------


def _metrics_token(request: web.Request) -> str:
    m = request.app[CONFIG].metrics
    if m.token_env:
        return os.environ.get(m.token_env, "").strip()
    if m.token_file:
        try:
            return Path(m.token_file).read_text(encoding="utf-8").strip()
        except OSError:
            return ""
    return ""


def _check_scraper(request: web.Request) -> None:
    """From loopback without a token; with ``[metrics] token_file`` or ``token_env`` set, only with
    ``Authorization: Bearer <token>`` (from anywhere)."""
    cfg = request.app[CONFIG]
    if not cfg.metrics.enabled:
        raise NotFound("Not Found")
    token = _metrics_token(request)
    if token:
        given = request.headers.get("Authorization", "").partition(" ")[2].strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("/metrics needs 'Authorization: Bearer <metrics token>'.")
    elif cfg.metrics.token_file or cfg.metrics.token_env:
        raise Forbidden("/metrics: the configured metrics token is missing or empty")
    elif not is_loopback(request.remote):
        raise Forbidden("/metrics answers loopback only; set [metrics] token_file or token_env for remote scrapes")


def _work_families(snap: Mapping[str, Any], depth: Mapping[str, int]) -> list[Any]:
    """The queue, the runs by state, the durations of finished stages."""
    g = GaugeMetricFamily("qcdaemon_queue_stages", "Stages queued or running", labels=["state"])
    for k in ("queued", "running"):
        g.add_metric([k], depth.get(k, 0))
    runs = GaugeMetricFamily("qcdaemon_runs", "Runs by state", labels=["state"])
    for k, n in sorted(snap["runs"].items()):
        runs.add_metric([k], n)
    s = SummaryMetricFamily("qcdaemon_stage_duration_seconds", "Duration of finished stages", labels=["stage"])
    for d in snap["stage_durations"]:
        s.add_metric([d["stage"]], count_value=d["count"], sum_value=d["seconds"])
    return [g, runs, s]


def _watch_families(status: Mapping[str, Any]) -> list[Any]:
    """When each watched folder last showed a file, and whether it can be read."""
    g = GaugeMetricFamily("qcdaemon_watch_last_file_seen_timestamp_seconds",
                          "When each watched folder last showed a new or changed file (epoch s; 0 = not yet)",
                          labels=["path", "pipeline"])
    up = GaugeMetricFamily("qcdaemon_watch_reachable", "1 when the watched folder can be read", labels=["path", "pipeline"])
    for w in status.get("watched_folders", []):
        seen = w.get("last_seen_at")
        ts = dt.datetime.fromisoformat(seen).timestamp() if isinstance(seen, str) else 0.0
        g.add_metric([str(w.get("path")), str(w.get("pipeline"))], ts)
        up.add_metric([str(w.get("path")), str(w.get("pipeline"))], 1.0 if w.get("exists") and not w.get("error") else 0.0)
    return [g, up]


def _alert_families(rules: Sequence[str], snap: Mapping[str, Any], channels: list[dict[str, Any]]) -> list[Any]:
    """Open alerts by rule, deliveries waiting, failing channels."""
    g = GaugeMetricFamily("qcdaemon_alerts_open", "Open alerts by rule", labels=["rule"])
    for rule in rules:
        g.add_metric([rule], snap["open_alerts"].get(rule, 0))
    waiting = GaugeMetricFamily("qcdaemon_alert_deliveries_waiting", "Alert messages not yet delivered",
                                value=snap["deliveries_waiting"])
    failing = GaugeMetricFamily("qcdaemon_alert_channel_failing", "1 when the channel keeps failing", labels=["channel"])
    for c in channels:
        failing.add_metric([c["name"]], 1.0 if c["state"] == "failing" else 0.0)
    return [g, waiting, failing]


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (who may scrape: :func:`_check_scraper`)."""
    _check_scraper(request)
    cfg = request.app[CONFIG]
    svc = request.app[SERVICE]
    snap = await svc.store.call(Store.metrics_snapshot)
    depth = await svc.store.call(Store.queue_depth)
    state = request.app[STATE]
    status = await state["status"]() if state.get("status") is not None else {}
    reg = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=reg)  # the daemon's own CPU, memory, open files (Linux /proc)
    gauges: list[Any] = [
        *_work_families(snap, depth),
        *_watch_families(status),
        *_alert_families([r.name for r in cfg.alerts.rule], snap,
                         await ops.channel_status(svc.store, cfg, details=False)),
    ]
    info = GaugeMetricFamily("qcdaemon_info", "Version of the running daemon", labels=["version"])
    info.add_metric([__version__], 1)
    gauges.append(info)
    started = state.get("started")
    if isinstance(started, (int, float)):
        gauges.append(GaugeMetricFamily("qcdaemon_start_time_seconds", "Start time (epoch s)", value=started))

    class _Fixed:
        def collect(self) -> list[Any]:
            return gauges

    reg.register(_Fixed())
    return web.Response(body=generate_latest(reg), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/alerts", api_alerts)
    app.router.add_post("/api/alerts/ack", api_alert_ack)
    app.router.add_post("/alerts/ack", page_alert_ack)
    app.router.add_get("/metrics", metrics)


__all__ = ["add_routes", "home_section"]
