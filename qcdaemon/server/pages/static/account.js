// API token: create/show (POST /api/token) and revoke (DELETE /api/token).
"use strict";
(function () {
  const { api, status } = window.QC;
  const out = document.getElementById("token-out");
  const state = document.getElementById("token-state");
  document.getElementById("token-create").addEventListener("click", async () => {
    try { const t = await api("/api/token", {}); out.textContent = t.token; state.textContent = t.created ? "Token created." : "Your existing token:"; }
    catch (e) { status(state, e.message, true); }
  });
  document.getElementById("token-revoke").addEventListener("click", async () => {
    try { const r = await api("/api/token", {}, "DELETE"); out.textContent = ""; state.textContent = r.revoked ? "Token revoked." : "You had no token."; }
    catch (e) { status(state, e.message, true); }
  });
})();
