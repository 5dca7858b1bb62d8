"""The QC trend page ``GET /pipelines/{project}/{pipeline}?metric=<column>&n=<runs>``: one metric of
``/api/qc-data`` over the pipeline's newest runs as a server-rendered SVG chart (no JavaScript,
nothing fetched from elsewhere), with the guide-set control limits and the runs' verdicts, and the
runs as a table.

Limits and outliers are those of the pipeline's quality control (``/api/qc/chart``,
:mod:`qcdaemon.qc.verdicts`): each run is drawn against the limits of the guide set in force at its
acquisition time, and a point is an outlier when one of the metric's rules flags it. Neither depends
on how many runs the page shows.  Pure pieces first, the handler last.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlencode

from aiohttp import web

from qcdaemon.errors import Forbidden
from qcdaemon.server.keys import SERVICE, USER
from qcdaemon.server.pages.html import esc, is_text, page, pipeline_url, safe_next
from qcdaemon.store import Store

CURATED = ("NumMs2Scans", "MeanDutyCycle(s)", "MedianPeakWidthAt50%H(s)", "Ms1MedianSummedIntensity",
           "MS/MS Identified [%]", "N_protein_groups", "N_peptides", "Oxidations [%]", "N_missed_cleavages_eq_1 [%]")
NOT_METRICS = frozenset({"Index", "DateAcquired"})  # numeric, but the x axis rather than a metric
DEFAULT_N, MAX_N = 100, 2000
BLUE, RED, GREY = "#1f5fa8", "#b00020", "#9a9a9a"
W, H, ML, MR, MT, MB = 960, 320, 72, 36, 12, 40  # chart size and margins (left, right, top, bottom)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# -- pure computations ------------------------------------------------------------------------


def as_number(v: Any) -> float | None:
    """A finite number of a QC column as float; None for gaps (null, text, booleans, inf/NaN)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def nice_ticks(lo: float, hi: float) -> list[float]:
    """4–5 evenly spaced round values (steps 1, 2, 2.5, 5 × 10^k), the first ≤ lo, the last ≥ hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("ticks need finite bounds")
    lo, hi = min(lo, hi), max(lo, hi)
    if hi - lo <= max(abs(lo), abs(hi)) * 1e-9:  # one value (or all equal): a band around it
        pad = max(abs(lo), abs(hi)) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    span = hi - lo
    if not math.isfinite(span):  # near the float limits: plain quarters
        return [lo * (1 - i / 4) + hi * (i / 4) for i in range(5)]
    e = math.floor(math.log10(span))
    best: tuple[tuple[int, float], list[float]] | None = None
    for k in range(e - 2, e + 2):
        for m in (1, 2, 2.5, 5):
            step = m * 10.0**k
            first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            count = last - first + 1
            score = (0, (last - first) * step) if count in (4, 5) else (1, abs(count - 4.5))
            if best is None or score < best[0]:
                best = score, [float(f"{(first + i) * step:.12g}") for i in range(count)]
    assert best is not None
    return best[1]


def _decimals(x: float, most: int = 12) -> int:
    """Decimals needed to write ``x`` (a tick step) exactly."""
    for d in range(most + 1):
        if abs(round(x, d) - x) <= abs(x) * 1e-9:
            return d
    return most


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Short labels for one axis: k/M/G/T suffixes for large values, as many decimals as the step needs."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    top = max(abs(t) for t in ticks) or 1.0
    if top >= 1e15 or step < 1e-4:
        exp = math.floor(math.log10(top))
        d = min(_decimals(step / 10.0**exp), 6)
        return ["0" if t == 0 else f"{t:.{d}e}" for t in ticks]
    units = ((1e12, 1e12, "T"), (1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k"))  # (from, scale, suffix)
    scale, suffix = next(((s, u) for f, s, u in units if top >= f), (1.0, ""))
    d = _decimals(step / scale, 6)
    return ["0" if t == 0 else f"{t / scale:.{d}f}{suffix}" for t in ticks]


def fmt_value(v: float) -> str:
    """A metric value for people: integers as such, otherwise about six significant digits."""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 1e15 or abs(v) < 1e-4:
        return f"{v:.6g}"
    d = max(0, 5 - math.floor(math.log10(abs(v))))
    text = f"{v:.{d}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text  # never strip an integer's zeros


def iso_datetime(ns: Any) -> str:
    """``DateAcquired`` (epoch nanoseconds, UTC) as ISO 8601; "" when unknown or out of range."""
    if isinstance(ns, bool) or not isinstance(ns, int):
        return ""
    try:
        return (_EPOCH + dt.timedelta(microseconds=ns // 1000)).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, ValueError):
        return ""


def metric_columns(data: Mapping[str, Sequence[Any]]) -> list[str]:
    """Numeric columns with at least one value: the curated ones first, then the others alphabetically."""
    numeric = {c for c, vals in data.items() if c not in NOT_METRICS and any(as_number(v) is not None for v in vals)}
    return [c for c in CURATED if c in numeric] + sorted(numeric - set(CURATED), key=lambda c: (c.casefold(), c))


def parse_n(raw: str | None) -> int:
    """The ``n`` query parameter: default when absent/empty, clamped to 1..MAX_N; ValueError when not an integer."""
    s = (raw or "").strip()
    if not s:
        return DEFAULT_N
    if not re.fullmatch(r"[+-]?[0-9]{1,4000}", s):
        raise ValueError(f"n: give a whole number of runs from 1 to {MAX_N}")
    return min(max(int(s), 1), MAX_N)


class Point(NamedTuple):
    value: float | None  # None: a gap
    label: str  # x-axis label (the acquisition date)
    tip: str  # tooltip
    flagged: bool = False
    rejected: bool = False
    out: bool = False  # a rule of the metric flags this run
    low: float | None = None  # the limits of the run's guide set (None: none on that side)
    high: float | None = None
    center: float | None = None


def x_label_indices(n: int, most: int = 6) -> list[int]:
    return list(range(n)) if n <= most else sorted({round(k * (n - 1) / (most - 1)) for k in range(most)})


def build_svg(points: Sequence[Point], title: str = "") -> str:
    """The chart: x = run position, gaps for missing values, each run's guide-set limits as steps
    (solid) and centre (dashed), outliers red, flagged hollow, rejected grey, a ``<title>`` tooltip
    per point; "" without values."""
    valued = [p.value for p in points if p.value is not None]
    if not valued:
        return ""
    bounds = [v for p in points if p.value is not None for v in (p.low, p.high, p.center)
              if v is not None and math.isfinite(v)]
    ticks = nice_ticks(min(valued + bounds), max(valued + bounds))
    y0, y1 = ticks[0], ticks[-1]
    pw, ph, n = W - ML - MR, H - MT - MB, len(points)

    def x(i: float) -> float:
        return ML + pw * (i + 0.5) / n

    def y(v: float) -> float:
        return MT + ph * (1 - (v / 2 - y0 / 2) / (y1 / 2 - y0 / 2))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" viewBox="0 0 {W} {H}" width="100%" role="img" '
           f'aria-label="{esc(title)}" font-family="system-ui,sans-serif" font-size="11">']
    for t, label in zip(ticks, tick_labels(ticks), strict=True):
        out.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>'
                   f'<text x="{ML - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{esc(label)}</text>')
    for name, dash in (("low", ""), ("high", ""), ("center", ' stroke-dasharray="6 4"')):
        steps = [f"M{x(i - 0.5):.1f},{y(v):.1f}H{x(i + 0.5):.1f}" for i, p in enumerate(points)
                 if (v := getattr(p, name)) is not None and math.isfinite(v)]
        if steps:
            cls = "center" if name == "center" else "limit"
            out.append(f'<path class="{cls} {name}" d="{"".join(steps)}" fill="none" stroke="#555"{dash}/>')
    for i in x_label_indices(n):
        out.append(f'<text x="{x(i):.1f}" y="{H - MB + 16}" text-anchor="middle">{esc(points[i].label)}</text>')
    out.append(f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    path, pen_up = [], True
    for i, p in enumerate(points):
        if p.value is None:
            pen_up = True
            continue
        path.append(f"{'M' if pen_up else 'L'}{x(i):.1f},{y(p.value):.1f}")
        pen_up = False
    out.append(f'<path class="line" d="{" ".join(path)}" fill="none" stroke="#8aa9d6" stroke-width="1.5"/>')
    for i, p in enumerate(points):
        if p.value is None:
            continue
        color = GREY if p.rejected else RED if p.out else BLUE
        cls = " ".join(["pt"] + ["out"] * p.out + ["flagged"] * p.flagged + ["rejected"] * p.rejected)
        out.append(f'<circle class="{cls}" cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="4" '
                   f'fill="{"#fff" if p.flagged else color}" stroke="{color}" stroke-width="2">'
                   f"<title>{esc(p.tip)}</title></circle>")
    out.append("</svg>")
    return "".join(out)


def point_limits(limit_row: Mapping[str, Any] | None) -> tuple[float | None, float | None, float | None]:
    """(low, high, centre) to draw for one guide set's row of ``/api/qc/chart`` limits: the
    fail limits of its Levey-Jennings rule, else of its robust rule, else just the mean."""
    if not limit_row:
        return None, None, None
    rules = limit_row.get("rules") or {}
    for kind in ("levey_jennings", "robust"):
        lim = rules.get(kind)
        if lim:
            return lim.get("fail_low"), lim.get("fail_high"), lim.get("center")
    return None, None, limit_row.get("mean")


# -- the page -----------------------------------------------------------------------------------

_CSS = ("<style>.dot{display:inline-block;width:.7rem;height:.7rem;border-radius:50%;border:2px solid;"
        "vertical-align:middle;margin:0 .2rem 0 .8rem}tr.out td{background:#fdf0f2}</style>")


def _html(status: int, title: str, body: str) -> web.Response:
    return web.Response(text=page(title, body, head=_CSS), status=status, content_type="text/html",
                        charset="utf-8", headers={"Cache-Control": "no-store"})


def _message(status: int, message: str, back: str = "/") -> web.Response:
    return _html(status, "qcdaemon: QC trend", f'<h1>QC trend</h1><p class=failed>{esc(message)}</p>'
                 f'<p><a href="{esc(back)}">Back</a> &middot; <a href="/">All projects</a></p>')


def _selector(url: str, metrics: Sequence[str], metric: str, n: int) -> str:
    options = [*([] if metric in metrics else [metric]), *metrics]
    opts = "".join(f'<option value="{esc(m)}"{" selected" if m == metric else ""}>{esc(m)}'
                   f'{"" if m in metrics else " (no values)"}</option>' for m in options)
    return (f'<form method="get" action="{esc(url)}"><label>Metric <select name="metric">{opts}</select></label> '
            f'<label>newest <input type="number" name="n" min="1" max="{MAX_N}" value="{n}"> runs</label> '
            '<button type="submit">Show</button></form>')


def _chart(data: Mapping[str, list[Any]], metric: str, values: list[float | None],
           qc: Mapping[str, Any]) -> tuple[str, dict[str, list[str]]]:
    """The chart, its legend and note; and per run key the rules that flag it."""
    keys = ("RawFile", "RunKey", "DateAcquired", "Flagged", "Use Downstream")
    col = {k: data.get(k) or [None] * len(values) for k in keys}
    rejected = [u is False for u in col["Use Downstream"]]
    by_run = {p["run"]: p for p in qc["points"]}
    limits = {row["guide_set"]: row for row in qc["limits"]}
    flags: dict[str, list[str]] = {}
    points = []
    for i, v in enumerate(values):
        key = col["RunKey"][i]
        qp = by_run.get(key) or {}
        viol = qp.get("violations") or []
        flags[key] = [f"{x['rule'].replace('_', '-')} {x['detail']} ({x['severity']})" for x in viol]
        low, high, center = point_limits(limits.get(qp.get("guide_set")))
        tip = (f"{col['RawFile'][i]} ({key})\n{metric}: {'-' if v is None else fmt_value(v)}\n"
               f"{iso_datetime(col['DateAcquired'][i]) or 'acquired: unknown'}"
               + (f"\nguide set {qp['guide_set']}" if qp.get("guide_set") else "")
               + "".join(f"\n{f}" for f in flags[key]))
        points.append(Point(v, iso_datetime(col["DateAcquired"][i])[:10] or str(key or ""), tip,
                            bool(col["Flagged"][i]), rejected[i], bool(viol) and v is not None, low, high, center))
    if not any(v is not None for v in values):
        return f"<p class=notice>No run in this range has a numeric value for {esc(metric)}.</p>", flags
    used = {by_run[k].get("guide_set") for k in col["RunKey"] if k in by_run}
    notes = []
    for row in qc["limits"]:
        if row["guide_set"] not in used:
            continue
        low, high, center = point_limits(row)
        what = (f"limits {fmt_value(low) if low is not None else '-'} to {fmt_value(high) if high is not None else '-'}"
                if low is not None or high is not None else row.get("note") or "no limits")
        notes.append(f"<li>guide set {esc(row['guide_set'])} (in force from {esc(row['from'][:16])}, "
                     f"{row['n']} usable runs): {esc(what)}</li>")
    rules = ", ".join(r["rule"].replace("_", "-") for r in qc["rules"])
    note = (f"<p>Limits come from the guide set in force at each run's acquisition time (not from the runs "
            f"shown); rules for {esc(metric)}: {esc(rules)}.</p><ul>{''.join(notes)}</ul>")
    legend = "".join(f'<span class=dot style="background:{f};border-color:{c}"></span>{t}' for f, c, t in (
        (BLUE, BLUE, "in control"), (RED, RED, "flagged by a rule"), ("#fff", BLUE, "flagged"),
        (GREY, GREY, "rejected (not used downstream)")))
    return build_svg(points, f"{metric} over runs") + f"<p>{legend}</p>" + note, flags


def _table(data: Mapping[str, list[Any]], metric: str, values: list[float | None],
           flags: Mapping[str, list[str]]) -> str:
    def cell(k: str, i: int) -> Any:
        return (data.get(k) or [None] * len(values))[i]

    parts = [f"<table><tr><th>Run</th><th>File</th><th>Acquired (UTC)</th><th>State</th><th>{esc(metric)}</th>"
             "<th>Verdict</th><th>Flagged</th><th>Use Downstream</th></tr>"]
    for i in reversed(range(len(values))):
        v = values[i]
        hits = flags.get(cell("RunKey", i)) or []
        out = bool(hits) and v is not None
        mark = f" <b class=failed>outlier: {esc('; '.join(hits))}</b>"
        state = str(cell("State", i) or "")
        verdict = cell("Verdict", i)
        why = cell("Verdict reasons", i) or ""
        parts.append(
            f"<tr{' class=out' if out else ''}><td>{esc(str(cell('RunKey', i)))}</td>"
            f"<td>{esc(str(cell('RawFile', i)))}</td><td>{esc(iso_datetime(cell('DateAcquired', i)))}</td>"
            f'<td class="{esc(state)}">{esc(state)}</td><td>{"" if v is None else esc(fmt_value(v))}'
            f"{mark if out else ''}</td>"
            f'<td title="{esc(why)}">{esc(verdict) if verdict else "-"}</td>'
            f"<td>{'yes' if cell('Flagged', i) else 'no'}</td>"
            f"<td>{'no' if cell('Use Downstream', i) is False else 'yes'}</td></tr>")
    return "".join(parts) + "</table>"


async def trend_page(request: web.Request) -> web.StreamResponse:
    user = request[USER]
    if user is None:  # session pages send visitors to the sign-in form, and back here afterwards
        back = safe_next(str(request.rel_url))
        return web.Response(status=302, headers={"Location": "/?" + urlencode({"next": back})})
    svc = request.app[SERVICE]
    project, pipeline = request.match_info["project"], request.match_info["pipeline"]
    try:
        if not (is_text(project) and is_text(pipeline)):
            raise Forbidden("Missing permissions for requested pipeline.")
        pl = await svc.visible_pipeline(user, project, pipeline)
    except Forbidden as exc:  # unknown or invisible: the same answer, as the API gives
        return _message(403, str(exc))
    url = pipeline_url(project, pipeline)
    try:
        n = parse_n(request.query.get("n"))
    except ValueError as exc:
        return _message(400, str(exc), url)
    proj = await svc.store.call(Store.visible_project, user, project)
    total = int(await svc.store.call(Store.scalar, "SELECT count(*) FROM runs WHERE pipeline_id = ?", [pl["id"]]) or 0)
    data = await svc.qc_data(user, project, pipeline, n, None)
    head = (f'<p><a href="/">&larr; All projects</a></p><h1>{esc(proj["name"] if proj else project)} / '
            f'{esc(pl["name"])}</h1><p>{total} run{"s" * (total != 1)} in this pipeline'
            + (f"; the newest {len(data['RunKey'])} are shown" if data and total > len(data["RunKey"]) else "")
            + ".</p>")
    title = f"qcdaemon: {pl['name']} QC trend"
    if not data:
        return _html(200, title, head + "<p class=notice>No runs yet.</p>")
    metrics = metric_columns(data)
    metric = request.query.get("metric", "").strip() or next(iter(metrics), "")
    if metric and metric not in data:  # repeated valid UTF-8 (no lone surrogates) and short
        shown = metric.encode("utf-8", "replace").decode("utf-8")[:80] + "\u2026" * (len(metric) > 80)
        return _message(400, f"metric: {shown!r} is not a column of this pipeline's QC data.", url)
    if not metric:
        return _html(200, title, head + "<p class=notice>No numeric QC values yet.</p>")
    values = [as_number(v) for v in data[metric]]
    qc = await svc.quality.chart(user, project, pipeline, metric, require_values=False)
    chart, flags = _chart(data, metric, values, qc)
    return _html(200, title, head + _selector(url, metrics, metric, n) + chart + _table(data, metric, values, flags))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/pipelines/{project}/{pipeline}", trend_page)
