// Run page: verdict and reasons, every metric against its limits, chromatograms, the tails of the
// stages' tool logs, retry/cancel, mzQC.
"use strict";
(function () {
  const { api, el, fmt, status } = window.QC;
  const root = document.getElementById("run");
  const scope = { project: root.dataset.project, pipeline: root.dataset.pipeline };
  const key = root.dataset.run;
  const $ = id => document.getElementById(id);
  const pair = (a, b) => (a === null || a === undefined) && (b === null || b === undefined) ? "-" : `${fmt(a)} – ${fmt(b)}`;

  async function verdict() {
    const v = (await api("/api/qc/verdicts", { ...scope, run_keys: [key] })).runs[0];
    const word = v && v.verdict ? v.verdict : "no verdict yet";
    $("verdict").replaceChildren(el("span", { cls: `verdict v-${(v && v.verdict) || "none"}`, text: word }), " " + ((v && v.summary) || ""));
    $("reasons").replaceChildren(...((v && v.reasons) || []).map(r => el("li", { cls: r.severity === "fail" ? "fail" : "warn", text: r.text })));
  }

  async function metrics() {
    const m = await api("/api/qc/run", { run_key: key });
    document.querySelector("#metrics tbody").replaceChildren(...m.metrics.map(x => {
      const lj = x.limits && x.limits.rules ? (x.limits.rules.levey_jennings || x.limits.rules.robust || {}) : {};
      const sev = x.violations.some(v => v.severity === "fail") ? "fail" : x.violations.length ? "warn" : "";
      return el("tr", { cls: sev },
        el("td", { text: x.label + (x.unit ? ` (${x.unit})` : "") }),
        el("td", { text: x.value === null ? (x.why_no_value || "-") : fmt(x.value) }),
        el("td", { text: x.limits ? fmt(x.limits.mean) : "-" }),
        el("td", { text: pair(lj.warn_low, lj.warn_high) }), el("td", { text: pair(lj.fail_low, lj.fail_high) }),
        el("td", { text: fmt(x.z) }),
        el("td", { text: x.violations.map(v => `${v.rule}: ${v.detail} (${v.severity})`).join("; ") || (x.limits && x.limits.note) || "" }));
    }));
  }

  async function chromatograms() {
    const c = (await api("/api/chromatograms", { ...scope, run_key: key })).chromatograms;
    const box = $("chroms");
    const names = Object.keys(c);
    if (!names.length) { box.append(el("p", { cls: "muted", text: "No chromatograms stored for this run." })); return; }
    for (const name of names) {
      const holder = el("div", { cls: "plot" });
      const rows = c[name].rt.length;
      box.append(el("section", { cls: "chart", "data-chrom": name }, el("h3", { text: `${name.replace("_", " ")} (${rows} scans)` }), holder));
      new uPlot({ width: Math.max(holder.clientWidth - 10, 280), height: 200, legend: { show: false },
                  scales: { x: { time: false } },
                  axes: [{ label: "retention time (min)" }, { size: 70, values: (u, v) => v.map(fmt) }],
                  series: [{}, { stroke: "#1f5fa8", width: 1, points: { show: false } }] }, [c[name].rt, c[name].intensity], holder);
    }
  }

  // a stage's logs, fetched when its <details> opens (failed stages' are open from the start)
  async function logs(det) {
    if (det.dataset.loaded) return;
    det.dataset.loaded = "1";
    const box = det.querySelector(".logtext");
    try {
      const r = await api("/api/qc/run/logs", { run_key: key, stage: det.dataset.stage });
      if (!r.files.length) { box.replaceChildren(el("p", { cls: "muted", text: "No log files in this stage's folder." })); return; }
      box.replaceChildren(...r.files.flatMap(f => [
        el("h3", { text: `${f.name} · ${f.size} bytes` + (f.truncated ? ` · the last ${f.shown} shown` : "") }),
        el("pre", { cls: "log", tabindex: "0", "data-log": f.name, text: f.text || "(empty)" })]));
    } catch (e) { delete det.dataset.loaded; status(box, e.message, true); }
  }
  const openLogs = [];
  for (const d of document.querySelectorAll("details.logs")) {
    d.addEventListener("toggle", () => { if (d.open) logs(d); });
    if (d.open) openLogs.push(logs(d));
  }

  async function action(which) {
    try {
      const r = await api(`/api/runs/${which}`, { run_key: key });
      status($("action-msg"), which === "retry" ? `queued again: ${(r.requeued || []).join(", ")}` : "cancelled", false);
      setTimeout(() => location.reload(), 800);
    } catch (e) { status($("action-msg"), e.message, true); }
  }
  if ($("retry")) $("retry").addEventListener("click", () => action("retry"));
  if ($("cancel")) $("cancel").addEventListener("click", () => action("cancel"));

  $("mzqc").addEventListener("click", async () => {
    try {
      const doc = await api("/api/mzqc", { ...scope, run_keys: [key] });
      const a = el("a", { href: URL.createObjectURL(new Blob([JSON.stringify(doc, null, 1)], { type: "application/json" })), download: `${key}.mzQC` });
      document.body.append(a); a.click(); a.remove();
      status($("mzqc-msg"), "downloaded", false);
    } catch (e) { status($("mzqc-msg"), e.message, true); }
  });

  Promise.all([verdict(), metrics(), chromatograms(), ...openLogs]).then(() => { root.dataset.drawn = "1"; })
    .catch(e => status($("verdict"), e.message, true));
})();
