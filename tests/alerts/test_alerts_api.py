"""``/api/alerts``, ``/api/alerts/ack``, the home page's Acknowledge form and ``/metrics`` on a real
server over a seeded world: who sees and acknowledges which alert, bad input, metrics access."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Awaitable, Callable
from typing import Any

from conftest import (
    ADMIN,
    DEMO_PROJECT,
    DEMO_USER,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    OTHER_PIPELINE,
    OTHER_PROJECT,
    Api,
    Browser,
    World,
)

from qcdaemon.alerts import AlertManager, Finding
from qcdaemon.store import Store

ALERTS = {
    "channel": [{"name": "hook", "url": "json://127.0.0.1:9/never"}],
    "rule": [{"name": "stage-failures", "condition": "stage_failed", "channels": ["hook"]},
             {"name": "crash", "condition": "queue_stuck", "channels": ["hook"]}],
}


async def seeded(world_factory: Callable[..., Awaitable[World]], **sections: Any) -> tuple[World, dict[str, int]]:
    w = await world_factory(alerts=ALERTS, **sections)
    m = AlertManager(w.store, w.cfg)
    rule, stuck = w.cfg.alerts.rule
    ids: dict[str, int] = {}
    for name, project, pipeline in (("demo", DEMO_PROJECT, LAB_PIPELINE), ("other", OTHER_PROJECT, OTHER_PIPELINE)):
        p = w.pipeline(project, pipeline)
        f = Finding(subject=f"stage:{p['uuid']}:native", scope=f"{project}/{pipeline}", project_id=p["project_id"],
                    title=f"{project}/{pipeline}: native stage failed", text="x.raw (rf1): truncated")
        await m.occurred(rule, f, f"{name}-1", "x.raw (rf1): truncated")
        ids[name] = (await w.store.call(Store.alert_open_for, rule.name, f.subject))["id"]
    await m.holds(stuck, [Finding(subject="queue", scope="daemon", project_id=None, title="queue stuck", text="...")])
    ids["daemon"] = (await w.store.call(Store.alert_open_for, stuck.name, "queue"))["id"]
    return w, ids


async def test_alerts_are_scoped_like_every_read(world_factory: Any, make_api: Any) -> None:
    w, ids = await seeded(world_factory)
    api: Api = await make_api(w)
    seen = {who: {a["id"] for a in (await api.ok("/api/alerts", {}, who=who))["alerts"]}
            for who in (ADMIN, DEMO_USER, OTHER)}
    assert seen == {ADMIN: set(ids.values()), DEMO_USER: {ids["demo"]}, OTHER: {ids["other"]}}
    body = await api.ok("/api/alerts", {"project": DEMO_PROJECT}, who=ADMIN)
    assert [a["id"] for a in body["alerts"]] == [ids["demo"]]
    assert [r["name"] for r in body["rules"]] == ["stage-failures", "crash"]
    assert body["channels"][0]["name"] == "hook" and "target" in body["channels"][0]
    assert "target" not in (await api.ok("/api/alerts", {}, who=DEMO_USER))["channels"][0]  # admins only
    assert (await api.call("/api/alerts", {}, who=None)).status == 401
    for bad in ({"state": "bogus"}, {"limit": "many"}, {"limit": -1}):
        r = await api.call("/api/alerts", bad, who=ADMIN)
        assert r.status == 400 and "detail" in r.data, (bad, r.status, r.text)


async def test_acknowledge_needs_a_member_of_the_alerts_project(world_factory: Any, make_api: Any) -> None:
    w, ids = await seeded(world_factory)
    api: Api = await make_api(w)
    r = await api.call("/api/alerts/ack", {"alert": ids["demo"]}, who=OTHER)
    assert r.status == 404  # not theirs to see
    r = await api.call("/api/alerts/ack", {"alert": ids["daemon"]}, who=MEMBER)
    assert r.status == 404  # the daemon's own alerts are for admins
    assert (await api.call("/api/alerts/ack", {"alert": "one"}, who=MEMBER)).status == 400
    assert (await api.call("/api/alerts/ack", {}, who=MEMBER)).status == 400
    a = await api.ok("/api/alerts/ack", {"alert": ids["demo"]}, who=MEMBER)
    assert a["acknowledged_by"] == MEMBER and a["acknowledged_at"]
    again = await api.ok("/api/alerts/ack", {"alert": ids["demo"]}, who=ADMIN)
    assert again["acknowledged_by"] == MEMBER  # the first acknowledgement stays
    assert (await api.ok("/api/alerts/ack", {"alert": ids["daemon"]}, who=ADMIN))["acknowledged_by"] == ADMIN


async def test_home_page_lists_open_alerts_with_an_acknowledge_form(world_factory: Any, make_api: Any,
                                                                  browsers: Callable[[Api], Browser]) -> None:
    w, ids = await seeded(world_factory)
    api: Api = await make_api(w)
    b = browsers(api)
    await b.login(MEMBER)
    page = (await b.get("/")).text
    assert "Open alerts" in page and html.escape(f"{DEMO_PROJECT}/{LAB_PIPELINE}: native stage failed") in page
    assert "queue stuck" not in page  # not the member's to see
    assert f'name="alert" value="{ids["demo"]}"' in page
    r = await b.post("/alerts/ack", data={"alert": str(ids["demo"]), "csrfmiddlewaretoken": b.csrf or ""},
                     headers={"Referer": b.base})
    assert r.status == 302
    alert = await w.store.call(Store.alert, ids["demo"])
    assert alert is not None and alert["acknowledged_by"] == MEMBER
    assert "acknowledged by" in (await b.get("/")).text
    r = await b.post("/alerts/ack", data={"alert": str(ids["other"]), "csrfmiddlewaretoken": b.csrf or ""},
                     headers={"Referer": b.base})
    assert r.status == 404
    r = await b.post("/alerts/ack", data={"alert": str(ids["demo"])}, headers={"Referer": b.base})
    assert r.status == 403  # no CSRF token


async def test_status_and_home_page_show_a_failing_channel(world_factory: Any, make_api: Any,
                                                          browsers: Callable[[Api], Browser]) -> None:
    w, _ = await seeded(world_factory)
    api: Api = await make_api(w)
    now = dt.datetime(2026, 1, 1, 10, 0)
    did = await w.store.call(Store.delivery_add, None, "hook", "test", "t", "b", now)
    for i in range(3):
        await w.store.call(Store.delivery_record, did, ok=False, error="connection refused",
                           now=now + dt.timedelta(minutes=i), retry_at=now + dt.timedelta(hours=1))
    [ch] = (await api.ok("/api/status", method="GET", who=ADMIN))["alert_channels"]
    assert ch["state"] == "failing" and ch["consecutive_failures"] == 3 and ch["last_error"] == "connection refused"
    b = browsers(api)
    await b.login(ADMIN)
    assert "Alert channel <b>hook</b> is failing: 3 failed attempts in a row" in (await b.get("/")).text
    await w.store.call(Store.delivery_record, did, ok=True, error=None, now=now + dt.timedelta(minutes=5), retry_at=None)
    [ch] = (await api.ok("/api/status", method="GET", who=DEMO_USER))["alert_channels"]
    assert ch["state"] == "ok" and ch["consecutive_failures"] == 0


async def test_metrics_loopback_or_token(world_factory: Any, make_api: Any, monkeypatch: Any) -> None:
    w, _ = await seeded(world_factory)
    api: Api = await make_api(w)
    r = await api.call("/metrics", method="GET", who=None)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert 'qcdaemon_alerts_open{rule="stage-failures"} 2.0' in r.text
    assert 'qcdaemon_runs{state="done"}' in r.text and "qcdaemon_queue_stages" in r.text
    monkeypatch.setenv("QCD_TEST_METRICS_TOKEN", "s3cret-metrics")
    w2 = await world_factory(metrics={"token_env": "QCD_TEST_METRICS_TOKEN"})
    api2: Api = await make_api(w2)
    assert (await api2.call("/metrics", method="GET", who=None)).status == 401
    r = await api2.call("/metrics", method="GET", who=None, headers={"Authorization": "Bearer s3cret-metrics"})
    assert r.status == 200 and "qcdaemon_info" in r.text
    w3 = await world_factory(metrics={"enabled": False})
    assert (await (await make_api(w3)).call("/metrics", method="GET", who=None)).status == 404
