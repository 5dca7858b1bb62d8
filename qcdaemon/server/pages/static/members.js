// Project membership: list (/api/members), add and remove (/api/members/add|remove).
"use strict";
(function () {
  const { api, el, status } = window.QC;
  const project = document.getElementById("members").dataset.project;
  const $ = id => document.getElementById(id);
  async function load() {
    const m = await api("/api/members", { project });
    $("creator").textContent = `Created by ${m.creator || "-"}`;
    $("member-list").replaceChildren(...m.members.map(x => {
      const li = el("li", {}, x.email + (x.is_admin ? " (admin)" : "") + " ");
      if (m.may_change) {
        const b = el("button", { type: "button", text: "Remove", "aria-label": `remove ${x.email}` });
        b.addEventListener("click", async () => { await api("/api/members/remove", { project, email: x.email }); await load(); });
        li.append(b);
      }
      return li;
    }));
  }
  const f = $("member-form");
  if (f) f.addEventListener("submit", async ev => {
    ev.preventDefault();
    try { await api("/api/members/add", { project, email: $("member-email").value }); status(f.querySelector(".msg"), "added", false); await load(); }
    catch (e) { status(f.querySelector(".msg"), e.message, true); }
  });
  load();
})();
