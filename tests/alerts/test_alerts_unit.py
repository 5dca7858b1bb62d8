"""The alerts package on a real DuckDB store with an injected clock (no sleeping): conditions,
lifecycle (grouping, repeats, acknowledgement, resolution), quiet hours, retries, crash marker."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from qcdaemon.alerts import AlertsComponent
from qcdaemon.alerts.conditions import (
    in_quiet_hours,
    outliers_hold,
    parse_schedule,
    reason_text,
    to_local,
    verdict_reasons,
    working_seconds,
)
from qcdaemon.alerts.delivery import Outbox, scrub
from qcdaemon.alerts.ops import acknowledge, list_alerts
from qcdaemon.config import config_from_dict
from qcdaemon.errors import ConfigError
from qcdaemon.store import AsyncStore, Store


def utc(local: dt.datetime) -> dt.datetime:
    """A local wall-clock time as the naive UTC the store keeps."""
    return local.astimezone(dt.UTC).replace(tzinfo=None)


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


class Recorder:
    """A sender that records messages (and fails while ``down``)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.down = False
        self.tries = 0

    def __call__(self, url: str, title: str, body: str) -> str | None:
        self.tries += 1
        if self.down:
            return "connection refused"
        self.sent.append((url, title, body))
        return None


# verdict dicts shaped like qcdaemon.qc.verdicts.Verdict.as_dict() on the quality-control branch
def reason(metric: str, value: float, low: float, high: float, severity: str = "fail") -> dict[str, Any]:
    return {"metric": metric, "label": metric, "rule": "levey_jennings", "detail": "3 SD", "severity": severity,
            "value": value, "low": low, "high": high, "z": 3.4, "statistic": None, "guide_set": "gs1",
            "text": f"{metric}: {value:.4g}; levey-jennings 3 SD; limits {low:.4g}…{high:.4g}"}


FAIL = {"run": "rf7", "verdict": "fail", "reasons": [reason("MS1 TIC", 1.2e9, 3e9, 9e9)], "checked": ["MS1 TIC"]}
WARN = {"run": "rf8", "verdict": "warn", "reasons": [reason("Mass error", 4.1, -3, 3, "warn")]}
PASS = {"run": "rf9", "verdict": "pass", "reasons": []}


def test_verdict_condition_on_qc_shaped_verdicts() -> None:
    assert verdict_reasons(FAIL, "fail") == FAIL["reasons"]
    assert verdict_reasons(WARN, "fail") is None  # a warning does not alert a "fail" rule
    assert verdict_reasons(WARN, "warn") == WARN["reasons"]
    assert verdict_reasons(PASS, "warn") is None
    assert verdict_reasons({"verdict": "not enough data", "reasons": []}, "warn") is None


def test_a_percent_reason_gives_its_limits_in_the_metric_s_units() -> None:
    # a run of 10 MS2 scans against a guide-set mean of 40 (-75 %), limits +-25 %: 30 to 50 scans
    r = {"metric": "NumMs2Scans", "label": "MS2 scans", "rule": "percent", "severity": "fail", "value": 10.0,
         "statistic": -75.0, "low": -25.0, "high": 25.0, "detail": "more than 25 % from the guide-set mean",
         "guide_set": "gs1", "text": "MS2 scans: 10; percent ...; limits -25…25"}
    text = reason_text(r)
    assert text.startswith("MS2 scans: 10, -75.0 % from the guide-set mean 40 (limits 30 to 50: -25 % to 25 %)")
    assert "guide set gs1" in text
    # a value of 0 (-100 %) has no mean to go back to: the verdict's own text
    assert reason_text({**r, "value": 0.0, "statistic": -100.0}) == r["text"]
    lj = {**r, "rule": "levey_jennings", "text": "MS2 scans: 10; levey-jennings below mean - 3 SD; limits 31…49"}
    assert reason_text(lj) == lj["text"]  # limits in the metric's units already


