"""The QC trend page ``GET /pipelines/{project}/{pipeline}``: its pure pieces (ticks, numbers, SVG)
and the page itself on a real server (session and token access, scoping, junk query strings, the
guide-set limits and verdicts that do not move with the runs shown)."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import re
import statistics
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import (
    ADMIN,
    DEMO_PIPELINE,
    DEMO_PROJECT,
    DEMO_USER,
    EMPTY_PIPELINE,
    LAB_PIPELINE,
    OTHER,
    OTHER_PIPELINE,
    OTHER_PROJECT,
    SHARED_PROJECT,
    Api,
    Browser,
    World,
)

from qcdaemon.server.pages import trends
from qcdaemon.server.pages.trends import (
    BLUE,
    GREY,
    RED,
    Point,
    build_svg,
    fmt_value,
    iso_datetime,
    metric_columns,
    nice_ticks,
    parse_n,
    point_limits,
    tick_labels,
)
from qcdaemon.store import Store

DEMO_URL = f"/pipelines/{DEMO_PROJECT}/{DEMO_PIPELINE}"
LAB_URL = f"/pipelines/{DEMO_PROJECT}/{LAB_PIPELINE}"
CIRCLE = re.compile(r"<circle ([^>]*)>")


def circles(page: str) -> list[dict[str, str]]:
    """The chart's point markers, as attribute dicts."""
    return [dict(re.findall(r'([a-z-]+)="([^"]*)"', attrs)) for attrs in CIRCLE.findall(page)]


def table_rows(page: str) -> list[str]:
    table = page[page.index("<table>"):]
    return re.findall(r"<tr(?: class=out)?><td>.*?</tr>", table)


# ------------------------------------------------------------------------------- pure pieces


def test_svg_markers_gaps_and_limits() -> None:
    pts = [Point(10.0, "a", "<first> & tip", flagged=True, low=9.0, high=12.0, center=10.5), Point(None, "b", "gap"),
           Point(11.0, "c", "x", low=9.0, high=12.0, center=10.5),
           Point(12.0, "d", "y", rejected=True, low=9.0, high=12.0, center=10.5), Point(None, "e", "gap"),
           Point(10.5, "f", "z", out=True, low=None, high=10.2, center=10.0),
           Point(100.0, "g", "w", rejected=True, out=True)]
    svg = build_svg(pts, "M <x>")
    marks = circles(svg)
    assert len(marks) == 5  # one per valued run, none for the gaps
    assert marks[0]["fill"] == "#fff" and marks[0]["stroke"] == BLUE  # flagged: hollow
    assert marks[3]["fill"] == RED and "out" in marks[3]["class"]  # flagged by a rule: red
    assert marks[2]["fill"] == GREY and marks[4]["fill"] == GREY  # rejected: grey, even when flagged by a rule
    assert "out" in marks[4]["class"] and "rejected" in marks[4]["class"]
    # missing values break the line: three pieces (a | c-d | f-g), never a point at zero
    d = re.search(r'<path class="line" d="([^"]*)"', svg).group(1)  # type: ignore[union-attr]
    assert d.count("M") == 3 and d.count("L") == 2
    # each run's own guide-set limits as steps: 3 low steps (one-sided run f has none), 4 high, 4 centres
    low = re.search(r'<path class="limit low" d="([^"]*)"', svg).group(1)  # type: ignore[union-attr]
    high = re.search(r'<path class="limit high" d="([^"]*)"', svg).group(1)  # type: ignore[union-attr]
    center = re.search(r'<path class="center center" d="([^"]*)"', svg)
    assert low.count("M") == 3 and high.count("M") == 4 and center and "stroke-dasharray" in svg
    assert "<title>&lt;first&gt; &amp; tip</title>" in svg and 'aria-label="M &lt;x&gt;"' in svg
    assert "<x>" not in svg
    # every point lies inside the plot area, and the limits widen the axis to show them
    for m in marks:
        assert trends.MT <= float(m["cy"]) <= trends.H - trends.MB and trends.ML <= float(m["cx"]) <= trends.W


