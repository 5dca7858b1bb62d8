#!/usr/bin/env python3
"""Benchmark: building /api/qc-data for a pipeline with many runs.

Prints the time of qcdaemon's path (one query for all runs' values, then a column-oriented
merge) next to a baseline run in the same process: the per-run assembly the original server
does (one look-up per run, then a merge), on the same DuckDB file. Also times the whole HTTP
request through a real server on 127.0.0.1.

    python scripts/bench_api.py [--runs 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from aiohttp import ClientSession, web

from qcdaemon import qcdata
from qcdaemon.config import config_from_dict
from qcdaemon.core.security import load_or_create_key
from qcdaemon.server import create_app
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import (
    AsyncStore,
    Store,
)
from qcdaemon.tools.maxquant_parse import parse_maxquant
from qcdaemon.tools.rawtools_parse import parse_rawtools


def seed(store: AsyncStore, runs: int) -> int:
    """A pipeline with ``runs`` runs, each with the real RawTools and MaxQuant values of the test data."""
    raw = parse_rawtools(REPO / "tests/data/rawtools/small2/rawtools", REPO / "tests/data/rawtools/small2/rawtools_qc")
    mq = parse_maxquant(REPO / "tests/data/maxquant/tmt11/example-0")

    def work(s):  # type: ignore[no-untyped-def]
        uid = s.create_user("bench@lab.org", None, True)
        pid = s.create_project("Bench", "bench", "", uid)
        pl = s.create_pipeline(pid, "Runs", "runs", "/tmp", rawtools_args="")
        for i in range(runs):
            run = s.create_run(pl["id"], f"run{i:05d}.raw", source="watch", owner_id=uid, state="done")
            s.put_qc_values(run["id"], "rawtools", raw)
            s.put_qc_values(run["id"], "maxquant", mq)
        return pl["id"]

    return asyncio.run(_call(store, work))


async def _call(store: AsyncStore, fn):  # type: ignore[no-untyped-def]
    return await store.call(fn)


def ours(s, pipeline_id: int):  # type: ignore[no-untyped-def]
    runs = s.selected_runs(pipeline_id, None)
    return qcdata.build_qc_data(runs, s.qc_values([r["id"] for r in runs]))


def baseline(s, pipeline_id: int):  # type: ignore[no-untyped-def]
    """The original's shape: per run, fetch its values, build a row; then merge the rows."""
    runs = s.selected_runs(pipeline_id, None)
    rows = []
    for r in runs:
        values = s.qc_values([r["id"]])
        merged, _ = qcdata.merge_run_values((src, name, v) for _, src, name, v in values)
        rows.append({"RunKey": f"rf{r['id']}", "RawFile": qcdata.stem(r["name"]), **merged})
    columns = list(dict.fromkeys(c for row in rows for c in row))
    return {c: [row.get(c) for row in rows] for c in columns}


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def http_time(store: AsyncStore, cfg, repeat: int) -> float:  # type: ignore[no-untyped-def]
    svc = QcService(store, cfg, load_or_create_key(cfg.data_dir / "secret.key"))
    user = await store.call(Store.user_by_email, "bench@lab.org")
    token, _ = await svc.token_create(user)
    runner = web.AppRunner(create_app(svc, cfg))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    times = []
    async with ClientSession() as http:
        for _ in range(repeat):
            t = time.perf_counter()
            async with http.post(f"http://127.0.0.1:{port}/api/qc-data", json={"project": "bench", "pipeline": "runs"},
                                 headers={"Authorization": f"Token {token}"}) as r:
                await r.read()
            times.append(time.perf_counter() - t)
    await runner.cleanup()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_dict({"paths": {"data_dir": tmp}})
        store = AsyncStore(cfg.db_path, cfg.store)
        try:
            t = time.perf_counter()
            pid = seed(store, args.runs)
            print(f"seeded {args.runs} runs in {time.perf_counter() - t:.2f} s")
            ours_s = asyncio.run(_call(store, lambda s: timed(lambda: ours(s, pid), args.repeat)))
            base_s = asyncio.run(_call(store, lambda s: timed(lambda: baseline(s, pid), args.repeat)))
            http_s = asyncio.run(http_time(store, cfg, args.repeat))
        finally:
            store.close()
    print(f"qc-data for {args.runs} runs (median of {args.repeat}):")
    print(f"  qcdaemon (one query)      {ours_s * 1000:9.1f} ms")
    print(f"  baseline (query per run)  {base_s * 1000:9.1f} ms   ratio {base_s / ours_s:5.1f}x")
    print(f"  whole HTTP request        {http_s * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
