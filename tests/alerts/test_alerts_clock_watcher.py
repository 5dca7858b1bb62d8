"""The clock-dependent conditions with the real watcher: a real FolderWatcher (watchdog) on a real
folder tells the alerts component what it sees, the store is a real DuckDB file, and messages go
through apprise to a real webhook on 127.0.0.1. Only the alerts' clock is injected, so SprayQc's
limits (no new RAW file for 2 hours, a RAW file that has not grown for 30 minutes: the defaults)
pass in a moment instead of being waited for."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from receivers import Webhook
from test_alerts_unit import Clock as UnitClock

from qcdaemon.alerts import AlertsComponent
from qcdaemon.config import config_from_dict
from qcdaemon.core.clock import utcnow
from qcdaemon.store import AsyncStore, Store
from qcdaemon.watcher import FolderWatcher


class Clock(UnitClock):
    """The alerts' injected clock, also as the watcher's nanosecond clock."""

    def ns(self) -> int:
        return int(self.now.replace(tzinfo=dt.UTC).timestamp() * 1e9)


@pytest.fixture
def hook() -> Any:
    h = Webhook().up()
    yield h
    h.down()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncStore]:
    s = AsyncStore(tmp_path / "data" / "qcdaemon.duckdb")
    yield s
    s.close()


@pytest.fixture
async def lab(tmp_path: Path, store: AsyncStore, hook: Webhook) -> AsyncIterator[tuple[Any, ...]]:
    inst = tmp_path / "instrument"
    inst.mkdir()
    cfg = config_from_dict({
        "paths": {"data_dir": str(tmp_path / "data")},
        # never settles while the test runs: every file is an acquisition in progress
        "watch": [{"path": str(inst), "pipeline": "lab-qc/exploris", "owner": "op@lab.org", "settle_seconds": 600}],
        "alerts": {"group_seconds": 0.0, "channel": [{"name": "hook", "url": hook.url}],
                   "rule": [{"name": "silent", "condition": "silence", "channels": ["hook"]},
                            {"name": "stalled", "condition": "stalled", "channels": ["hook"]}]},
    })

    async def nothing(ev: Any) -> None:
        pass

    watcher = FolderWatcher(cfg.watch, nothing)
    await watcher.start()
    clock = Clock(utcnow())
    try:
        async with AlertsComponent(store, cfg, watcher=watcher, clock=clock) as comp:
            yield inst, watcher, clock, comp
    finally:
        await watcher.stop()


async def open_rules(store: AsyncStore) -> list[str]:
    return sorted(a["rule"] for a in await store.call(Store.alerts_open))


async def test_silence_opens_after_two_hours_and_a_new_file_resolves_it(lab: Any, store: AsyncStore,
                                                                       hook: Webhook) -> None:
    inst, watcher, clock, comp = lab
    clock.advance(minutes=119)
    await comp.check()
    assert await open_rules(store) == []
    clock.advance(minutes=2)
    await comp.check()
    assert await open_rules(store) == ["silent"]
    await comp.outbox.deliver_due()  # (or the outbox worker, woken, sent it first)
    [opened] = hook.received()
    assert opened["title"] == "[qcdaemon] lab-qc/exploris: no new RAW file for 2 h 1 min"
    assert str(inst) in opened["message"] and "limit 120 min" in opened["message"]

    new = inst / "QC_HeLa_001.raw"  # written now on the injected clock, as the instrument's PC would
    new.write_bytes(b"\0" * 1000)
    os.utime(new, ns=(clock.ns(), clock.ns()))
    await watcher.sweep()
    await comp.check()
    assert await open_rules(store) == []
    await comp.outbox.deliver_due()  # (or the outbox worker, woken, sent it first)
    resolved = hook.received()[1]
    assert resolved["title"].startswith("[qcdaemon] Resolved:") and "QC_HeLa_001.raw" in resolved["message"]


async def test_a_file_that_stops_growing_for_30_minutes_opens_a_stalled_acquisition_alert(
        lab: Any, store: AsyncStore, hook: Webhook) -> None:
    inst, watcher, clock, comp = lab
    growing = inst / "QC_HeLa_002.raw"
    with growing.open("wb") as f:
        f.write(b"\0" * 2_000_000)
        f.flush()
        await watcher.sweep()  # first seen
        clock.advance(minutes=1)
        f.write(b"\0" * 1_000_000)
        f.flush()
        await watcher.sweep()  # it grew: an acquisition in progress
        clock.advance(minutes=29)
        await comp.check()
        assert await open_rules(store) == []  # 29 minutes without growth: within the limit
        clock.advance(minutes=2)
        await comp.check()
        assert await open_rules(store) == ["stalled"]
        await comp.outbox.deliver_due()  # (or the outbox worker, woken, sent it first)
        [stalled] = hook.received()
        assert "acquisition stalled: QC_HeLa_002.raw stopped growing" in stalled["title"]
        assert "grew to 3.0 MB and has not grown for 31 min (limit 30 min)" in stalled["message"]
        f.write(b"\0" * 1_000_000)  # the acquisition goes on
        f.flush()
    await watcher.sweep()
    await comp.check()
    assert await open_rules(store) == []
    await comp.outbox.deliver_due()  # (or the outbox worker, woken, sent it first)
    assert "Resolved" in hook.received()[1]["title"] and "grows again" in hook.received()[1]["message"]