def test_point_limits_prefer_the_levey_jennings_fail_limits() -> None:
    row = {"mean": 5.0, "rules": {"robust": {"fail_low": 1.0, "fail_high": 9.0, "center": 5.1},
                                  "levey_jennings": {"fail_low": 2.0, "fail_high": None, "center": 5.0}}}
    assert point_limits(row) == (2.0, None, 5.0)
    assert point_limits({"mean": 5.0, "rules": {"robust": {"fail_low": 1.0, "fail_high": 9.0, "center": 5.1}}}) == \
        (1.0, 9.0, 5.1)
    assert point_limits({"mean": 5.0, "rules": {}}) == (None, None, 5.0)
    assert point_limits(None) == (None, None, None)


def test_svg_with_zero_one_or_equal_values() -> None:
    assert build_svg([]) == "" and build_svg([Point(None, "", "")]) == ""
    svg = build_svg([Point(None, "", ""), Point(42.0, "d", "t")])
    assert len(circles(svg)) == 1 and "nan" not in svg and "inf" not in svg
    svg = build_svg([Point(0.0, "", "", low=0.0, high=0.0, center=0.0)] * 3)
    assert len(circles(svg)) == 3 and "nan" not in svg
    svg = build_svg([Point(v, "", "") for v in (-1e308, 1e308)])  # no overflow at the float limits
    assert len(circles(svg)) == 2 and "nan" not in svg and "inf" not in svg


def _check_ticks(lo: float, hi: float) -> list[float]:
    ticks = nice_ticks(lo, hi)
    assert 4 <= len(ticks) <= 5, (lo, hi, ticks)
    assert ticks[0] <= lo and ticks[-1] >= hi, (lo, hi, ticks)
    step = ticks[1] - ticks[0]
    assert all(math.isclose(b - a, step, rel_tol=1e-6) for a, b in itertools.pairwise(ticks))
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-6)
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5)), (lo, hi, step)
    return ticks


def test_nice_ticks() -> None:
    assert _check_ticks(0, 30903) == [0, 10000, 20000, 30000, 40000]
    assert _check_ticks(0.0447, 0.249) == [0, 0.1, 0.2, 0.3]
    assert _check_ticks(-3, -1) == [-3, -2.5, -2, -1.5, -1]
    assert _check_ticks(5, 5) == [4.5, 4.75, 5, 5.25, 5.5]  # one value: a band around it
    assert _check_ticks(0, 0) == [-1, -0.5, 0, 0.5, 1]
    assert nice_ticks(10, 0) == nice_ticks(0, 10)
    rng = random.Random(7)
    for _ in range(3000):
        lo = rng.uniform(-1e4, 1e4) * 10 ** rng.randint(-6, 6)
        _check_ticks(lo, lo + 10 ** rng.uniform(-3, 5) * max(1.0, abs(lo)) * rng.random())
    with pytest.raises(ValueError):
        nice_ticks(0, math.inf)


def test_tick_labels_and_values() -> None:
    assert tick_labels([0, 10000, 20000, 30000]) == ["0", "10k", "20k", "30k"]
    assert tick_labels([0, 2.5e6, 5e6, 7.5e6]) == ["0", "2.5M", "5.0M", "7.5M"]
    assert tick_labels([0, 0.1, 0.2, 0.3]) == ["0", "0.1", "0.2", "0.3"]
    assert tick_labels([1000, 2000, 3000]) == ["1000", "2000", "3000"]
    assert tick_labels([1e-7, 2e-7, 3e-7]) == ["1e-07", "2e-07", "3e-07"]
    assert fmt_value(30903.0) == "30903" and fmt_value(0.0447325906935473) == "0.0447326"
    assert fmt_value(6108612.04382324) == "6108612" and fmt_value(-1.0) == "-1"
    # an integer part's zeros are never stripped (84681119.8 once printed as 8468112, 100000.4 as 1)
    assert fmt_value(84681119.7751465) == "84681120" and fmt_value(100000.4) == "100000"
    assert fmt_value(1577746276.52344) == "1577746277" and fmt_value(120.5) == "120.5"
    assert fmt_value(0.30) == "0.3" and fmt_value(1000.25) == "1000.25"
    assert iso_datetime(1522790149000000000) == "2018-04-03T21:15:49Z"
    assert iso_datetime(None) == "" and iso_datetime(True) == "" and iso_datetime(10**30) == ""