def test_panorama_outliers_in_each_of_the_last_n_runs() -> None:
    two = {"verdict": "fail", "reasons": [reason("a", 1, 2, 3), reason("b", 1, 2, 3)]}
    one = {"verdict": "fail", "reasons": [reason("a", 1, 2, 3)]}
    assert outliers_hold([two, two, two], k=2, n=3)
    assert not outliers_hold([two, one, two], k=2, n=3)  # each of the N runs, not in total
    assert not outliers_hold([two, two], k=2, n=3)  # fewer than N runs
    assert outliers_hold([two, one, one], k=2, n=1)  # only the newest counts for N = 1
    warned = {"verdict": "warn", "reasons": [reason("a", 1, 2, 3, "warn")]}
    assert not outliers_hold([warned], 1, 1, "fail") and outliers_hold([warned], 1, 1, "warn")


def test_working_hours_count_only_time_the_instrument_should_run() -> None:
    sched = parse_schedule(["mon-fri 07:00-19:00"])
    fri_18 = dt.datetime(2026, 1, 9, 18, 0)  # a Friday
    assert working_seconds(fri_18, dt.datetime(2026, 1, 12, 8, 0), sched) == 2 * 3600  # Fri 18-19 + Mon 7-8
    assert working_seconds(fri_18, dt.datetime(2026, 1, 10, 12, 0), sched) == 3600  # the weekend counts nothing
    assert working_seconds(fri_18, fri_18 + dt.timedelta(hours=3), []) == 3 * 3600  # no schedule: always
    night = parse_schedule(["22:00-06:00"])
    assert working_seconds(dt.datetime(2026, 1, 9, 21, 0), dt.datetime(2026, 1, 10, 7, 0), night) == 8 * 3600
    assert to_local(dt.datetime(2026, 1, 12, 12, 0), "Europe/Berlin") == dt.datetime(2026, 1, 12, 13, 0)  # CET = UTC+1
    assert to_local(dt.datetime(2026, 7, 12, 12, 0), "Europe/Berlin") == dt.datetime(2026, 7, 12, 14, 0)  # CEST
    assert in_quiet_hours(dt.datetime(2026, 1, 9, 23, 30), "22:00-07:00")
    assert not in_quiet_hours(dt.datetime(2026, 1, 9, 7, 0), "22:00-07:00")


def cfg_with(tmp_path: Path, rules: list[dict[str, Any]], channel: dict[str, Any] | None = None,
             watch: list[dict[str, Any]] | None = None, **alerts: Any) -> Any:
    return config_from_dict({
        "paths": {"data_dir": str(tmp_path / "data")},
        "watch": watch or [],
        "alerts": {"group_seconds": 60.0, "repeat_minutes": 60.0, "retry_seconds": 30.0, **alerts,
                   "channel": [{"name": "hook", "url": "json://127.0.0.1:9/x", **(channel or {})}],
                   "rule": [{"channels": ["hook"], **r} for r in rules]},
    })


@pytest.fixture
async def store(tmp_path: Path):
    s = AsyncStore(tmp_path / "data" / "qcdaemon.duckdb")
    yield s
    s.close()


RUN = {"run_key": "rf7", "run_name": "HeLa_2026_007.raw", "project_slug": "lab-qc", "pipeline_slug": "exploris",
       "pipeline_uuid": "u-1", "project_id": 1}


