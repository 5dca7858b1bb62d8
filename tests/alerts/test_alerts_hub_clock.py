"""``hub_unreachable`` on the alerts' injected clock (issue 17), in process: the hub's real puller
(``HubPuller``, over a seeded world's real store) pulls from another seeded world served for real on
127.0.0.1, which is first down, then up; messages go through apprise to a real webhook on loopback.
The default limit (30 min) passes by moving the clock; a restart of the alerts component keeps an
open alert open until the source answers. The real daemons: ``test_alerts_hub_source.py``."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from conftest import ADMIN, World
from liveserver import free_port, live_server
from receivers import Webhook
from test_alerts_unit import Clock

from qcdaemon.alerts import AlertsComponent
from qcdaemon.alerts.conditions import to_local
from qcdaemon.config import Config
from qcdaemon.core.clock import utcnow
from qcdaemon.hubcfg import HubConfig, HubSource
from qcdaemon.server.hub import HubPuller
from qcdaemon.store import Store


async def _messages(hook: Webhook, n: int) -> list[dict[str, Any]]:
    for _ in range(300):
        if len(hook.received()) >= n:
            break
        await asyncio.sleep(0.1)
    return hook.received()


async def _recorded(hub: World, clock: Clock) -> None:
    """Wait until the outbox has recorded its deliveries (a stop before that sends them again)."""
    for _ in range(300):
        if not await hub.store.call(Store.deliveries_due, clock.now):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the outbox did not record its deliveries")


async def _step(puller: HubPuller, comp: AlertsComponent) -> None:
    await puller.pull_all()
    await comp.check()


async def _hub_of(world_factory: Callable[..., Awaitable[World]], source: World, hook: Webhook
                 ) -> tuple[World, str, Config]:
    """A hub world with a hub_unreachable rule to ``hook`` and ``source`` as its one [[hub.source]]."""
    hub = await world_factory(alerts={
        "group_seconds": 0.0, "channel": [{"name": "hook", "url": hook.url}],
        "rule": [{"name": "hub-sources", "condition": "hub_unreachable", "channels": ["hook"]}]})
    url = f"http://127.0.0.1:{source.cfg.server.port}"
    cfg = dataclasses.replace(hub.cfg, hub=HubConfig(
        sources=(HubSource("orbi-a", url, token=await source.token(ADMIN)),), timeout_seconds=5))
    return hub, url, cfg


async def test_hub_unreachable_opens_after_30_minutes_stays_open_across_a_restart_and_resolves(
        world_factory: Callable[..., Awaitable[World]]) -> None:
    source = await world_factory(server={"port": free_port()})
    hook = Webhook().up()
    try:
        hub, url, cfg = await _hub_of(world_factory, source, hook)
        clock = Clock(utcnow())
        down_at = clock.now
        puller = HubPuller(hub.svc, cfg)
        async with AlertsComponent(hub.store, cfg, clock=clock, hub=puller) as comp:
            await _step(puller, comp)  # the source is down from the first pull
            assert puller.status["orbi-a"]["ok"] is False
            clock.advance(minutes=29)
            await _step(puller, comp)
            assert await hub.store.call(Store.alerts_open) == []  # within the default 30 minutes: quiet
            clock.advance(minutes=2)
            await _step(puller, comp)
            [opened] = await _messages(hook, 1)
            await _recorded(hub, clock)
        assert opened["title"] == "[qcdaemon] hub: source orbi-a unreachable"
        body = opened["message"]
        assert f"source orbi-a ({url}) since {to_local(down_at):%Y-%m-%d %H:%M}" in body
        assert "(31 min; limit 30 min)" in body and "Last error: Cannot connect to host 127.0.0.1:" in body, body

        # the hub restarts (a new puller that has not asked yet, new checks): the alert stays open
        puller = HubPuller(hub.svc, cfg)
        async with AlertsComponent(hub.store, cfg, clock=clock, hub=puller) as comp:
            await comp.check()
            clock.advance(minutes=10)
            await _step(puller, comp)  # failing again, for less than the limit since this start
            [alert] = await hub.store.call(Store.alerts_open)
            assert alert["subject"] == "hub:orbi-a"
            await asyncio.sleep(1)  # a moment for the outbox: nothing more is sent
            assert len(hook.received()) == 1  # no repeat before repeat_minutes, no "Resolved"

            async with live_server(source):  # the source is back
                clock.advance(minutes=1)
                await _step(puller, comp)
                assert puller.status["orbi-a"]["ok"] is True
                calls = await _messages(hook, 2)
        assert len(calls) == 2, [c["title"] for c in calls]
        assert calls[1]["title"] == "[qcdaemon] Resolved: hub: source orbi-a unreachable"
        assert "the source answers again" in calls[1]["message"]
        assert await hub.store.call(Store.alerts_open) == []
    finally:
        hook.down()


async def test_the_outage_start_survives_a_restart_of_the_hub(world_factory: Callable[..., Awaitable[World]]) -> None:
    """Down for 20 minutes, the hub restarts (a new puller and new checks, the same store), down 11
    more: the alert opens then, 31 minutes after the first failed check, and says since when."""
    source = await world_factory(server={"port": free_port()})
    hook = Webhook().up()
    try:
        hub, url, cfg = await _hub_of(world_factory, source, hook)
        clock = Clock(utcnow())
        down_at = clock.now
        puller = HubPuller(hub.svc, cfg)
        async with AlertsComponent(hub.store, cfg, clock=clock, hub=puller) as comp:
            await _step(puller, comp)  # the first check that finds it failing
            clock.advance(minutes=20)
            await _step(puller, comp)
        assert await hub.store.read(Store.hub_failing) == {"orbi-a": down_at}

        puller = HubPuller(hub.svc, cfg)
        async with AlertsComponent(hub.store, cfg, clock=clock, hub=puller) as comp:
            await comp.check()  # not asked yet since the start: nothing changes
            assert await hub.store.read(Store.hub_failing) == {"orbi-a": down_at}
            clock.advance(minutes=9)
            await _step(puller, comp)  # 29 minutes since the first failure: quiet
            assert await hub.store.call(Store.alerts_open) == []
            clock.advance(minutes=2)
            await _step(puller, comp)
            [opened] = await _messages(hook, 1)
            assert f"source orbi-a ({url}) since {to_local(down_at):%Y-%m-%d %H:%M}" in opened["message"]
            assert "(31 min; limit 30 min)" in opened["message"], opened["message"]

            async with live_server(source):  # it answers: the outage is forgotten, the alert resolved
                clock.advance(minutes=1)
                await _step(puller, comp)
                calls = await _messages(hook, 2)
            assert calls[1]["title"] == "[qcdaemon] Resolved: hub: source orbi-a unreachable"
            assert await hub.store.read(Store.hub_failing) == {}
            await _recorded(hub, clock)
    finally:
        hook.down()