def test_parse_n() -> None:
    assert parse_n(None) == parse_n("") == parse_n("  ") == 100
    assert parse_n("25") == 25 and parse_n(" 7 ") == 7
    assert parse_n("0") == parse_n("-1") == 1 and parse_n("-" + "9" * 50) == 1
    assert parse_n("2001") == parse_n("9" * 3000) == 2000
    for junk in ("abc", "1e3", "2.5", "0x10", "\u0663", "9" * 5000, "1 2"):
        with pytest.raises(ValueError):
            parse_n(junk)


def test_metric_columns() -> None:
    data = {"RawFile": ["a", "b"], "Index": [1, 2], "DateAcquired": [1, 2], "zeta": [None, 1.0], "Alpha": [2, None],
            "N_peptides": [5, 6], "NumMs2Scans": [None, 3], "text": ["x", "y"], "Flagged": [True, False],
            "empty": [None, None], "N_protein_groups": [None, None], "mixed": ["not detected", 4]}
    assert metric_columns(data) == ["NumMs2Scans", "N_peptides", "Alpha", "mixed", "zeta"]


# ------------------------------------------------------------------------------- the page


@pytest.fixture
async def demo_browser(api: Api, browsers: Callable[[Api], Browser]) -> Browser:
    b = browsers(api)
    assert (await b.login(DEMO_USER)).status == 302
    return b


async def test_demo_page_plots_each_valued_run(demo_browser: Browser) -> None:
    r = await demo_browser.get(DEMO_URL + "?metric=TotalScans")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Cache-Control"] == "no-store"
    page = r.text
    assert "<h1>Demo Project / TMT QC Demo</h1>" in page
    assert "3 runs in this pipeline" in page and 'href="/"' in page
    assert page.count("<svg") == 1
    marks = circles(page)
    assert len(marks) == 2  # RawTools values on 2 of the 3 demo runs
    titles = re.findall(r"<title>([^<]*)</title></circle>", page)
    assert any("small2 (rf" in t and "TotalScans: 95" in t and "2018-04-03T" in t for t in titles)
    assert '<option value="TotalScans" selected>TotalScans</option>' in page
    assert "not enough runs for limits" in page  # two values: no limits
    # the table: all three runs, newest first, the one without a value left empty
    rows = table_rows(page)
    assert len(rows) == 3
    assert "200304-SA002" in rows[0] and "SA001-R3-C-2ulF" in rows[1] and "small2" in rows[2]
    assert "<td>30903</td>" in rows[1] and "2019-10-25T" in rows[1]


async def test_metric_selector_and_default(demo_browser: Browser) -> None:
    page = (await demo_browser.get(DEMO_URL)).text
    options = re.findall(r'<option value="([^"]*)"', page)
    # curated first (those with values, in the curated order), then the rest alphabetically
    assert options[:7] == ["NumMs2Scans", "MeanDutyCycle(s)", "MedianPeakWidthAt50%H(s)", "Ms1MedianSummedIntensity",
                           "MS/MS Identified [%]", "N_protein_groups", "N_peptides"]
    rest = options[9:]
    assert rest == sorted(rest, key=lambda c: (c.casefold(), c))
    assert "TotalScans" in options and "TMT1_missing_values" in options
    for not_metric in ("RawFile", "Index", "DateAcquired", "Flagged", "Use Downstream", "State", "Mean_parent_int_frac"):
        assert not_metric not in options
    assert '<option value="NumMs2Scans" selected>' in page  # the default: first curated with values
    assert 'name="n" min="1" max="2000" value="100"' in page and 'method="get"' in page