async def test_verdict_alert_groups_repeats_and_resolves(tmp_path: Path, store: AsyncStore) -> None:
    cfg = cfg_with(tmp_path, [{"name": "qc-failed", "condition": "verdict"}])
    clock, rec = Clock(dt.datetime(2026, 1, 12, 10, 0)), Recorder()
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as comp:
        await comp.verdict_seen(RUN, FAIL)
        await comp.manager.tick()
        await comp.outbox.deliver_due()
        assert rec.sent == []  # inside the grouping window
        for i in range(8, 12):  # a burst: four more failing runs
            await comp.verdict_seen({**RUN, "run_key": f"rf{i}", "run_name": f"HeLa_{i}.raw"}, FAIL)
        await comp.verdict_seen({**RUN, "run_key": "rf11"}, FAIL)  # the same run again counts once
        clock.advance(seconds=61)
        await comp.manager.tick()
        await comp.outbox.deliver_due()
        [(_, title, body)] = rec.sent
        assert "lab-qc/exploris" in title and "(5 runs)" in title
        assert "HeLa_2026_007.raw (rf7): verdict fail" in body and "MS1 TIC: 1.2e+09" in body and "limits 3e+09" in body
        assert "/pipelines/lab-qc/exploris?run=rf7" in body
        clock.advance(minutes=30)
        await comp.verdict_seen({**RUN, "run_key": "rf12"}, FAIL)
        await comp.manager.tick()
        await comp.outbox.deliver_due()
        assert len(rec.sent) == 1  # not before the repeat interval
        clock.advance(minutes=31)
        await comp.manager.tick()
        await comp.outbox.deliver_due()
        assert len(rec.sent) == 2 and "1 more run, 6 in all" in rec.sent[1][1]
        clock.advance(minutes=61)
        await comp.manager.tick()
        await comp.outbox.deliver_due()
        assert len(rec.sent) == 2  # nothing new: no reminder for an event alert
        await comp.verdict_seen({**RUN, "run_key": "rf3", "run_name": "HeLa_3.raw"}, PASS)  # an older run, re-judged
        assert len(await store.call(Store.alerts_open)) == 1
        await comp.verdict_seen({**RUN, "run_key": "rf13", "run_name": "HeLa_13.raw"}, PASS)
        await comp.outbox.deliver_due()
        assert len(rec.sent) == 3 and rec.sent[2][1].startswith("[qcdaemon] Resolved") and "HeLa_13.raw" in rec.sent[2][2]
        [alert] = await list_alerts(store, cfg, None)
        assert alert["state"] == "resolved" and alert["events"] == 6


async def test_acknowledged_state_alert_sends_no_reminders(tmp_path: Path, store: AsyncStore) -> None:
    inst = tmp_path / "inst"
    inst.mkdir()
    watch = [{"path": str(inst), "pipeline": "lab-qc/exploris", "owner": "op@lab.org"}]
    cfg = cfg_with(tmp_path, [{"name": "silent", "condition": "silence", "minutes": 120}], watch=watch,
                   group_seconds=0.0)
    clock, rec = Clock(dt.datetime(2026, 1, 12, 8, 0)), Recorder()
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as comp:
        clock.advance(minutes=119)
        await comp.check()
        assert await store.call(Store.alerts_open) == []
        clock.advance(minutes=2)
        await comp.check()
        await comp.outbox.deliver_due()
        assert len(rec.sent) == 1 and "no new RAW file for 2 h 1 min" in rec.sent[0][1]
        clock.advance(minutes=61)
        await comp.check()
        await comp.outbox.deliver_due()
        assert len(rec.sent) == 2 and "Still:" in rec.sent[1][1]  # a state alert repeats while it holds
        [alert] = await store.call(Store.alerts_open)
        member = {"id": 99, "email": "stranger@lab.org", "is_admin": False}
        with pytest.raises(Exception, match="does not exist"):
            await acknowledge(store, member, alert["id"])  # not in the alert's project: not visible
        await acknowledge(store, None, alert["id"])
        for _ in range(3):
            clock.advance(minutes=61)
            await comp.check()
            await comp.outbox.deliver_due()
        assert len(rec.sent) == 2
        # a new file ends the silence: the resolution is still announced
        comp.on_file("new", (0, inst / "QC_1.raw"), cfg.watch[0], (1000, int(clock.now.replace(tzinfo=dt.UTC).timestamp() * 1e9)))
        await comp.check()
        await comp.outbox.deliver_due()
        assert len(rec.sent) == 3 and "Resolved" in rec.sent[2][1] and "QC_1.raw" in rec.sent[2][2]


