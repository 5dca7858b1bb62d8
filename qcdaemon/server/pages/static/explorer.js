// Protein explorer: search protein groups (/api/protein-names), chart their reporter intensities
// per channel across runs (/api/protein-groups), with a table of the same numbers.
"use strict";
(function () {
  const { api, el, fmt, status } = window.QC;
  const root = document.getElementById("explorer");
  const scope = { project: root.dataset.project, pipeline: root.dataset.pipeline };
  const $ = id => document.getElementById(id);
  const COLOURS = ["#1f5fa8", "#b00020", "#176f2c", "#8a5a00", "#5b3a99", "#00707a", "#a3206f", "#444444"];
  let names = null;

  async function search() {
    if (!names) names = await api("/api/protein-names", { ...scope, remove_contaminants: $("no-con").checked, remove_reversed_sequences: $("no-rev").checked });
    const q = $("q").value.trim().toLowerCase();
    const ids = names.protein_names || [];
    const hits = [];
    for (let i = 0; i < ids.length && hits.length < 50; i++) {
      const h = (names["Fasta headers"][i] || "");
      if (!q || ids[i].toLowerCase().includes(q) || h.toLowerCase().includes(q)) hits.push(i);
    }
    status($("msg"), `${hits.length} of ${ids.length} protein groups shown`, false);
    document.querySelector("#hits tbody").replaceChildren(...hits.map(i => {
      const b = el("button", { type: "button", text: "Show" });
      b.addEventListener("click", () => show(ids[i]));
      return el("tr", {}, el("td", {}, b), el("td", { text: ids[i] }), el("td", { text: names["Fasta headers"][i] || "" }),
        el("td", { text: fmt(names.Score[i]) }), el("td", { text: fmt(names.Intensity[i]) }));
    }));
  }

  async function show(protein) {
    const g = await api("/api/protein-groups", { ...scope, protein_names: [protein], columns: ["Reporter intensity corrected"] });
    const box = $("plots");
    const channels = Object.keys(g).filter(c => c.startsWith("Reporter intensity corrected "));
    const rows = Object.keys(g.RunKey || {});
    const section = el("section", { cls: "chart", "data-protein": protein }, el("h3", { text: protein }));
    box.prepend(section);
    if (!rows.length || !channels.length) { section.append(el("p", { cls: "muted", text: "No reporter intensities for this protein group." })); return; }
    const holder = el("div", { cls: "plot" });
    section.append(holder);
    const xs = rows.map((_, i) => i + 1);
    const series = [{ label: "run" }, ...channels.map((c, k) => ({ label: c.replace("Reporter intensity corrected ", "channel "), stroke: COLOURS[k % COLOURS.length], width: 1.5,
      points: { show: true, size: 5 }, dash: k >= COLOURS.length ? [4, 3] : undefined }))];
    new uPlot({ width: Math.max(holder.clientWidth - 10, 280), height: 260, scales: { x: { time: false } },
                axes: [{ label: "run (oldest to newest)" }, { size: 70, values: (u, v) => v.map(fmt) }], series },
              [xs, ...channels.map(c => rows.map(r => g[c][r]))], holder);
    section.append(el("details", {}, el("summary", { text: "Table" }), el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Run" }), el("th", { scope: "col", text: "File" }), ...channels.map(c => el("th", { scope: "col", text: c.replace("Reporter intensity corrected ", "ch ") })))),
      el("tbody", {}, ...rows.map(r => el("tr", {}, el("td", { text: g.RunKey[r] }), el("td", { text: g.RawFile[r] }), ...channels.map(c => el("td", { text: fmt(g[c][r]) }))))))));
  }

  $("search-form").addEventListener("submit", ev => { ev.preventDefault(); search().catch(e => status($("msg"), e.message, true)); });
  $("no-con").addEventListener("change", () => { names = null; });
  $("no-rev").addEventListener("change", () => { names = null; });
  search().catch(e => status($("msg"), e.message, true));
})();
