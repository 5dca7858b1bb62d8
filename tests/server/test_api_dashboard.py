"""The dashboard's JSON routes on a real server: one run's QC report, the paginated runs table,
project membership, chart windows that never change verdicts; the security headers and the HTML
404 page for browsers (JSON for API clients)."""

from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path
from typing import Any

from conftest import (
    DEMO_PROJECT,
    DEMO_USER,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    OTHER_PIPELINE,
    OTHER_PROJECT,
    Api,
    World,
)

from qcdaemon.store import Store

VALUES = [20000, 20400, 19800, 20100, 20300, 19900, 20200, 19700, 5000, 20050]
T0 = dt.datetime(2024, 2, 1, 8, 0)
SCOPE = {"project": DEMO_PROJECT, "pipeline": LAB_PIPELINE}


async def seed(world: World) -> list[str]:
    lab = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    keys = []
    for i, v in enumerate(VALUES):
        run = await world.store.call(Store.create_run, lab["id"], f"s-{i}.raw", source="upload",
                                     owner_id=world.users[DEMO_USER]["id"], state="done",
                                     acquired_at=T0 + dt.timedelta(days=i))
        await world.store.call(Store.put_qc_values, run["id"], "rawtools", {"NumMs2Scans": v})
        keys.append(run["run_key"])
    await world.svc.quality.add_guide_set(world.users[DEMO_USER], DEMO_PROJECT, LAB_PIPELINE, run_keys=keys[:8])
    return keys


async def test_run_report_has_the_metric_against_its_guide_set(world: World, make_api: Any) -> None:
    keys = await seed(world)
    api: Api = await make_api(world)
    report = await api.ok("/api/qc/run", {"run_key": keys[8]})
    m = next(x for x in report["metrics"] if x["metric"] == "NumMs2Scans")
    guide = VALUES[:8]
    mean, sd = statistics.mean(guide), statistics.stdev(guide)
    assert m["value"] == 5000
    assert abs(m["limits"]["mean"] - mean) < 1e-6
    assert abs(m["z"] - (5000 - mean) / sd) < 1e-6
    assert any(v["severity"] == "fail" for v in m["violations"])
    high = next(x for x in (await api.ok("/api/qc/run", {"run_key": keys[9]}))["metrics"] if x["metric"] == "NumMs2Scans")
    assert high["violations"] == []
    # another lab's user and an unknown run: the same 404; junk keys are a 400
    for who, key in ((OTHER, keys[8]), (DEMO_USER, "rf999999")):
        r = await api.call("/api/qc/run", {"run_key": key}, who=who)
        assert r.status == 404 and "not found or not visible" in r.data["detail"]
    assert (await api.call("/api/qc/run", {"run_key": "x"})).status == 400


async def test_runs_page_is_paginated_newest_first(world: World, make_api: Any) -> None:
    keys = await seed(world)
    api: Api = await make_api(world)
    total = len(await world.store.call(Store.runs_of, world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["id"]))
    first = await api.ok("/api/qc/runs", {**SCOPE, "limit": 3})
    assert first["total"] == total and [r["run_key"] for r in first["runs"]] == keys[::-1][:3]
    assert first["runs"][1]["verdict"] == "fail"  # keys[8]
    second = await api.ok("/api/qc/runs", {**SCOPE, "limit": 3, "offset": 3})
    assert [r["run_key"] for r in second["runs"]] == keys[::-1][3:6]
    assert (await api.ok("/api/qc/runs", {**SCOPE, "offset": 10_000}))["runs"] == []
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
        r = await api.call("/api/qc/runs", {**SCOPE, **bad})
        assert r.status == 400 and r.is_json, bad
    assert (await api.call("/api/qc/runs", {"project": OTHER_PROJECT, "pipeline": OTHER_PIPELINE})).status == 403


async def test_chart_windows_change_what_is_sent_never_the_verdicts(world: World, make_api: Any) -> None:
    keys = await seed(world)
    api: Api = await make_api(world)
    full = await api.ok("/api/qc/chart", {**SCOPE, "metric": "NumMs2Scans"})
    last3 = await api.ok("/api/qc/chart", {**SCOPE, "metric": "NumMs2Scans", "last": 3})
    assert last3["total"] == len(full["points"]) and [p["run"] for p in last3["points"]] == keys[-3:]
    assert last3["limits"] == full["limits"]
    by_run = {p["run"]: p for p in full["points"]}
    for p in last3["points"]:
        assert p == by_run[p["run"]]
    day = (T0 + dt.timedelta(days=8)).date().isoformat()
    ranged = await api.ok("/api/qc/chart", {**SCOPE, "metric": "NumMs2Scans", "start": f"{day}T00:00:00Z",
                                            "end": f"{day}T23:59:59Z", "compact": True})
    assert [p["run"] for p in ranged["points"]] == [keys[8]]
    assert "rejected" not in ranged["points"][0] and ranged["points"][0]["violations"]
    r = await api.call("/api/qc/chart", {**SCOPE, "metric": "NumMs2Scans", "start": "yesterday"})
    assert r.status == 400 and "start" in r.data["detail"]