async def test_stalled_file_from_growth_observations(tmp_path: Path, store: AsyncStore) -> None:
    inst = tmp_path / "inst"
    inst.mkdir()
    watch = [{"path": str(inst), "pipeline": "lab-qc/exploris", "owner": "op@lab.org"}]
    cfg = cfg_with(tmp_path, [{"name": "stalled", "condition": "stalled"}], watch=watch, group_seconds=0.0)
    clock, rec = Clock(dt.datetime(2026, 1, 12, 8, 0)), Recorder()
    w, key = cfg.watch[0], (0, inst / "run.raw")
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as comp:
        comp.on_file("new", key, w, (10, 0))
        clock.advance(minutes=45)
        await comp.check()
        assert await store.call(Store.alerts_open) == []  # never grew: not an acquisition we saw running
        comp.on_file("changed", key, w, (5_000_000, 1))
        clock.advance(minutes=29)
        await comp.check()
        assert await store.call(Store.alerts_open) == []  # the default limit is 30 minutes
        clock.advance(minutes=2)
        await comp.check()
        await comp.outbox.deliver_due()
        assert len(rec.sent) == 1 and "run.raw stopped growing" in rec.sent[0][1] and "5.0 MB" in rec.sent[0][2]
        comp.on_file("settled", key, w, (5_000_000, 1))
        await comp.check()
        await comp.outbox.deliver_due()
        assert "Resolved" in rec.sent[1][1]


async def test_quiet_hours_hold_messages_for_one_digest(tmp_path: Path, store: AsyncStore) -> None:
    cfg = cfg_with(tmp_path, [{"name": "qc-failed", "condition": "verdict"}], channel={"quiet_hours": "22:00-07:00"},
                   group_seconds=0.0)
    clock, rec = Clock(utc(dt.datetime(2026, 1, 12, 23, 0))), Recorder()
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as comp:
        await comp.verdict_seen(RUN, FAIL)
        await comp.manager.tick()
        await comp.verdict_seen({**RUN, "run_key": "rf20", "pipeline_uuid": "u-2", "pipeline_slug": "lumos"}, FAIL)
        await comp.manager.tick()
        await comp.outbox.deliver_due()
        assert rec.sent == []
        clock.now = utc(dt.datetime(2026, 1, 13, 7, 5))
        await comp.outbox.deliver_due()
        [(_, title, body)] = rec.sent
        assert "2 alert messages from the quiet hours" in title and "exploris" in body and "lumos" in body


async def test_failed_delivery_backs_off_and_survives_a_restart(tmp_path: Path, store: AsyncStore) -> None:
    cfg = cfg_with(tmp_path, [{"name": "qc-failed", "condition": "verdict"}], group_seconds=0.0, retry_seconds=30.0)
    clock, rec = Clock(dt.datetime(2026, 1, 12, 10, 0)), Recorder()
    rec.down = True
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as comp:
        await comp.verdict_seen(RUN, FAIL)
        await comp.manager.tick()
        await comp.outbox.deliver_due()
        assert rec.tries == 1
        clock.advance(seconds=29)
        await comp.outbox.deliver_due()
        assert rec.tries == 1  # the first retry after 30 s
        clock.advance(seconds=2)
        await comp.outbox.deliver_due()
        assert rec.tries == 2
        clock.advance(seconds=59)
        await comp.outbox.deliver_due()
        assert rec.tries == 2  # then after 60 s (doubling)
    rec.down = False
    clock.advance(seconds=2)
    outbox = Outbox(store, cfg, clock=clock, sender=rec)  # a new process: the outbox is in the store
    assert await outbox.deliver_due() == 1 and len(rec.sent) == 1
    health = await store.call(Store.channel_health)
    assert health[0]["consecutive_failures"] == 0 and health[0]["last_ok_at"] == clock.now


