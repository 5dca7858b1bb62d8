// Shared helpers of the dashboard pages: JSON calls with the session's CSRF token, formatting.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  class ApiError extends Error {
    constructor(status, detail) { super(detail); this.status = status; }
  }
  async function api(path, body, method) {
    const opts = { method: method || (body === undefined ? "GET" : "POST"), credentials: "same-origin",
                   headers: { "Accept": "application/json", "X-CSRFToken": csrf } };
    if (body instanceof FormData) { opts.body = body; }
    else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) { throw new ApiError(r.status, (data && data.detail) || r.statusText); }
    return data;
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v; else if (k === "cls") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) { if (c !== null && c !== undefined) e.append(c); }
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-3)) return v.toExponential(3);
    return v.toPrecision(5).replace(/\.?0+$/, "");
  }
  function fmtTime(t) { return t ? t.replace("T", " ").replace(/\+00:00$|Z$/, "").slice(0, 16) : "-"; }
  function status(node, text, isError) {
    if (!node) return;
    node.textContent = text;
    node.classList.remove("notice", "failed");
    node.classList.add(isError ? "failed" : "notice");
  }
  window.QC = { api, el, fmt, fmtTime, status, ApiError, csrf };
})();