async def test_chart_answers_are_cached_until_a_qc_write_changes_them(world: World, make_api: Any) -> None:
    """The second identical chart request is a cache hit with the same answer; after each QC edit
    through the API (annotation, reject, exclusion, guide set, rules) the chart shows the edit."""
    keys = await seed(world)
    api: Api = await make_api(world)
    cache = world.svc.quality.charts
    ask = {**SCOPE, "metric": "NumMs2Scans"}
    first = await api.ok("/api/qc/chart", ask)
    hits = cache.hits
    assert await api.ok("/api/qc/chart", ask) == first and cache.hits == hits + 1
    assert await api.ok("/api/qc/chart", {**ask, "kind": "moving_range"}) != first  # its own entry

    def point(c: dict[str, Any], key: str) -> dict[str, Any]:
        return next(p for p in c["points"] if p["run"] == key)

    # a maintenance note recomputes no verdict: only the store's write tells the cache
    await api.ok("/api/qc/annotations/create", {**SCOPE, "kind": "maintenance", "time": "2024-02-05T10:00:00Z",
                                                 "text": "cleaned"})
    c = await api.ok("/api/qc/chart", ask)
    assert [a["text"] for a in c["annotations"]] == ["cleaned"]
    await api.ok("/api/rawfile", {**SCOPE, "action": "reject", "run_keys": [keys[9]]})
    c = await api.ok("/api/qc/chart", ask)
    assert point(c, keys[9])["rejected"] is True and point(first, keys[9])["rejected"] is False
    await api.ok("/api/qc/exclusions/create", {**ask, "run_keys": [keys[8]]})
    c = await api.ok("/api/qc/chart", ask)
    assert point(c, keys[8])["excluded"] is True and point(first, keys[8])["excluded"] is False
    assert point(first, keys[8])["verdict"] == "fail"  # an exclusion leaves it out of the limits only
    await api.ok("/api/qc/exclusions/delete", {**ask, "run_keys": [keys[8]]})
    await api.ok("/api/qc/rules", {**ask, "rules": [{"rule": "levey_jennings", "warn": 2, "fail": 100}]})
    c = await api.ok("/api/qc/chart", ask)  # 5000 is about 60 SD out: a warning now, no failure
    assert {v["severity"] for v in point(c, keys[8])["violations"]} == {"warn"}, point(c, keys[8])
    assert point(c, keys[8])["verdict"] == "warn"
    assert cache.size <= cache.max_bytes


async def failed_run_with_logs(world: World, *, tail_text: str = "") -> tuple[str, Path]:
    """A run whose native stage failed, with the logs a tool left in its work folder (as
    ``tools/runner.py`` names them) and a few files the route must not show."""
    lab = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    run = await world.store.call(Store.create_run, lab["id"], "broken.raw", source="upload",
                                 owner_id=world.users[DEMO_USER]["id"], stages=["native", "rawtools"])
    work = world.cfg.files.work_of(run["run_key"]) / "native"
    work.mkdir(parents=True)
    head = "".join(f"scan {i}: ok\n" for i in range(20_000))  # ~250 KB: only its end is shown
    (work / "native.err").write_text(head + tail_text + "Traceback: <b>boom</b> & more\n")
    (work / "native.out").write_text("")
    (work / "metrics.json").write_text('{"not": "a log"}')
    (work / ".native.err.cap").write_text("half-written")
    secret = world.cfg.data_dir / "outside.err"
    secret.write_text("not this run's")
    (work / "link.err").symlink_to(secret)
    await world.store.call(Store.finish_stage, run["id"], "native", "failed", error="native: boom", exit_code=2,
                           log_dir=str(work))
    return run["run_key"], work