async def test_metric_with_one_or_no_values(demo_browser: Browser) -> None:
    page = (await demo_browser.get(DEMO_URL + "?metric=N_peptides")).text  # MaxQuant ran on one demo run
    assert len(circles(page)) == 1 and "not enough runs for limits (1 usable" in page
    r = await demo_browser.get(DEMO_URL + "?metric=Mean_parent_int_frac")  # a column, but no values
    assert r.status == 200 and "<svg" not in r.text and "No run in this range has a numeric value" in r.text
    assert "(no values)</option>" in r.text and len(table_rows(r.text)) == 3


async def test_n_keeps_the_newest_runs(demo_browser: Browser) -> None:
    page = (await demo_browser.get(DEMO_URL + "?metric=TotalScans&n=2")).text
    assert "the newest 2 are shown" in page and len(table_rows(page)) == 2
    assert len(circles(page)) == 1  # small2 (the oldest) is out of range
    assert "small2" not in "".join(table_rows(page))


async def test_unknown_metric_is_400(demo_browser: Browser) -> None:
    r = await demo_browser.get(DEMO_URL + "?metric=nonsense")
    assert r.status == 400 and r.headers["Content-Type"].startswith("text/html")
    assert "metric: &#x27;nonsense&#x27; is not a column" in r.text and "<svg" not in r.text
    r = await demo_browser.get(DEMO_URL + "?metric=%3Cscript%3Ealert(1)%3C/script%3E")
    assert r.status == 400 and "<script>" not in r.text and "&lt;script&gt;" in r.text


JUNK = ["n=abc", "n=-1", "n=0", "n=99999999999999999999999", "n=" + "9" * 5000, "n=1e3", "n=%00", "n=",
        "metric=", "metric=%ff%fe", "metric=%00", "metric=" + "x" * 5000, "metric=TotalScans&metric=nonsense",
        "metric=%ED%A0%80", "n=%ED%A0%80", "%zz=%zz", "metric=TotalScans&n=2&n=abc", "n=\u0663", "&&&=&"]


@pytest.mark.parametrize("query", JUNK)
async def test_junk_query_strings_never_500(demo_browser: Browser, query: str) -> None:
    r = await demo_browser.get(DEMO_URL + "?" + query)
    assert r.status in (200, 400), (query, r.status, r.text[:300])
    assert r.headers["Content-Type"].startswith("text/html")
    if r.status == 400:
        assert "<p class=failed>" in r.text


@pytest.mark.parametrize(("query", "shown"), [("n=-1", 1), ("n=0", 1), ("n=5000", 2000), ("n=" + "9" * 40, 2000)])
async def test_out_of_range_n_is_clamped(demo_browser: Browser, query: str, shown: int) -> None:
    r = await demo_browser.get(DEMO_URL + "?metric=TotalScans&" + query)
    assert r.status == 200 and f'value="{shown}"' in r.text


async def test_non_integer_n_is_400(demo_browser: Browser) -> None:
    r = await demo_browser.get(DEMO_URL + "?n=abc")
    assert r.status == 400 and "n: give a whole number of runs from 1 to 2000" in r.text


