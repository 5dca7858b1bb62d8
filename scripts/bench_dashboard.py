#!/usr/bin/env python3
"""Benchmark: the dashboard's pipeline page for a pipeline of 1,000 and 10,000 runs.

Builds the pipeline as ``bench_verdicts.py`` does (the RawTools HeLa series repeated with noise,
acquired hourly, verdicts computed), serves it from a real qcdaemon server on 127.0.0.1 and opens
the pipeline page in headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright). Prints:

* server time of the page and of each data request (time to first byte seen by the browser);
* bytes transferred (response bodies, uncompressed: the daemon does not compress);
* time from navigation start to the first drawn chart, and to all charts drawn;
* the chart cache's hits and size (the cold load computes every chart, the warm one reads them).

Targets at 1,000 runs: page (HTML + scripts + data) under 300 KB, first chart under 1 s.

    python scripts/bench_dashboard.py [--runs 1000 10000] [--screenshots docs/screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from aiohttp import web
from bench_verdicts import build
from playwright.async_api import async_playwright

from qcdaemon.config import config_from_dict
from qcdaemon.core import security
from qcdaemon.server import create_app
from qcdaemon.service.qcservice import QcService
from qcdaemon.service.quality import recompute_sync
from qcdaemon.store import AsyncStore

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
EMAIL, PASSWORD = "bench@example.org", "bench-Secret-1"


def prepare(data_dir: Path, n: int) -> Any:
    cfg = config_from_dict({"paths": {"data_dir": str(data_dir), "log_dir": str(data_dir / "logs")}})
    data_dir.mkdir(parents=True, exist_ok=True)
    store, pid, _rows = build(cfg.db_path, n)
    store.set_password(1, security.hash_password(PASSWORD))
    store.execute("UPDATE users SET is_admin = true WHERE id = 1")
    recompute_sync(store, pid)
    _stages_with_logs(store, cfg, n // 2)
    store.close()
    return cfg


def _stages_with_logs(store: Any, cfg: Any, run_id: int) -> None:
    """The run of the run page's screenshot gets two stages with tool logs, one of them failed."""
    key = f"rf{run_id}"
    t0 = dt.datetime(2024, 1, 1, 8, 0) + dt.timedelta(hours=run_id)
    for seq, (stage, state, took, text) in enumerate((
            ("native", "done", 4.2, "read 118 scans (MS1 40, MS2 78)\nwrote 61 metrics\n"),
            ("rawtools", "failed", 31.5, "RawTools 2.0.7\nParsing hela.raw\n"
                                         "Unhandled exception: System.IO.IOException: disk full\n")), start=1):
        logs = cfg.files.work_of(key) / stage
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{stage}.out").write_text(text)
        (logs / f"{stage}.err").write_text("" if state == "done" else "exit code 1\n")
        store.execute("INSERT INTO stages (run_id, stage, seq, state, attempts, queued_at, started_at, ended_at,"
                      " exit_code, log_dir, error) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                      [run_id, stage, seq, state, t0, t0, t0 + dt.timedelta(seconds=took),
                       0 if state == "done" else 1, str(logs), None if state == "done" else "rawtools: disk full"])


async def measure(n: int, shots: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = await asyncio.to_thread(prepare, Path(tmp) / "data", n)
        store = AsyncStore(cfg.db_path, cfg.store)
        svc = QcService(store, cfg, security.load_or_create_key(Path(tmp) / "data" / "secret.key"))
        runner = web.AppRunner(create_app(svc, cfg), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                ctx = await browser.new_context(viewport={"width": 1280, "height": 1000})
                pg = await ctx.new_page()
                await pg.goto(base + "/")
                await pg.fill("input[name=username]", EMAIL)
                await pg.fill("input[name=password]", PASSWORD)
                await pg.click("button[type=submit]")
                await pg.wait_for_selector("#tiles")
                if shots:
                    await pg.screenshot(path=str(shots / "overview.png"), full_page=True)
                url = f"{base}/pipelines/bench/hela/dashboard"
                for label in ("cold", "warm"):
                    responses: list[Any] = []

                    def keep(r: Any, responses: list[Any] = responses) -> None:
                        responses.append(r)

                    pg.on("response", keep)
                    await pg.goto(url)
                    await pg.wait_for_selector("#dash[data-drawn]", timeout=120_000)
                    first = float(await pg.get_attribute("#dash", "data-first-chart") or "nan")
                    drawn = await pg.evaluate("() => performance.now()")
                    pg.remove_listener("response", keep)
                    total = 0
                    rows = []
                    for r in responses:
                        try:
                            body = len(await r.body())
                        except Exception:  # a redirect has no body
                            body = 0
                        total += body
                        t = r.request.timing
                        ttfb = t["responseStart"] - t["requestStart"] if t["responseStart"] > 0 else float("nan")
                        path = r.url[len(base):]
                        if r.request.method == "POST":
                            post = r.request.post_data_json or {}
                            if post.get("metric"):
                                path += f" {post['metric']}"
                        rows.append((path, ttfb, body))
                    print(f"\n{n} runs, {label} load of the pipeline page:")
                    for path, ttfb, body in rows:
                        if path.startswith("/static/") or path.endswith((".js", ".css")):
                            continue
                        print(f"  {path[:70]:70s} server {ttfb:7.1f} ms  {body / 1024:8.1f} KB")
                    static = sum(b for p_, _, b in rows if p_.startswith("/static/"))
                    print(f"  static files (scripts, styles, uPlot):  {static / 1024:.1f} KB")
                    print(f"  bytes transferred: {total / 1024:.1f} KB (target at 1,000 runs < 300 KB)")
                    print(f"  first chart drawn: {first / 1000:.2f} s after navigation start (target at 1,000 runs < 1 s); "
                          f"all charts: {drawn / 1000:.2f} s")
                    cache = svc.quality.charts
                    print(f"  chart cache: {cache.hits} hits, {cache.misses} misses so far; {len(cache)} answers in "
                          f"{cache.size / 1024:.0f} KB (bound {cache.max_bytes / 1024:.0f} KB)")
                if shots:
                    await pg.screenshot(path=str(shots / "pipeline.png"), full_page=False)
                    await pg.goto(f"{base}/runs/rf{n // 2}")
                    await pg.wait_for_selector("#run[data-drawn]")
                    await pg.click('details.logs[data-stage="native"] summary')
                    await pg.wait_for_selector('details.logs[data-stage="native"] pre')
                    await pg.screenshot(path=str(shots / "run.png"), full_page=True)
                await browser.close()
        finally:
            await runner.cleanup()
            store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[1000, 10_000])
    ap.add_argument("--screenshots", type=Path, default=None, help="write overview/pipeline/run PNGs here")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings scale with it)")
    for n in args.runs:
        if args.screenshots:
            args.screenshots.mkdir(parents=True, exist_ok=True)
        asyncio.run(measure(n, args.screenshots if n == args.runs[0] else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