async def test_stage_logs_show_the_tails_of_the_recorded_folder_only(world: World, make_api: Any) -> None:
    key, work = await failed_run_with_logs(world)
    api: Api = await make_api(world)
    r = await api.ok("/api/qc/run/logs", {"run_key": key, "stage": "native"})
    assert r["state"] == "failed" and r["log_dir"] == str(work)
    assert [f["name"] for f in r["files"]] == ["native.err", "native.out"]  # no link, no other files
    err = r["files"][0]
    size = (work / "native.err").stat().st_size
    assert err["size"] == size > 64 * 1024 and err["truncated"] is True
    assert err["shown"] <= 64 * 1024 and err["text"].endswith("Traceback: <b>boom</b> & more\n")
    assert err["text"].startswith("scan ") and len(err["text"]) == err["shown"]  # from a line start
    assert r["files"][1] == {"name": "native.out", "size": 0, "shown": 0, "truncated": False, "text": ""}
    # a stage without a recorded folder: no files
    assert (await api.ok("/api/qc/run/logs", {"run_key": key, "stage": "rawtools"}))["files"] == []
    # a folder the store names outside the run's work folder is not read
    elsewhere = world.cfg.data_dir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.err").write_text("secret")
    await world.store.call(Store.finish_stage, int(key[2:]), "rawtools", "failed", log_dir=str(elsewhere))
    assert (await api.ok("/api/qc/run/logs", {"run_key": key, "stage": "rawtools"}))["files"] == []
    # scoping: another lab's user and an unknown run get the same 404; bad input is a 4xx
    for who, k, stage in ((OTHER, key, "native"), (DEMO_USER, "rf999999", "native"), (DEMO_USER, key, "nope")):
        bad = await api.call("/api/qc/run/logs", {"run_key": k, "stage": stage}, who=who)
        assert bad.status == 404 and bad.is_json, (who, k, stage)
    for body in ({"run_key": key}, {"stage": "native"}, {"run_key": "../etc", "stage": "native"},
                 {"run_key": key, "stage": ["native"]}):
        bad = await api.call("/api/qc/run/logs", body)
        assert 400 <= bad.status < 500 and bad.is_json, body
    # a path in the request is no input at all: the answer is the recorded folder's
    asked = await api.ok("/api/qc/run/logs", {"run_key": key, "stage": "native", "log_dir": "/etc"})
    assert asked["log_dir"] == str(work) and [f["name"] for f in asked["files"]] == ["native.err", "native.out"]
    assert (await api.call("/api/qc/run/logs", {"run_key": key, "stage": "native"}, who=None)).status in (401, 403)


async def test_members_only_the_creator_or_an_admin_changes_them(world: World, make_api: Any) -> None:
    api: Api = await make_api(world)
    listed = await api.ok("/api/members", {"project": DEMO_PROJECT})
    assert listed["creator"] == DEMO_USER and listed["may_change"] is True
    assert MEMBER in {m["email"] for m in listed["members"]}
    assert (await api.ok("/api/members", {"project": DEMO_PROJECT}, who=MEMBER))["may_change"] is False
    r = await api.call("/api/members/add", {"project": DEMO_PROJECT, "email": OTHER}, who=MEMBER)
    assert r.status == 403
    assert (await api.call("/api/members", {"project": DEMO_PROJECT}, who=OTHER)).status == 403
    assert DEMO_PROJECT not in {p["slug"] for p in await api.ok("/api/projects", who=OTHER)}
    added = await api.ok("/api/members/add", {"project": DEMO_PROJECT, "email": OTHER})
    assert added["changed"] is True
    assert DEMO_PROJECT in {p["slug"] for p in await api.ok("/api/projects", who=OTHER)}
    removed = await api.ok("/api/members/remove", {"project": DEMO_PROJECT, "email": OTHER})
    assert removed["changed"] is True
    assert DEMO_PROJECT not in {p["slug"] for p in await api.ok("/api/projects", who=OTHER)}
    assert (await api.call("/api/members/add", {"project": DEMO_PROJECT, "email": "nobody@example.org"})).status == 404
    assert (await api.call("/api/members", {})).status == 400


async def test_security_headers_and_404s(world: World, make_api: Any) -> None:
    api: Api = await make_api(world)
    for path, accept in (("/api/health", "application/json"), ("/", "text/html"), ("/static/app.css", "*/*")):
        r = await api.call(path, method="GET", who=None, headers={"Accept": accept})
        assert r.status == 200, path
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "same-origin"
    page = await api.call("/no/such/page", method="GET", who=None, headers={"Accept": "text/html"})
    assert page.status == 404 and page.headers["Content-Type"].startswith("text/html") and "<h1>" in page.text
    script = await api.call("/no/such/page", method="GET", who=None, headers={"Accept": "application/json"})
    assert script.status == 404 and script.is_json and "detail" in script.data
    api_404 = await api.call("/api/nope", method="GET", who=None, headers={"Accept": "text/html"})
    assert api_404.status == 404 and api_404.is_json
    vendored = await api.call("/static/vendor/uplot/uPlot.iife.min.js", method="GET", who=None)
    assert vendored.status == 200 and "uPlot" in vendored.text