async def test_restart_after_a_crash_is_announced_once(tmp_path: Path, store: AsyncStore) -> None:
    cfg = cfg_with(tmp_path, [{"name": "crash", "condition": "daemon_crash"}])
    clock, rec = Clock(dt.datetime(2026, 1, 12, 10, 0)), Recorder()
    comp = AlertsComponent(store, cfg, clock=clock, sender=rec)
    await comp.__aenter__()
    assert not comp.crashed_before
    comp._task.cancel()  # the process dies: no clean exit, the marker stays
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as again:
        assert again.crashed_before
        await again.outbox.deliver_due()
    assert len(rec.sent) == 1 and "restarted after an unclean stop" in rec.sent[0][1]
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as clean:
        assert not clean.crashed_before  # the previous one stopped cleanly


def test_alert_config_round_trip_and_refusals(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, [{"name": "p", "condition": "outliers", "scope": "pipeline", "pipeline": "a/b",
                               "severity": "warn", "outliers": 2, "runs": 3, "stage": "", "minutes": 5.0,
                               "min_free_gb": 1.0, "repeat_minutes": 10.0}],
                   channel={"quiet_hours": "22:00-07:00"}, check_seconds=5.0, failing_after=2, base_url="https://qc")
    r = cfg.alerts.rule[0]
    assert (r.scope, r.pipeline, r.severity, r.outliers, r.runs, r.channels) == ("pipeline", "a/b", "warn", 2, 3, ("hook",))
    assert cfg.alerts.channel[0].quiet_hours == "22:00-07:00" and cfg.alerts.base_url == "https://qc"
    for bad, key in [({"condition": "nope"}, "condition"), ({"runs": 6}, "runs"), ({"channels": ["x"]}, "channels"),
                     ({"scope": "project"}, "project")]:
        with pytest.raises(ConfigError, match=rf"alerts\.rule\[0\]\.{key}"):
            cfg_with(tmp_path, [{"name": "r", "condition": "verdict", **bad}])
    with pytest.raises(ConfigError, match=r"quiet_hours"):
        cfg_with(tmp_path, [], channel={"quiet_hours": "late"})
    with pytest.raises(ConfigError, match=r"watch\[0\]\.working_hours"):
        config_from_dict({"watch": [{"path": "/d", "pipeline": "a/b", "owner": "o@l", "working_hours": ["sun-mon"]}]})


def test_secrets_are_scrubbed_from_errors() -> None:
    url = "mailto://qc:s3cret-pw@smtp.lab.org:587?to=a@b.org"
    assert "s3cret-pw" not in scrub("login failed for qc:s3cret-pw at smtp.lab.org", url)


# -- conditions read from the store and the watcher ------------------------------------------------

QC_VERDICTS_DDL = """CREATE TABLE IF NOT EXISTS qc_verdicts (run_id INTEGER NOT NULL, pipeline_id INTEGER NOT NULL,
    verdict VARCHAR NOT NULL, summary VARCHAR NOT NULL, detail VARCHAR NOT NULL, guide_set VARCHAR,
    computed_at TIMESTAMP NOT NULL)"""  # as the quality-control branch's migration creates it


def seed_pipeline(store: Store, tmp: Path) -> dict[str, Any]:
    pid = store.create_project("Lab QC", "lab-qc", "", None)
    return store.create_pipeline(pid, "Exploris", "exploris", str(tmp / "p"), rawtools_args="")


