// Overview: open alerts per pipeline from /api/alerts (the alerts API may not exist: then nothing).
"use strict";
(async function () {
  const { api, el } = window.QC;
  if (document.getElementById("tiles").dataset.alerts !== "yes") return;  // no alerts API in this daemon
  let data;
  try { data = await api("/api/alerts", { state: "open" }); }
  catch (e) { return; }  // 404 before the alerts API lands, or no rights: the tiles keep "-"
  const alerts = (data && data.alerts) || [];
  const open = alerts.filter(a => a.state === "open");
  for (const tile of document.querySelectorAll(".tile")) {
    const scope = tile.dataset.project + "/" + tile.dataset.pipeline;
    const mine = open.filter(a => a.scope === scope);
    tile.querySelector(".alerts-count").textContent = String(mine.length);
  }
  if (!open.length || document.getElementById("alerts-server")) return;  // the server already lists them
  const list = document.getElementById("alerts-list");
  for (const a of open) {
    const li = el("li", { "data-alert": a.id },
      el("strong", { text: a.title || a.subject || a.rule }), " ", el("span", { cls: "muted", text: (a.scope || "") + " " + (a.opened_at || "") }), " ");
    if (!a.acknowledged_at) {
      const b = el("button", { type: "button", text: "Acknowledge" });
      b.addEventListener("click", async () => {
        b.disabled = true;
        try { await api("/api/alerts/ack", { alert: a.id }); b.replaceWith(el("span", { cls: "ok", text: "acknowledged" })); }
        catch (e) { b.disabled = false; li.append(el("span", { cls: "failed", text: " " + e.message })); }
      });
      li.append(b);
    } else { li.append(el("span", { cls: "ok", text: "acknowledged" })); }
    list.append(li);
  }
  document.getElementById("alerts").hidden = false;
})();
