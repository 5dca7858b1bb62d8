#!/usr/bin/env python3
"""Benchmark: QC verdicts in a pipeline of many runs, on a real DuckDB file.

Builds a pipeline of N runs (default 10,000) whose RawTools values are the 140-run HeLa series of
the RawTools documentation repeated with noise (acquired hourly), then prints:

* the time of one new run's verdict (a new newest run; median of several), through the same path
  the engine takes after a stage stored the run's values (``record_sync``): it loads only the
  runs the verdict depends on, the pipeline's QC configuration and run order coming from caches
  kept while the store's signature of them holds (target: under 50 ms);
* the time to recompute the verdicts after a guide-set change (a guide set in force from the
  middle of the series: only the runs from there on are loaded, column-wise, recomputed and
  stored; target: under 5 s);
* next to recomputing every verdict from scratch (all runs, all verdicts replaced).

Each figure comes with the process's CPU time: on a machine shared with other work the wall time
is mostly waiting for a CPU, and the load average is printed with the figures.

    python scripts/bench_verdicts.py [--runs 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import pyarrow as pa

from qcdaemon.service.quality import recompute_sync, record_sync
from qcdaemon.store import Store
from qcdaemon.tools.rawtools_parse import parse_qc_data_table

HELA = REPO / "tests" / "data" / "rawtools" / "rawtools-docs-example" / "QcDataTable.csv"
T0 = dt.datetime(2024, 1, 1, 8, 0)


def _values(rows: list[dict], i: int, rnd: random.Random) -> dict:
    row = rows[i % len(rows)]
    out = {}
    for k, v in row.items():
        if isinstance(v, float):
            v = v * (1 + rnd.gauss(0, 0.01))
        elif isinstance(v, dt.datetime):
            v = (T0 + dt.timedelta(hours=i)).isoformat()
        out[k] = v
    return out


def build(path: Path, n: int) -> tuple[Store, int, list[dict]]:
    store = Store(path)
    uid = store.create_user("bench@example.org", None)
    proj = store.create_project("Bench", "bench", "", uid)
    pid = store.create_pipeline(proj, "HeLa", "hela", str(path.parent), rawtools_args="", created_by=uid)["id"]
    rows = parse_qc_data_table(HELA)
    rnd = random.Random(1)
    ids = [r[0] for r in store.con.execute("SELECT nextval('seq_runs') FROM range(?)", [n]).fetchall()]
    runs = pa.table({
        "id": pa.array(ids, pa.int32()), "pipeline_id": pa.array([pid] * n, pa.int32()),
        "name": [f"hela-{i}.raw" for i in range(n)], "stored_path": [None] * n, "source": ["upload"] * n,
        "size": pa.array([1] * n, pa.int64()), "sha256": [None] * n, "owner_id": pa.array([uid] * n, pa.int32()),
        "created_at": [T0 + dt.timedelta(hours=i) for i in range(n)],
        "acquired_at": [T0 + dt.timedelta(hours=i) for i in range(n)],
        "flagged": [False] * n, "use_downstream": [True] * n, "state": ["done"] * n,
        "error": [None] * n, "metrics_engine": ["rawtools"] * n})
    store.con.register("bench_runs", runs)
    store.con.execute("INSERT INTO runs BY NAME SELECT * FROM bench_runs")
    store.con.unregister("bench_runs")
    run_id, source, ord_, name, value = [], [], [], [], []
    for i, rid in enumerate(ids):
        for j, (k, v) in enumerate(_values(rows, i, rnd).items()):
            run_id.append(rid)
            source.append("rawtools")
            ord_.append(j)
            name.append(k)
            value.append(json.dumps(v))
    vals = pa.table({"run_id": pa.array(run_id, pa.int32()), "source": source, "ord": pa.array(ord_, pa.int32()),
                     "name": name, "value": value})
    store.con.register("bench_values", vals)
    store.con.execute("INSERT INTO qc_values BY NAME SELECT * FROM bench_values")
    store.con.unregister("bench_values")
    return store, pid, rows


def new_run(store: Store, pid: int, rows: list[dict], i: int) -> int:
    run = store.create_run(pid, f"hela-{i}.raw", source="upload", owner_id=1, state="done",
                           acquired_at=T0 + dt.timedelta(hours=i))
    store.put_qc_values(run["id"], "rawtools", _values(rows, i, random.Random(i)))
    return run["id"]


CPU: list[float] = []  # the process's CPU time of each timed call (wall time on a loaded machine is mostly waiting)


def timed(fn, *args) -> tuple[float, object]:
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    CPU.append(time.process_time() - c)
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t, (store, pid, rows) = timed(build, Path(tmp) / "bench.duckdb", args.runs)
        print(f"pipeline of {args.runs} runs ({len(rows[0])} values each) built in {t:.1f} s; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings scale with it)")
        scratch, n = timed(recompute_sync, store, pid)
        print(f"recompute from scratch:       {scratch:8.3f} s   ({n} verdicts; CPU {CPU[-1]:.3f} s)")
        times, cpu = [], []
        for k in range(args.repeat):
            rid = new_run(store, pid, rows, args.runs + k)
            t, out = timed(record_sync, store, rid)
            assert "verdict" in out, out  # the incremental path, not a recomputation
            times.append(t)
            cpu.append(CPU[-1])
        one = statistics.median(times)
        print(f"one new run's verdict:        {one * 1000:8.1f} ms  (median of {args.repeat}; "
              f"min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}; CPU {statistics.median(cpu) * 1000:.1f} ms;"
              " target < 50 ms)")
        mid = T0 + dt.timedelta(hours=args.runs // 2)
        store.add_guide_set(pid, label="bench", start=mid, end=mid + dt.timedelta(hours=19), run_keys=None,
                            created_by=None)
        t, n = timed(recompute_sync, store, pid, mid.replace(tzinfo=dt.UTC))
        print(f"after a guide-set change:     {t:8.3f} s   ({n} verdicts from the new guide set on; CPU {CPU[-1]:.3f} s;"
              " target < 5 s)")
        scratch2, n = timed(recompute_sync, store, pid)
        print(f"recompute from scratch again: {scratch2:8.3f} s   ({n} verdicts; CPU {CPU[-1]:.3f} s)")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