async def test_anonymous_is_sent_to_sign_in_and_back(api: Api, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    r = await b.get(DEMO_URL + "?metric=TotalScans&n=5")
    assert r.status == 302
    loc = r.headers["Location"]
    assert urlsplit(loc).path == "/"
    assert parse_qs(urlsplit(loc).query)["next"] == [DEMO_URL + "?metric=TotalScans&n=5"]
    form = await b.get(loc)
    assert f'name="next" value="{DEMO_URL}?metric=TotalScans&amp;n=5"' in form.text
    done = await b.login(DEMO_USER, next_url=DEMO_URL + "?metric=TotalScans&n=5")
    assert done.status == 302 and done.headers["Location"] == DEMO_URL + "?metric=TotalScans&n=5"
    assert len(circles((await b.get(done.headers["Location"])).text)) == 2
    # junk paths and queries: still a redirect to a same-site next, never a 500
    for junk in ("/pipelines/%ff%fe/%00?metric=%ED%A0%80&n=abc", "/pipelines/a/b?next=//evil.example"):
        r = await browsers(api).get(junk)
        assert r.status == 302 and r.headers["Location"].startswith("/?next=%2F")


@pytest.mark.parametrize("path", [
    f"/pipelines/{OTHER_PROJECT}/{OTHER_PIPELINE}",  # exists, another lab's
    f"/pipelines/{DEMO_PROJECT}/no-such-pipeline",
    "/pipelines/no-such-project/x",
    f"/pipelines/{OTHER_PROJECT}/{OTHER_PIPELINE}?metric=nonsense&n=abc",
    "/pipelines/%ff%fe/%ED%A0%80",
    "/pipelines/%00/x",
])
async def test_invisible_or_unknown_pipeline_is_the_same_403(api: Api, browsers: Callable[[Api], Browser],
                                                            path: str) -> None:
    b = browsers(api)
    await b.login(OTHER if "other-lab" not in path else DEMO_USER)
    r = await b.get(path)
    assert r.status == 403 and r.headers["Content-Type"].startswith("text/html")
    assert "<p class=failed>Missing permissions for requested pipeline.</p>" in r.text
    assert "<svg" not in r.text and "Other Pipeline" not in r.text


async def test_other_lab_user_is_403_on_demo(api: Api, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    await b.login(OTHER)
    r = await b.get(DEMO_URL)
    assert r.status == 403 and "Missing permissions" in r.text and "small2" not in r.text
    own = await b.get(f"/pipelines/{OTHER_PROJECT}/{OTHER_PIPELINE}")
    assert own.status == 200 and "1 run in this pipeline" in own.text


async def test_token_access_and_empty_pipeline(api: Api, world: World) -> None:
    r = await api.call(DEMO_URL + "?metric=TotalScans", method="GET")
    assert r.status == 200 and len(circles(r.text)) == 2
    r = await api.call(DEMO_URL, method="GET", who=OTHER)
    assert r.status == 403
    r = await api.call(f"/pipelines/{SHARED_PROJECT}/{EMPTY_PIPELINE}?metric=anything", method="GET")
    assert r.status == 200 and "No runs yet." in r.text and "0 runs in this pipeline" in r.text
    r = await api.call(f"/pipelines/{OTHER_PROJECT}/{OTHER_PIPELINE}", method="GET", who=ADMIN)
    assert r.status == 200  # admins see every pipeline


async def test_guide_set_limits_and_verdicts_end_to_end(world: World, make_api: Any,
                                                        browsers: Callable[[Api], Browser]) -> None:
    """Ten more lab runs, a guide set of the first six: a low value fails (red, marked in the table,
    verdict fail); a high one does not (more MS2 scans are never a fault); one flagged (hollow), one
    rejected (grey), one without the metric (a gap); showing fewer runs changes none of it."""
    lab = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    t0 = dt.datetime(2024, 2, 1, 8, 0)
    values = [20000, 20500, 19800, 20100, 20300, 19900, 5000, None, 99000, 4000]
    keys = []
    for i, v in enumerate(values):
        run = await world.store.call(Store.create_run, lab["id"], f"series-{i}.raw", source="upload",
                                     owner_id=world.users[DEMO_USER]["id"], state="done",
                                     acquired_at=t0 + dt.timedelta(days=i))
        if v is not None:
            await world.store.call(Store.put_qc_values, run["id"], "rawtools", {"NumMs2Scans": v})
        keys.append(run["run_key"])
    await world.store.call(Store.set_run_fields, [int(keys[2][2:])], {"flagged": True})
    await world.store.call(Store.set_run_fields, [int(keys[9][2:])], {"use_downstream": False})
    gs = await world.svc.quality.add_guide_set(world.users[DEMO_USER], DEMO_PROJECT, LAB_PIPELINE,
                                               run_keys=keys[:6])
    b = browsers(await make_api(world))
    await b.login(DEMO_USER)
    page = (await b.get(LAB_URL)).text  # NumMs2Scans is the default metric
    assert '<option value="NumMs2Scans" selected>' in page
    assert "14 runs in this pipeline" in page

    def marks_of(page: str) -> dict[str, dict[str, str]]:
        return {re.search(r"\((rf\d+)\)", t).group(1): m  # type: ignore[union-attr]
                for m, t in zip(circles(page), re.findall(r"<title>([^<]*)</title></circle>", page), strict=True)}

    marks = marks_of(page)
    assert len(marks) == 9  # the four earlier lab runs and the gap have no value
    assert marks[keys[6]]["fill"] == RED and "out" in marks[keys[6]]["class"]
    assert marks[keys[8]]["fill"] == BLUE  # far above, but higher is better
    assert marks[keys[2]]["fill"] == "#fff" and marks[keys[2]]["stroke"] == BLUE
    assert marks[keys[9]]["fill"] == GREY and "rejected" in marks[keys[9]]["class"]
    assert [k for k, m in marks.items() if m["fill"] == RED] == [keys[6]]
    assert f"guide set {gs['id']}" in page and "6 usable runs" in page
    guide = values[:6]
    low = statistics.mean(guide) - 3 * statistics.stdev(guide)
    assert f"limits {fmt_value(low)} to -" in page  # one-sided: no upper limit
    rows = {re.search(r"<td>(rf\d+)</td>", row).group(1): row for row in table_rows(page)}  # type: ignore[union-attr]
    assert list(rows)[:2] == [keys[9], keys[8]]  # newest first
    assert "outlier: levey-jennings" in rows[keys[6]] and rows[keys[6]].startswith("<tr class=out>")
    assert ">fail</td>" in rows[keys[6]] and ">pass</td>" in rows[keys[8]]
    assert "outlier" in rows[keys[9]] and "<td>no</td></tr>" in rows[keys[9]]  # rejected: Use Downstream no
    assert "<td>yes</td><td>yes</td></tr>" in rows[keys[2]]  # flagged, used downstream
    # the newest four only: the same limits and the same outliers
    few = (await b.get(LAB_URL + "?n=4")).text
    assert "the newest 4 are shown" in few and f"limits {fmt_value(low)} to -" in few
    assert [k for k, m in marks_of(few).items() if m["fill"] == RED] == [keys[6]]


async def test_names_are_escaped(world: World, make_api: Any, browsers: Callable[[Api], Browser]) -> None:
    pl = await world.svc.add_pipeline(DEMO_PROJECT, "<i>Evil</i> & Co")
    b = browsers(await make_api(world))
    await b.login(DEMO_USER)
    page = (await b.get(f"/pipelines/{DEMO_PROJECT}/{pl['slug']}")).text
    assert "&lt;i&gt;Evil&lt;/i&gt; &amp; Co" in page and "<i>Evil" not in page
    home = (await b.get("/")).text
    assert f'<a href="/pipelines/{DEMO_PROJECT}/{pl["slug"]}">&lt;i&gt;Evil&lt;/i&gt; &amp; Co</a>' in home


async def test_home_links_pipelines_to_their_trend_page(demo_browser: Browser) -> None:
    home = (await demo_browser.get("/")).text
    for project, pipeline in ((DEMO_PROJECT, DEMO_PIPELINE), (DEMO_PROJECT, LAB_PIPELINE),
                              (SHARED_PROJECT, EMPTY_PIPELINE)):
        m = re.search(rf'<a href="/pipelines/{project}/{pipeline}">([^<]+)</a> <code>{pipeline}</code>', home)
        assert m, (project, pipeline)
    # and the link works
    assert (await demo_browser.get(DEMO_URL)).status == 200
