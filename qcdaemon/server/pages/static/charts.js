// Control charts on uPlot: Levey-Jennings (guide-set mean, ±2 SD band, ±3 SD lines), moving range
// and CUSUM, annotations as vertical markers, outliers by shape *and* colour, box and lasso
// selection, zoom.
"use strict";
(function () {
  const C = { line: "#1f5fa8", ok: "#1f5fa8", warn: "#b35900", fail: "#b00020", grey: "#6b6b6b",
              mean: "#222222", band: "rgba(31,95,168,0.10)", ann: "#5b3a99", sel: "#000000" };

  function series(c) {
    const p = c.points;
    if (c.kind === "moving_range") return [p.map(q => q.plotted ?? null)];
    if (c.kind === "cusum_mean" || c.kind === "cusum_var") return [p.map(q => q.cusum_pos ?? null), p.map(q => q.cusum_neg ?? null)];
    return [p.map(q => q.value)];
  }

  function severity(pt) {
    let s = 0;
    for (const v of pt.violations || []) s = Math.max(s, v.severity === "fail" ? 2 : v.severity === "warn" ? 1 : 0);
    return s;
  }

  function marker(ctx, kind, x, y, r) {
    ctx.beginPath();
    if (kind === "fail") {  // a cross
      ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
      ctx.lineWidth = 2.5; ctx.strokeStyle = C.fail; ctx.stroke(); return;
    }
    if (kind === "warn") {  // a triangle
      ctx.moveTo(x, y - r * 1.2); ctx.lineTo(x + r, y + r * 0.8); ctx.lineTo(x - r, y + r * 0.8); ctx.closePath();
      ctx.fillStyle = C.warn; ctx.fill(); return;
    }
    if (kind === "rejected") { ctx.rect(x - r, y - r, 2 * r, 2 * r); ctx.lineWidth = 1.5; ctx.strokeStyle = C.grey; ctx.stroke(); return; }
    if (kind === "excluded") { ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.lineWidth = 1.5; ctx.strokeStyle = C.grey; ctx.stroke(); return; }
    if (kind === "training") {
      ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.closePath();
      ctx.fillStyle = C.ok; ctx.fill(); return;
    }
    ctx.arc(x, y, r * 0.75, 0, 2 * Math.PI); ctx.fillStyle = C.ok; ctx.fill();
  }

  function pointKind(pt) {
    const s = severity(pt);
    if (s === 2) return "fail";
    if (s === 1) return "warn";
    if (pt.rejected) return "rejected";
    if (pt.excluded) return "excluded";
    if (pt.training) return "training";
    return "ok";
  }

  // contiguous stretches of points judged against the same guide set: [gid, first, last]
  function stretches(points) {
    const out = [];
    let start = 0;
    for (let i = 1; i <= points.length; i++) {
      if (i === points.length || points[i].guide_set !== points[start].guide_set) {
        if (points[start].guide_set) out.push([points[start].guide_set, start, i - 1]);
        start = i;
      }
    }
    return out;
  }

  function levels(c, row) {  // [value, style] lines of one guide set's limits
    if (!row) return [];
    const out = [];
    if (c.kind === "values") {
      if (row.mean !== undefined && row.mean !== null) out.push([row.mean, "mean"]);
      const lj = (row.rules || {}).levey_jennings || (row.rules || {}).robust;
      if (lj) {
        for (const k of ["warn_low", "warn_high"]) if (lj[k] !== null && lj[k] !== undefined) out.push([lj[k], "warn"]);
        for (const k of ["fail_low", "fail_high"]) if (lj[k] !== null && lj[k] !== undefined) out.push([lj[k], "fail"]);
      }
    } else if (c.kind === "moving_range") {
      if (row.center !== undefined && row.center !== null) out.push([row.center, "mean"]);
      if (row.ucl !== undefined && row.ucl !== null) out.push([row.ucl, "fail"]);
    } else if (row.h !== undefined && row.h !== null) {
      out.push([row.h, "fail"]);
    }
    return out;
  }

  function bandOf(c, row) {
    if (!row || c.kind !== "values") return null;
    const lj = (row.rules || {}).levey_jennings || (row.rules || {}).robust;
    if (!lj) return null;
    const lo = lj.warn_low ?? row.mean, hi = lj.warn_high ?? row.mean;
    return lo === null || hi === null || lo === undefined || hi === undefined ? null : [lo, hi];
  }

  // Is (x, y) inside the polygon? Ray casting (even-odd rule): a horizontal ray from the point
  // crosses the polygon's edges an odd number of times exactly when the point is inside
  // (W. R. Franklin, "PNPOLY - Point Inclusion in Polygon Test"; Shimrat, CACM 5(8), 1962).
  function inPolygon(x, y, poly) {
    let inside = false;
    for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      const [xi, yi] = poly[i], [xj, yj] = poly[j];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }

  // Freehand lasso on a chart: press, draw around the points, release. Cancelling the pointerdown
  // keeps uPlot's own (mouse) drag from starting; the polygon is in CSS pixels of the plot area.
  function lasso(u, active, done) {
    const over = u.over, ns = "http://www.w3.org/2000/svg";
    let poly = null, svg = null, line = null;
    over.addEventListener("pointerdown", ev => {
      if (!active() || ev.button !== 0) return;
      ev.preventDefault();
      over.setPointerCapture(ev.pointerId);
      const r = over.getBoundingClientRect();
      poly = [[ev.clientX - r.left, ev.clientY - r.top]];
      svg = document.createElementNS(ns, "svg");
      svg.setAttribute("class", "lasso");
      svg.setAttribute("aria-hidden", "true");
      line = document.createElementNS(ns, "polygon");
      svg.append(line);
      over.append(svg);
    });
    over.addEventListener("pointermove", ev => {
      if (!poly) return;
      const r = over.getBoundingClientRect();
      // A busy browser delivers one pointermove per frame; the moves it merged into it (a corner
      // of a quick stroke among them) come from getCoalescedEvents, so the polygon keeps them.
      const moves = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
      for (const m of moves.length ? moves : [ev]) poly.push([m.clientX - r.left, m.clientY - r.top]);
      line.setAttribute("points", poly.map(p => p.join(",")).join(" "));
    });
    const end = ev => {
      if (!poly) return;
      const shape = poly;
      poly = null;
      svg.remove();
      if (ev.type === "pointerup" && shape.length >= 3) done(shape);
    };
    over.addEventListener("pointerup", end);
    over.addEventListener("pointercancel", end);
  }

  function draw(box, c, o) {
    const pts = c.points;
    const off = (c.total || pts.length) - pts.length;
    const xs = pts.map((p, i) => o.xaxis === "order" ? off + i + 1 : Date.parse(p.time) / 1000);
    const ys = series(c);
    const kinds = pts.map(pointKind);
    const limitRows = Object.fromEntries((c.limits || []).map(r => [r.guide_set, r]));
    const parts = stretches(pts);
    const half = o.xaxis === "order" ? 0.5 : 0;
    const annX = (c.annotations || []).map(a => {
      const t = Date.parse(a.time) / 1000;
      if (o.xaxis !== "order") return [t, a];
      const i = pts.findIndex(p => Date.parse(p.time) / 1000 >= t);
      return [i < 0 ? null : xs[i] - 0.5, a];
    }).filter(v => v[0] !== null);
    const log = c.kind === "values" && c.metric && c.metric.scale === "log";

    function drawLimits(u, bands) {
      const ctx = u.ctx;
      ctx.save();
      ctx.beginPath(); ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height); ctx.clip();
      for (const [gid, a, b] of parts) {
        const row = limitRows[gid];
        const x0 = u.valToPos(xs[a] - half, "x", true), x1 = u.valToPos(xs[b] + half, "x", true);
        if (bands) {
          const band = bandOf(c, row);
          if (band) {
            const y0 = u.valToPos(band[1], "y", true), y1 = u.valToPos(band[0], "y", true);
            ctx.fillStyle = C.band; ctx.fillRect(x0, y0, Math.max(x1 - x0, 1), y1 - y0);
          }
          continue;
        }
        for (const [v, style] of levels(c, row)) {
          const y = u.valToPos(v, "y", true);
          ctx.beginPath(); ctx.moveTo(x0, y); ctx.lineTo(x1, y);
          ctx.setLineDash(style === "mean" ? [] : style === "warn" ? [6, 3] : [2, 3]);
          ctx.strokeStyle = style === "mean" ? C.mean : style === "warn" ? C.warn : C.fail;
          ctx.lineWidth = style === "mean" ? 1.5 : 1.5; ctx.stroke();
        }
      }
      ctx.setLineDash([]);
      if (!bands) {
        for (const [x, a] of annX) {
          const px = u.valToPos(x, "x", true);
          ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height);
          ctx.setLineDash([4, 4]); ctx.strokeStyle = C.ann; ctx.lineWidth = 1.5; ctx.stroke(); ctx.setLineDash([]);
          ctx.beginPath(); ctx.moveTo(px - 6, u.bbox.top); ctx.lineTo(px + 6, u.bbox.top); ctx.lineTo(px, u.bbox.top + 10);
          ctx.closePath(); ctx.fillStyle = C.ann; ctx.fill();
          ctx.fillStyle = C.ann; ctx.font = `${Math.round(11 * devicePixelRatio)}px sans-serif`;
          ctx.fillText(a.kind, px + 8, u.bbox.top + 12 * devicePixelRatio);
        }
      }
      ctx.restore();
    }

    function drawMarkers(u) {
      const ctx = u.ctx, r = 4 * devicePixelRatio;
      ctx.save();
      ctx.beginPath(); ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height); ctx.clip();
      const [i0, i1] = [u.series[0].idxs ? u.series[0].idxs[0] : 0, u.series[0].idxs ? u.series[0].idxs[1] : xs.length - 1];
      const dense = (i1 - i0) > 2000;
      for (let s = 0; s < ys.length; s++) {
        for (let i = i0; i <= i1; i++) {
          const v = ys[s][i];
          if (v === null || v === undefined) continue;
          const k = kinds[i];
          if (dense && k === "ok") continue;  // thousands of in-control points: the line shows them; violations always drawn
          const x = u.valToPos(xs[i], "x", true), y = u.valToPos(v, "y", true);
          marker(ctx, k, x, y, r);
          if (o.selected.has(pts[i].run)) {
            ctx.beginPath(); ctx.arc(x, y, r * 1.9, 0, 2 * Math.PI); ctx.lineWidth = 2; ctx.strokeStyle = C.sel; ctx.stroke();
          }
        }
      }
      ctx.restore();
    }

    const width = Math.max(box.clientWidth - 10, 280);
    const seriesOpts = [{ label: o.xaxis === "order" ? "run" : "time" }];
    const labels = c.kind.startsWith("cusum") ? ["CUSUM+", "CUSUM-"] : [c.kind === "moving_range" ? "moving range" : "value"];
    labels.forEach((l, k) => seriesOpts.push({ label: l, stroke: k ? C.grey : C.line, width: 1, spanGaps: false,
                                              points: { show: false } }));
    const opts = {
      width, height: o.height || 260,
      legend: { show: false },
      cursor: { drag: { x: true, y: true, setScale: false }, points: { show: false } },
      scales: { x: { time: o.xaxis !== "order", range: (u, min, max) => { const pad = Math.max((max - min) * 0.02, o.xaxis === "order" ? 0.5 : 3600); return [min - pad, max + pad]; } },
                y: log ? { distr: 3 } : {} },
      axes: [{ stroke: "#333", grid: { stroke: "#e4e4e4" } },
             { stroke: "#333", grid: { stroke: "#e4e4e4" }, size: 70,
               values: (u, vals) => vals.map(v => window.QC.fmt(v)) }],
      series: seriesOpts,
      hooks: {
        drawClear: [u => drawLimits(u, true)],
        draw: [u => { drawLimits(u, false); drawMarkers(u); }],
        setCursor: [u => { if (o.onHover) o.onHover(u.cursor.idx === null || u.cursor.idx === undefined ? null : pts[u.cursor.idx]); }],
        setSelect: [u => {
          const s = u.select;
          if (s.width < 3) return;
          const xa = u.posToVal(s.left, "x"), xb = u.posToVal(s.left + s.width, "x");
          const yb = u.posToVal(s.top, "y"), ya = u.posToVal(s.top + s.height, "y");
          const mode = o.mode();
          if (mode === "zoom") u.setScale("x", { min: xa, max: xb });
          else if (mode === "guide") {
            const inX = pts.filter((p, i) => xs[i] >= xa && xs[i] <= xb);
            if (inX.length && o.onRange) o.onRange(inX[0].time, inX[inX.length - 1].time);
          } else if (mode === "select") {  // a box (the lasso selects on its own: lasso())
            const keys = [];
            for (let i = 0; i < xs.length; i++) {
              if (xs[i] < xa || xs[i] > xb) continue;
              if (ys.some(y => y[i] !== null && y[i] !== undefined && y[i] >= ya && y[i] <= yb)) keys.push(pts[i].run);
            }
            if (o.onSelect) o.onSelect(keys);
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        }],
      },
    };
    const u = new uPlot(opts, [xs, ...ys], box);
    lasso(u, () => o.mode() === "lasso", poly => {
      const keys = [], [x0, x1] = [u.scales.x.min, u.scales.x.max];
      for (let i = 0; i < xs.length; i++) {
        if (xs[i] < x0 || xs[i] > x1) continue;
        const px = u.valToPos(xs[i], "x");
        if (ys.some(y => y[i] !== null && y[i] !== undefined && inPolygon(px, u.valToPos(y[i], "y"), poly))) keys.push(pts[i].run);
      }
      if (o.onSelect) o.onSelect(keys);
    });
    u.qcXs = xs;
    u.qcKeys = pts.map(p => p.run);
    u.qcKinds = kinds;
    u.qcAnnotations = c.annotations || [];
    return u;
  }

  function pan(u, frac) {
    const x = u.scales.x, w = x.max - x.min;
    u.setScale("x", { min: x.min + w * frac, max: x.max + w * frac });
  }

  function reset(u) {
    const xs = u.qcXs;
    if (xs.length) { const pad = Math.max((xs[xs.length - 1] - xs[0]) * 0.02, 0.5); u.setScale("x", { min: xs[0] - pad, max: xs[xs.length - 1] + pad }); }
  }

  window.QC.charts = { draw, pan, reset, severity, pointKind, inPolygon };
})();
