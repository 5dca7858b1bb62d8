// Pipeline page: several metrics' control charts, selection -> flag/unflag/accept/reject/exclude,
// annotations, guide sets, rules, upload, and a paginated runs table. All data from JSON routes.
"use strict";
(function () {
  const { api, el, fmt, fmtTime, status } = window.QC;
  const root = document.getElementById("dash");
  const scope = { project: root.dataset.project, pipeline: root.dataset.pipeline };
  const storeKey = `qcd.metrics.${scope.project}/${scope.pipeline}`;
  const state = { metrics: [], chosen: [], charts: new Map(), selected: new Set(), info: new Map(), offset: 0, pageSize: 25 };
  const $ = id => document.getElementById(id);
  window.QC.dash = state;  // for scripts and tests: the charts (uPlot instances) and the selection

  function view() {
    const last = parseInt($("last").value, 10);
    const v = { kind: $("kind").value, xaxis: $("xaxis").value, last: Number.isFinite(last) && last > 0 ? last : null };
    if ($("from").value) v.start = $("from").value + "T00:00:00Z";
    if ($("to").value) v.end = $("to").value + "T23:59:59Z";
    return v;
  }

  function saveChoice() { try { localStorage.setItem(storeKey, JSON.stringify(state.chosen)); } catch (e) { /* private mode */ } }
  function loadChoice() {
    try { const v = JSON.parse(localStorage.getItem(storeKey) || "null"); return Array.isArray(v) ? v : null; } catch (e) { return null; }
  }

  async function loadStatus() {
    try {
      const s = (await api("/api/qc/status", scope)).pipelines[0];
      const lr = s.latest_run;
      status($("status-line"), `${s.status}: ${s.reason}` + (lr ? ` · latest ${lr.run} (${lr.verdict || "no verdict"}, acquired ${fmtTime(lr.acquired)})` : ""), s.status === "DANGER");
    } catch (e) { status($("status-line"), e.message, true); }
  }

  async function loadMetrics() {
    const m = await api("/api/qc/metrics", scope);
    state.metrics = m.metrics.filter(x => x.has_values);
    const saved = loadChoice();
    const known = new Set(state.metrics.map(x => x.column));
    state.chosen = (saved || state.metrics.filter(x => x.shown).map(x => x.column).slice(0, 4)).filter(c => known.has(c));
    if (!state.chosen.length && state.metrics.length) state.chosen = [state.metrics[0].column];
    const list = $("metric-list");
    list.replaceChildren();
    const selMetric = $("sel-metric"), rulesMetric = $("rules-metric");
    selMetric.replaceChildren(); rulesMetric.replaceChildren();
    for (const x of state.metrics) {
      const cb = el("input", { type: "checkbox", value: x.column, checked: state.chosen.includes(x.column) ? "checked" : null });
      cb.addEventListener("change", () => {
        state.chosen = cb.checked ? [...state.chosen, x.column] : state.chosen.filter(c => c !== x.column);
        saveChoice(); drawAll();
      });
      list.append(el("label", {}, cb, " " + (x.label || x.column) + (x.unit ? ` (${x.unit})` : "")));
      selMetric.append(el("option", { value: x.column, text: x.label || x.column }));
      rulesMetric.append(el("option", { value: x.column, text: x.label || x.column }));
    }
    showRules();
  }

  function showRules() {
    const m = state.metrics.find(x => x.column === $("rules-metric").value);
    $("rules-json").value = m ? JSON.stringify(m.custom_rules || m.rules || []) : "";
  }

  // file names and verdict reasons of runs, fetched when first needed (hover, a chart's table)
  const asked = new Map();
  async function runInfo(keys) {
    const missing = keys.filter(k => !state.info.has(k) && !asked.has(k));
    if (missing.length) {
      const job = api("/api/qc/verdicts", { ...scope, run_keys: missing }).then(vd => { for (const r of vd.runs) state.info.set(r.run_key, r); })
        .finally(() => { for (const k of missing) asked.delete(k); });
      for (const k of missing) asked.set(k, job);
    }
    await Promise.all(keys.map(k => asked.get(k)).filter(Boolean));
  }

  function hoverText(pt) {
    if (!pt) return "Hover over a point for its details.";
    const info = state.info.get(pt.run) || {};
    const why = (pt.violations || []).map(v => `${v.rule}: ${v.detail} (${v.severity})`).join("; ");
    const reasons = (info.reasons || []).map(r => r.text).join("; ");
    return `${pt.run} ${info.name || ""} · ${fmtTime(pt.time)} · value ${fmt(pt.value)} · z ${fmt(pt.z)} · verdict ${pt.verdict || "-"}` +
      (why ? ` · this metric: ${why}` : "") + (reasons ? ` · run: ${reasons}` : "") + (pt.why_no_value ? ` · ${pt.why_no_value}` : "");
  }

  function tableOf(c) {
    const rows = c.points.map(p => el("tr", {},
      el("td", {}, el("a", { href: `/runs/${p.run}`, text: p.run })), el("td", { text: (state.info.get(p.run) || {}).name || "" }),
      el("td", { text: fmtTime(p.time) }), el("td", { text: fmt(c.kind === "values" ? p.value : c.kind === "moving_range" ? p.plotted : p.cusum_pos) }),
      el("td", { text: fmt(p.z) }), el("td", { text: window.QC.charts.pointKind(p) }),
      el("td", { text: (p.violations || []).map(v => `${v.rule} (${v.severity})`).join(", ") })));
    return el("table", {}, el("thead", {}, el("tr", {}, ...["Run", "File", "Time", "Value", "z", "Marker", "Violations"].map(h => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...rows));
  }

  async function drawOne(metric, holder, v) {
    const c = await api("/api/qc/chart", { ...scope, metric, kind: v.kind, last: v.last, start: v.start, end: v.end, compact: true });
    for (const p of c.points) { if (p.value === undefined) p.value = null; if (p.z === undefined) p.z = null; }
    holder.plot.replaceChildren();
    const lim = (c.limits || []).find(r => r.note);
    holder.note.textContent = `${c.points.length} of ${c.total} runs drawn` + (lim ? ` · ${lim.guide_set}: ${lim.note}` : "");
    const u = window.QC.charts.draw(holder.plot, c, {
      xaxis: v.xaxis, selected: state.selected, mode: () => $("dragmode").value,
      onHover: pt => { holder.hover.textContent = hoverText(pt); if (pt) runInfo([pt.run]).then(() => { if (holder.hover.dataset.run === pt.run) holder.hover.textContent = hoverText(pt); }); holder.hover.dataset.run = pt ? pt.run : ""; },
      onSelect: keys => { for (const k of keys) state.selected.add(k); selectionChanged(); },
      onRange: (t0, t1) => {
        $("gs-start").value = t0.slice(0, 16); $("gs-end").value = t1.slice(0, 16);
        $("gs-label").focus();
      },
    });
    holder.table.ontoggle = async () => {
      if (!holder.table.open) return;
      await runInfo(c.points.map(p => p.run));
      holder.table.replaceChildren(holder.table.firstChild, tableOf(c));
    };
    state.charts.set(metric, u);
    if (!root.dataset.firstChart) root.dataset.firstChart = String(Math.round(performance.now()));
  }

  // The first chart is asked for alone: on a busy server (the charts' work is CPU-bound) the
  // others would only slow it down. Then the rest at once, and ``after`` (the page's other data).
  async function drawAll(after) {
    const v = view();
    const box = $("charts");
    for (const u of state.charts.values()) u.destroy();
    state.charts.clear();
    box.replaceChildren();
    const holders = state.chosen.map(metric => {
      const m = state.metrics.find(x => x.column === metric) || { column: metric };
      const holder = { metric, plot: el("div", { cls: "plot" }), note: el("span", { cls: "muted" }), hover: el("p", { cls: "hover", "aria-live": "polite", text: "Hover over a point for its details." }),
                       table: el("details", {}, el("summary", { text: "Table of this chart" })) };
      box.append(el("section", { cls: "chart", "data-metric": metric, "aria-label": m.label || metric },
        el("h3", { text: (m.label || metric) + (m.unit ? ` (${m.unit})` : "") }), holder.note, holder.plot, holder.hover, holder.table));
      return holder;
    });
    const one = h => drawOne(h.metric, h, v).catch(e => { h.note.textContent = e.message; h.note.className = "failed"; });
    if (holders.length) await one(holders[0]);
    const others = after ? after() : null;
    await Promise.all(holders.slice(1).map(one));
    root.dataset.drawn = String(Date.now());
    await others;
  }

  function redrawMarkers() { for (const u of state.charts.values()) u.redraw(false, false); }

  function selectionChanged() {
    $("selbar").hidden = state.selected.size === 0;
    $("sel-count").textContent = `${state.selected.size} run${state.selected.size === 1 ? "" : "s"} selected`;
    for (const cb of document.querySelectorAll("#runs-table input[type=checkbox]")) cb.checked = state.selected.has(cb.value);
    redrawMarkers();
  }

  async function act(action) {
    const keys = [...state.selected];
    const msg = $("sel-msg");
    if (action === "clear") { state.selected.clear(); selectionChanged(); return; }
    if (!keys.length) return;
    try {
      if (["flag", "unflag", "accept", "reject"].includes(action)) await api("/api/rawfile", { ...scope, action, run_keys: keys });
      else if (action === "exclude") await api("/api/qc/exclusions/create", { ...scope, metric: $("sel-metric").value, run_keys: keys });
      else if (action === "include") await api("/api/qc/exclusions/delete", { ...scope, metric: $("sel-metric").value, run_keys: keys });
      else if (action === "guide") await api("/api/qc/guide-sets/create", { ...scope, label: `selection of ${keys.length} runs`, run_keys: keys });
      state.info.clear(); asked.clear();
      await Promise.all([drawAll(), loadRuns(), loadGuideSets(), loadStatus()]);
      status(msg, `${action}: done for ${keys.length} run(s)`, false);
    } catch (e) { status(msg, `${action}: ${e.message}`, true); }
  }

  async function loadRuns() {
    const page = await api("/api/qc/runs", { ...scope, offset: state.offset, limit: state.pageSize });
    const body = document.querySelector("#runs-table tbody");
    body.replaceChildren(...page.runs.map(r => {
      const cb = el("input", { type: "checkbox", value: r.run_key, "aria-label": `select ${r.run_key}`, checked: state.selected.has(r.run_key) ? "checked" : null });
      cb.addEventListener("change", () => { if (cb.checked) state.selected.add(r.run_key); else state.selected.delete(r.run_key); selectionChanged(); });
      return el("tr", { "data-run": r.run_key }, el("td", {}, cb), el("td", {}, el("a", { href: `/runs/${r.run_key}`, text: r.run_key })),
        el("td", { text: r.name }), el("td", { text: fmtTime(r.acquired) }), el("td", { cls: r.state, text: r.state }),
        el("td", {}, el("span", { cls: `verdict v-${r.verdict || "none"}`, text: r.verdict || "-" })), el("td", { text: r.summary || "" }),
        el("td", { text: r.flagged ? "flagged" : "" }), el("td", { text: r.use_downstream === false ? "rejected" : "yes" }));
    }));
    const end = Math.min(state.offset + state.pageSize, page.total);
    $("page-info").textContent = page.total ? `runs ${state.offset + 1}–${end} of ${page.total}` : "no runs yet";
    $("page-prev").disabled = state.offset === 0;
    $("page-next").disabled = end >= page.total;
  }

  async function loadGuideSets() {
    const g = await api("/api/qc/guide-sets", scope);
    $("gs-list").replaceChildren(...g.guide_sets.map(s => {
      const li = el("li", { "data-gs": s.id }, `${s.id} ${s.label || ""} · ${s.start ? fmtTime(s.start) + " – " + fmtTime(s.end) : (s.run_keys || []).length + " runs"}${s.automatic ? " (automatic)" : ""} `);
      if (!s.automatic && root.dataset.manage === "yes") {
        const b = el("button", { type: "button", text: "Delete" });
        b.addEventListener("click", async () => { await api("/api/qc/guide-sets/delete", { ...scope, id: s.id }); state.info.clear(); asked.clear(); await Promise.all([loadGuideSets(), drawAll(), loadRuns()]); });
        li.append(b);
      }
      return li;
    }));
  }

  async function loadKinds() {
    const k = await api("/api/qc/annotation-kinds");
    $("ann-kind").replaceChildren(...k.kinds.map(x => el("option", { value: x.name, text: x.label + (x.resets_baseline ? " (new baseline)" : "") })));
  }

  function form(id, fn) {
    const f = $(id);
    f.addEventListener("submit", async ev => {
      ev.preventDefault();
      const msg = f.querySelector(".msg");
      try { status(msg, await fn(), false); } catch (e) { status(msg, e.message, true); }
    });
  }

  form("ann-form", async () => {
    const a = await api("/api/qc/annotations/create", { ...scope, kind: $("ann-kind").value, time: $("ann-time").value + ":00Z", text: $("ann-text").value });
    state.info.clear(); asked.clear(); await Promise.all([drawAll(), loadRuns()]);
    return `annotation ${a.id} added`;
  });
  form("gs-form", async () => {
    const g = await api("/api/qc/guide-sets/create", { ...scope, label: $("gs-label").value, start: $("gs-start").value + ":00Z", end: $("gs-end").value + ":59Z" });
    state.info.clear(); asked.clear(); await Promise.all([loadGuideSets(), drawAll(), loadRuns(), loadStatus()]);
    return `guide set ${g.id} added; ${g.recomputed} verdicts recomputed`;
  });
  form("rules-form", async () => {
    const text = $("rules-json").value.trim();
    let rules = null;
    if (text) { try { rules = JSON.parse(text); } catch (e) { throw new Error("rules: not valid JSON"); } }
    const r = await api("/api/qc/rules", { ...scope, metric: $("rules-metric").value, rules });
    await loadMetrics(); state.info.clear(); asked.clear(); await Promise.all([drawAll(), loadRuns()]);
    return `rules saved; ${r.recomputed} verdicts recomputed`;
  });
  form("upload-form", async () => {
    const file = $("upload-file").files[0];
    if (!file) throw new Error("choose a .raw file");
    const fd = new FormData();
    fd.append("pid", root.dataset.uuid);
    fd.append("orig_file", file, file.name);
    const r = await api("/api/upload/raw", fd);
    state.offset = 0; await loadRuns();
    return `uploaded as ${r.run_key}`;
  });

  $("rules-metric").addEventListener("change", showRules);
  $("dragmode").addEventListener("change", () => $("charts").classList.toggle("lassoing", $("dragmode").value === "lasso"));
  $("view-form").addEventListener("submit", ev => { ev.preventDefault(); drawAll(); });
  $("reset-zoom").addEventListener("click", () => { for (const u of state.charts.values()) window.QC.charts.reset(u); });
  $("pan-left").addEventListener("click", () => { for (const u of state.charts.values()) window.QC.charts.pan(u, -0.5); });
  $("pan-right").addEventListener("click", () => { for (const u of state.charts.values()) window.QC.charts.pan(u, 0.5); });
  $("page-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.pageSize); loadRuns(); });
  $("page-next").addEventListener("click", () => { state.offset += state.pageSize; loadRuns(); });
  for (const b of document.querySelectorAll("#selbar button[data-act]")) b.addEventListener("click", () => act(b.dataset.act));
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => {
    for (const u of state.charts.values()) u.setSize({ width: Math.max(u.root.parentElement.clientWidth - 10, 280), height: 260 });
  }, 150); });
  setInterval(() => { if (state.offset === 0 && !document.hidden) loadRuns().catch(() => {}); }, 10000);

  (async () => {
    try {
      await loadMetrics();
      await drawAll(() => Promise.all([loadStatus(), loadKinds(), loadGuideSets(), loadRuns()]));
      root.dataset.ready = "1";  // charts, runs table, guide sets and status all shown
    } catch (e) { status($("status-line"), e.message, true); }
  })();
})();