async def test_stored_verdicts_and_panorama_outliers_alert(tmp_path: Path, store: AsyncStore) -> None:
    import json

    cfg = cfg_with(tmp_path, [{"name": "qc-failed", "condition": "verdict", "scope": "project", "project": "lab-qc"},
                              {"name": "drift", "condition": "outliers", "outliers": 1, "runs": 2},
                              {"name": "elsewhere", "condition": "verdict", "scope": "pipeline", "pipeline": "x/y"}],
                   group_seconds=0.0)
    pl = await store.call(seed_pipeline, tmp_path)
    clock, rec = Clock(dt.datetime(2026, 1, 12, 10, 0)), Recorder()
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as comp:
        def put(store: Store, n: int, verdict: dict[str, Any]) -> None:
            store.execute(QC_VERDICTS_DDL)
            run = store.create_run(pl["id"], f"HeLa_{n}.raw", source="watch", owner_id=None)
            store.execute("INSERT INTO qc_verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [run["id"], pl["id"], verdict["verdict"], "", json.dumps(verdict), "gs1", clock.now])

        clock.advance(seconds=10)
        await store.call(put, 1, FAIL)
        await comp.check()
        await comp.outbox.deliver_due()
        assert [t for _, t, _ in rec.sent] == ["[qcdaemon] lab-qc/exploris: QC failed"]
        assert "MS1 TIC: 1.2e+09" in rec.sent[0][2] and "HeLa_1.raw" in rec.sent[0][2]
        clock.advance(seconds=10)
        await store.call(put, 2, FAIL)  # the second failing run in a row: Panorama's rule holds (K=1, N=2)
        await comp.check()
        await comp.outbox.deliver_due()
        titles = [t for _, t, _ in rec.sent]
        assert "[qcdaemon] lab-qc/exploris: at least 1 outliers in each of the last 2 runs" in titles
        open_rules = sorted(a["rule"] for a in await store.call(Store.alerts_open))
        assert open_rules == ["drift", "qc-failed"]  # the rule scoped to another pipeline stays silent
        clock.advance(seconds=10)
        await store.call(put, 3, PASS)
        await comp.check()
        assert await store.call(Store.alerts_open) == []  # a passing run resolves both


async def test_unreachable_folder_from_the_real_watcher(tmp_path: Path, store: AsyncStore) -> None:
    from qcdaemon.watcher import FolderWatcher

    inst = tmp_path / "share"
    inst.mkdir()
    watch = [{"path": str(inst), "pipeline": "lab-qc/exploris", "owner": "op@lab.org", "polling": True}]
    cfg = cfg_with(tmp_path, [{"name": "gone", "condition": "unreachable", "minutes": 10}], watch=watch,
                   group_seconds=0.0)

    async def nothing(ev: Any) -> None:
        pass

    watcher = FolderWatcher(cfg.watch, nothing)
    await watcher.start()
    clock, rec = Clock(dt.datetime(2026, 1, 12, 10, 0)), Recorder()
    try:
        async with AlertsComponent(store, cfg, watcher=watcher, clock=clock, sender=rec) as comp:
            inst.rmdir()  # the share goes away
            await watcher.sweep()
            await comp.check()
            clock.advance(minutes=9)
            await comp.check()
            assert await store.call(Store.alerts_open) == []  # within the grace period
            clock.advance(minutes=2)
            await comp.check()
            await comp.outbox.deliver_due()
            assert len(rec.sent) == 1 and "watched folder unreachable" in rec.sent[0][1] and str(inst) in rec.sent[0][2]
            inst.mkdir()
            await watcher.sweep()
            await comp.check()
            await comp.outbox.deliver_due()
            assert "Resolved" in rec.sent[1][1] and "reachable again" in rec.sent[1][2]
    finally:
        await watcher.stop()


async def test_disk_space_and_a_stuck_queue(tmp_path: Path, store: AsyncStore) -> None:
    import shutil

    free_gb = shutil.disk_usage(tmp_path).free / 1e9
    cfg = cfg_with(tmp_path, [{"name": "disk", "condition": "disk_space", "min_free_gb": free_gb * 10},
                              {"name": "roomy", "condition": "disk_space", "min_free_gb": 0.0},
                              {"name": "stuck", "condition": "queue_stuck", "minutes": 60}], group_seconds=0.0)
    pl = await store.call(seed_pipeline, tmp_path)
    await store.call(Store.create_run, pl["id"], "waiting.raw", source="watch", owner_id=None, stages=["native"])
    from qcdaemon.core.clock import utcnow

    clock, rec = Clock(utcnow()), Recorder()
    async with AlertsComponent(store, cfg, clock=clock, sender=rec) as comp:
        await comp.check()
        assert [a["rule"] for a in await store.call(Store.alerts_open)] == ["disk"]  # the limit above what is free
        clock.advance(minutes=61)
        await comp.check()
        await comp.outbox.deliver_due()
        titles = " | ".join(t for _, t, _ in rec.sent)
        assert "low disk space" in titles and "engine queue stuck: native of waiting.raw queued" in titles


def test_doctor_shows_a_channel_that_keeps_failing(tmp_path: Path) -> None:
    from qcdaemon.system.doctor import check_alert_channels

    cfg = config_from_dict({"paths": {"data_dir": str(tmp_path / "data")}, "alerts": {
        "failing_after": 2,
        "channel": [{"name": "hook", "url": "json://127.0.0.1:9/x"}, {"name": "mail", "url_env": "QCD_NO_SUCH_VAR"},
                    {"name": "bad", "url": "nonsense"}]}})
    s = Store(cfg.files.db)
    now = dt.datetime(2026, 1, 1)
    did = s.delivery_add(None, "hook", "test", "t", "b", now)
    for i in range(2):
        s.delivery_record(did, ok=False, error="connection refused", now=now + dt.timedelta(minutes=i), retry_at=now)
    s.close()
    rows = {r.name: r for r in check_alert_channels(cfg)}
    assert rows["alert channel hook"].status == "FAIL" and "2 failed deliveries in a row" in rows["alert channel hook"].detail
    assert rows["alert channel mail"].status == "FAIL" and "QCD_NO_SUCH_VAR" in rows["alert channel mail"].detail
    assert rows["alert channel bad"].status == "FAIL"


async def test_silence_counts_working_hours_only(tmp_path: Path, store: AsyncStore) -> None:
    inst = tmp_path / "inst"
    inst.mkdir()
    watch = [{"path": str(inst), "pipeline": "lab-qc/exploris", "owner": "op@lab.org",
              "working_hours": ["mon-fri 07:00-19:00"]}]
    cfg = cfg_with(tmp_path, [{"name": "silent", "condition": "silence", "minutes": 120}], watch=watch,
                   group_seconds=0.0)
    clock = Clock(utc(dt.datetime(2026, 1, 9, 16, 0)))  # Friday 16:00 local

    async def at(local: dt.datetime) -> list[str]:
        clock.now = utc(local)
        await comp.check()
        return [a["rule"] for a in await store.call(Store.alerts_open)]

    async with AlertsComponent(store, cfg, clock=clock, sender=Recorder()) as comp:
        assert await at(dt.datetime(2026, 1, 9, 17, 59)) == []
        assert await at(dt.datetime(2026, 1, 9, 18, 1)) == ["silent"]
        assert await at(dt.datetime(2026, 1, 9, 23, 0)) == ["silent"]  # stays open through the night
        mtime_ns = int(clock.now.replace(tzinfo=dt.UTC).timestamp() * 1e9)
        comp.on_file("new", (0, inst / "late.raw"), cfg.watch[0], (10, mtime_ns))
        assert await at(dt.datetime(2026, 1, 10, 10, 0)) == []  # resolved by the file
        assert await at(dt.datetime(2026, 1, 11, 20, 0)) == []  # a silent weekend is no alert
        assert await at(dt.datetime(2026, 1, 12, 8, 59)) == []  # Monday: 1 h 59 min of working time
        assert await at(dt.datetime(2026, 1, 12, 9, 1)) == ["silent"]
