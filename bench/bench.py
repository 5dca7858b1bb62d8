#!/usr/bin/env python3
"""qcdaemon at lab scale, measured against the original server's read path (issue 13).

Builds a pipeline of N runs (default 1,000; ``--runs 10000``) through the store's write methods
the ingestion stages use (``create_run``, ``put_qc_values``, ``put_maxquant``, each one
``AsyncStore.call`` as in the stages): QC values from the 140-run RawTools series
(tests/data/rawtools/rawtools-docs-example/QcDataTable.csv, cycled, one acquisition every 2 h),
MaxQuant values and the 1,272 protein groups x 11 channels of tests/data/maxquant/tmt11/example-0,
perturbed per run.  Next to it, the same runs as the original's per-run files (QcDataTable.csv,
maxquant_quality_control.csv, protein_groups/<stem>.parquet).  Then starts a real daemon
(``python -m qcdaemon run``) on 127.0.0.1 and prints, per read route: p50/p95 over HTTP of repeated
requests (after the first, served from the answer cache) and p50 of the first request after a
write (computed), the baselines' p50 in this process (bench/baselines.py), ratios, response bytes;
daemon RSS before/peak/after; a small request's latency while a heavy one runs (cached, and
computed after a write); ingest throughput; idle CPU;
upload throughput and RSS growth for a large file next to a plain copy.  Results go to
bench/results/bench-<N>.json.

    python bench/bench.py [--runs 1000] [--repeat 20] [--base-repeat 3] [--upload-gib 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import gzip
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from baselines import Original, PyArrowScan  # noqa: E402

from qcdaemon.config import StoreConfig  # noqa: E402
from qcdaemon.engine.stages.maxquant import KEEP_ROWS  # noqa: E402
from qcdaemon.store import AsyncStore, Store  # noqa: E402
from qcdaemon.store.proteins import PG_TEXT_COLUMNS  # noqa: E402
from qcdaemon.tools.maxquant_groups import protein_group_tables  # noqa: E402
from qcdaemon.tools.maxquant_parse import parse_maxquant, parse_maxquant_groups, parse_protein_groups  # noqa: E402
from qcdaemon.tools.rawtools_parse import RAWTOOLS_COLUMNS, parse_qc_data_table  # noqa: E402

QC_CSV = REPO / "tests/data/rawtools/rawtools-docs-example/QcDataTable.csv"
MQ_DIR = REPO / "tests/data/maxquant/tmt11/example-0"
RAW_HEAD = REPO / "tests/data/raw/small2.RAW"
PG_STANDARD = [
    "Majority protein IDs", "Fasta headers", "Number of proteins", "Peptides", "Razor + unique peptides",
    "Unique peptides", "Sequence coverage [%]", "Unique + razor sequence coverage [%]",
    "Unique sequence coverage [%]", "Mol. weight [kDa]", "Sequence length", "Sequence lengths", "Q-value",
    "Score", "Intensity", "MS/MS count", "Only identified by site", "Reverse", "Potential contaminant", "id",
    "Peptide IDs", "Peptide is razor", "Mod. peptide IDs", "Evidence IDs", "MS/MS IDs", "Best MS/MS",
    "Oxidation (M) site IDs", "Oxidation (M) site positions",
]
USER = "bench@lab.org"
CONCURRENT = 4  # ingest coroutines at once for the concurrent ingest figures
T0 = dt.datetime(2024, 1, 1, 8, 0, 0)


# ----------------------------------------------------------------------------------------- data

class Source:
    """The real test data, read once, perturbed per run."""

    def __init__(self) -> None:
        self.qc_rows = parse_qc_data_table(QC_CSV)
        with QC_CSV.open(newline="") as fh:
            reader = csv.reader(fh)
            self.qc_header = next(reader)
            self.qc_lines = list(reader)
        self.mq_values = parse_maxquant(MQ_DIR)
        self.groups = parse_protein_groups(MQ_DIR / "proteinGroups.txt.gz")
        self.table = pa.concat_tables(protein_group_tables(MQ_DIR / "proteinGroups.txt.gz", PG_TEXT_COLUMNS))
        self.rep = np.array([[np.nan if v is None else v for v in g.reporter_corrected] for g in self.groups])
        self.score = np.array([np.nan if g.score is None else g.score for g in self.groups])
        self.intensity = np.array([np.nan if g.intensity is None else g.intensity for g in self.groups])
        pg = pd.read_csv(MQ_DIR / "proteinGroups.txt.gz", sep="\t", low_memory=False)
        rep_cols = [c for c in pg.columns if c.startswith("Reporter intensity corrected")]
        frame = pg[PG_STANDARD].copy()
        for c in frame.columns:
            if frame[c].dtype == object:
                frame[c] = frame[c].fillna("")
        for n, c in enumerate(rep_cols[: self.rep.shape[1]], start=1):
            frame[f"Reporter intensity corrected {n}"] = pg[c]
        self.pg_frame = frame

    def when(self, i: int) -> dt.datetime:
        return T0 + dt.timedelta(hours=2 * i)

    def perturbed(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(i)
        jitter = rng.lognormal(0.0, 0.1, len(self.groups))
        rep = self.rep * rng.uniform(0.7, 1.3, self.rep.shape[1])[None, :] * jitter[:, None]
        return rep, self.score * rng.uniform(0.9, 1.1, len(self.groups)), self.intensity * jitter

    def rawtools_values(self, i: int) -> dict[str, Any]:
        row = dict(self.qc_rows[i % len(self.qc_rows)])
        values: dict[str, Any] = dict.fromkeys(RAWTOOLS_COLUMNS) | row
        values["DateAcquired"] = self.when(i)
        values["RawFilePath"], values["RawFile"] = "/instrument/data", f"run{i:05d}.raw"
        return values

    def groups_of(self, i: int) -> pa.Table:
        """The groups as the MaxQuant stage's parse gives them (tools.maxquant_groups), perturbed."""
        rep, score, intensity = self.perturbed(i)
        flat = pa.array(rep.ravel(), pa.float64(), from_pandas=True)  # NaN -> null
        reporter = pa.FixedSizeListArray.from_arrays(flat, rep.shape[1]).cast(pa.list_(pa.float64()))
        t = self.table
        for name, col in (("score", pa.array(score, from_pandas=True)),
                          ("intensity", pa.array(intensity, from_pandas=True)), ("reporter", reporter)):
            t = t.set_column(t.schema.get_field_index(name), name, col)
        return t

    def write_original(self, pdir: Path, i: int, name: str) -> None:
        """The run as the original keeps it: per-run CSVs and the protein-groups Parquet."""
        out = pdir / "output" / name
        (out / "rawtools_qc").mkdir(parents=True, exist_ok=True)
        (out / "maxquant").mkdir(parents=True, exist_ok=True)
        line = list(self.qc_lines[i % len(self.qc_lines)])
        line[0] = f"{self.when(i):%m/%d/%Y %H:%M:%S}"
        line[1] = f"/instrument/data/{name}"
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["RawFile" if h == "FileName" else h for h in self.qc_header])
        w.writerow(line)
        (out / "rawtools_qc" / "QcDataTable.csv").write_text(buf.getvalue())
        pd.DataFrame([dict(self.mq_values.items())]).to_csv(
            out / "maxquant" / "maxquant_quality_control.csv", index=False)
        rep, score, intensity = self.perturbed(i)
        frame = self.pg_frame.copy()
        frame["Score"], frame["Intensity"] = score, intensity
        for n in range(rep.shape[1]):
            frame[f"Reporter intensity corrected {n + 1}"] = rep[:, n]
        meta = pd.DataFrame({"Project": "Bench", "Pipeline": "Runs", "RawFile": name, "UseDownstream": "True",
                             "Flagged": "False"}, index=frame.index)
        table = pa.Table.from_pandas(pd.concat([meta, frame], axis=1), preserve_index=False)
        dest = pdir / "parquet" / "protein_groups"
        dest.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, dest / f"{name[:-4]}.parquet")


async def _ingest(astore: AsyncStore, src: Source, pipeline_id: int, owner: int, runs: range,
                  *, groups: bool, parse: bool = False, workers: int = 1) -> tuple[float, float, dict[str, float]]:
    """Runs through the write calls the stages make; returns the seconds spent in them (and parsing
    when asked: the MaxQuant stage's own call, proteinGroups.txt read once for values and rows),
    wall clock and this process's CPU (the writer thread's and DuckDB's included: on a machine
    shared with other jobs, CPU time is the figure the load disturbs least), and the wall seconds
    per step.  ``workers`` > 1: that many ingest coroutines at once, each with its share of the runs
    (the engine runs stages of different runs in parallel; their writes meet on the writer thread,
    where waiting ones share a commit); each run's data is made before the clock starts, and the
    steps' wall times overlap (they add up to more than the time spent)."""
    spent = cpu = 0.0
    steps = dict.fromkeys(("parse", "create_run", "put_qc_values", "put_maxquant"), 0.0)

    def lap(step: str, t: float) -> float:
        now = time.perf_counter()
        steps[step] += now - t
        return now

    txt = _plain_txt(astore.path.parent / "combined" / "txt") if parse else MQ_DIR

    def data(i: int) -> tuple[dict[str, Any], Any]:
        return src.rawtools_values(i), src.groups_of(i) if groups and not parse else []

    async def one(i: int, values: dict[str, Any], pg: Any) -> None:
        mq = src.mq_values
        t = time.perf_counter()
        if parse:
            mq, tables = await asyncio.to_thread(parse_maxquant_groups, txt, PG_TEXT_COLUMNS, KEEP_ROWS)
            pg = pa.concat_tables(tables) if tables else []
            t = lap("parse", t)
        run = await astore.call(Store.create_run, pipeline_id, f"run{i:05d}.raw", source="watch", owner_id=owner,
                                state="done", acquired_at=values["DateAcquired"])
        t = lap("create_run", t)
        await astore.call(Store.put_qc_values, run["id"], "rawtools", values)
        t = lap("put_qc_values", t)
        if groups:  # as the MaxQuant stage writes its result
            await astore.call(Store.put_maxquant, run["id"], mq, pg)
            t = lap("put_maxquant", t)

    if workers == 1:
        for i in runs:
            values, pg = data(i)
            start, cpu0 = time.perf_counter(), time.process_time()
            await one(i, values, pg)
            spent += time.perf_counter() - start
            cpu += time.process_time() - cpu0
    else:
        made = {i: data(i) for i in runs}

        async def worker(part: range) -> None:
            for i in part:
                await one(i, *made.pop(i))

        start, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(runs[w::workers]) for w in range(workers)))
        spent, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return spent, cpu, {k: 1000 * v / len(runs) for k, v in steps.items()}


def _plain_txt(dest: Path) -> Path:
    """The example's txt folder as MaxQuant writes it (plain text; the test data is gzipped to keep
    the repository small)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in MQ_DIR.iterdir():
        data = f.read_bytes()
        (dest / f.name.removesuffix(".gz")).write_bytes(gzip.decompress(data) if f.name.endswith(".gz") else data)
    return dest


def _setup(store: Store, path: str) -> tuple[int, int]:
    uid = store.create_user(USER, None, True)
    pid = store.create_project("Bench", "bench", "", uid)
    pl = store.create_pipeline(pid, "Runs", "runs", path, rawtools_args="")
    return uid, pl["id"]


async def ingest_figures(root: Path, n: int, src: Source, parse_k: int = 100) -> dict[str, Any]:
    """The pipeline's ``n`` runs with protein groups (store writes), then in a side store RawTools-only
    runs and ``parse_k`` MaxQuant runs through the stage's parse of the real txt folder too."""
    data = root / "data"
    astore = AsyncStore(data / "qcdaemon.duckdb", StoreConfig())
    uid, pl = await astore.call(_setup, str(data / "pipelines" / "runs"))
    pl_uuid = (await astore.call(Store.pipeline, pl))["uuid"]
    spent, cpu, steps = await _ingest(astore, src, pl, uid, range(n), groups=True)
    astore.close()
    side = AsyncStore(root / "side" / "side.duckdb", StoreConfig())
    suid, spl = await side.call(_setup, str(root / "side"))
    k = min(n, 300)
    rt_spent, rt_cpu, _ = await _ingest(side, src, spl, suid, range(k), groups=False)
    parse_spent, parse_cpu, parse_steps = await _ingest(side, src, spl, suid, range(k, k + parse_k), groups=True,
                                                        parse=True)
    # the same writes from CONCURRENT ingest coroutines (sequential above): waiting writes share commits
    at = k + parse_k
    cc_spent, cc_cpu, _ = await _ingest(side, src, spl, suid, range(at, at + k), groups=True, workers=CONCURRENT)
    at += k
    ccp_spent, ccp_cpu, _ = await _ingest(side, src, spl, suid, range(at, at + parse_k), groups=True, parse=True,
                                          workers=CONCURRENT)
    shared = getattr(getattr(side, "_group", None), "shared", 0)  # 0: a store without group commit
    side.close()
    return {"pipeline_uuid": pl_uuid, "ingest_mq_runs_per_s": n / spent, "ingest_rawtools_runs_per_s": k / rt_spent,
            "ingest_mq_with_parse_runs_per_s": parse_k / parse_spent, "ingest_mq_cpu_ms_per_run": 1000 * cpu / n,
            "ingest_mq_with_parse_cpu_ms_per_run": 1000 * parse_cpu / parse_k,
            "ingest_rawtools_cpu_ms_per_run": 1000 * rt_cpu / k,
            "ingest_mq_ms_per_step": steps, "ingest_mq_with_parse_ms_per_step": parse_steps,
            "ingest_concurrency": CONCURRENT, "ingest_mq_concurrent_runs_per_s": k / cc_spent,
            "ingest_mq_concurrent_cpu_ms_per_run": 1000 * cc_cpu / k,
            "ingest_mq_with_parse_concurrent_runs_per_s": parse_k / ccp_spent,
            "ingest_mq_with_parse_concurrent_cpu_ms_per_run": 1000 * ccp_cpu / parse_k,
            "ingest_concurrent_calls_shared": shared / (3 * (k + parse_k))}


def ingest_line(built: dict[str, Any]) -> str:
    steps = built.get("ingest_mq_with_parse_ms_per_step", {})
    nan = float("nan")
    line = (f"ingest, sequential: {built['ingest_mq_with_parse_runs_per_s']:.1f} runs/s with protein groups through "
            f"the MaxQuant stage's parse and writes ({built.get('ingest_mq_with_parse_cpu_ms_per_run', nan):.1f} ms "
            f"CPU a run; wall ms a run: {', '.join(f'{k} {v:.1f}' for k, v in steps.items())}), "
            f"{built['ingest_mq_runs_per_s']:.1f} runs/s store writes only "
            f"({built.get('ingest_mq_cpu_ms_per_run', nan):.1f} ms CPU a run), "
            f"{built['ingest_rawtools_runs_per_s']:.1f} runs/s RawTools-only "
            f"({built.get('ingest_rawtools_cpu_ms_per_run', nan):.1f} ms CPU a run)")
    if "ingest_mq_concurrent_runs_per_s" in built:
        line += (f"; concurrent ({built['ingest_concurrency']} ingest coroutines): "
                 f"{built['ingest_mq_with_parse_concurrent_runs_per_s']:.1f} runs/s parse and writes "
                 f"({built['ingest_mq_with_parse_concurrent_cpu_ms_per_run']:.1f} ms CPU a run), "
                 f"{built['ingest_mq_concurrent_runs_per_s']:.1f} runs/s writes only "
                 f"({built['ingest_mq_concurrent_cpu_ms_per_run']:.1f} ms CPU a run), "
                 f"{100 * built['ingest_concurrent_calls_shared']:.0f} % of the writes committed in a group")
    return line


def build(root: Path, n: int, src: Source) -> dict[str, Any]:
    data = root / "data"
    orig = root / "orig" / "P1" / "P1MQ1"
    names = [f"run{i:05d}.raw" for i in range(n)]
    t = time.perf_counter()
    done = orig / "written.json"
    if not (done.exists() and json.loads(done.read_text()) == n):  # the original's files: kept for a re-run
        for i, name in enumerate(names):
            src.write_original(orig, i, name)
        done.write_text(json.dumps(n))
    orig_s = time.perf_counter() - t

    ingest = asyncio.run(ingest_figures(root, n, src))
    db = data / "qcdaemon.duckdb"
    size = db.stat().st_size + (db.with_name(db.name + ".wal").stat().st_size
                                if db.with_name(db.name + ".wal").exists() else 0)
    orig_bytes = sum(f.stat().st_size for f in (orig / "parquet").rglob("*.parquet"))
    return {"runs": n, **ingest, "db_bytes": size, "db_mb_per_run": size / n / 1e6,
            "original_parquet_bytes": orig_bytes, "original_files_seconds": orig_s,
            "names": names, "orig_dir": str(orig)}


# --------------------------------------------------------------------------------------- daemon

class Daemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        with socket_free() as port:
            self.port = port
        self.config = root / "config.toml"
        self.config.write_text(
            f'[server]\nport = {self.port}\n[paths]\ndata_dir = "{root / "data"}"\nlog_dir = "{root / "logs"}"\n'
            '[engine]\nshutdown_timeout = 5\n[log]\nformat = "json"\n')
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "qcdaemon", *args, "--config", str(self.config)],
                              capture_output=True, text=True, check=True, cwd=REPO, timeout=300).stdout

    def start(self) -> None:
        self.token = self.cli("token", "create", USER).strip()
        self.proc = subprocess.Popen([sys.executable, "-m", "qcdaemon", "run", "--config", str(self.config)],
                                     cwd=REPO, stdout=(self.root / "daemon.log").open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.get("/api/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("daemon did not start; see " + str(self.root / "daemon.log"))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def get(self, path: str) -> tuple[int, bytes, float]:
        c = self._conn()
        start = time.perf_counter()
        c.request("GET", path, headers={"Authorization": f"Token {self.token}"})
        r = c.getresponse()
        body = r.read()
        took = time.perf_counter() - start
        c.close()
        return r.status, body, took

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes, float]:
        """As the original's client (``requests``) asks: gzip accepted, and an answer sent
        compressed is decompressed here, inside the timed span."""
        c = self._conn()
        data = json.dumps(body).encode()
        start = time.perf_counter()
        c.request("POST", path, body=data, headers={"Authorization": f"Token {self.token}",
                                                     "Content-Type": "application/json",
                                                     "Accept-Encoding": "gzip, deflate"})
        r = c.getresponse()
        out = r.read()
        if r.getheader("Content-Encoding") == "gzip":
            out = gzip.decompress(out)
        took = time.perf_counter() - start
        c.close()
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {out[:300]!r}")
        return r.status, out, took

    def write(self, k: int) -> None:
        """A write that changes what the read routes answer: the first run flagged, then unflagged."""
        self.post("/api/flag/create" if k % 2 == 0 else "/api/flag/delete",
                  {"project": "bench", "pipeline": "runs", "run_keys": ["rf1"]})

    def status_field(self, field: str) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def rss(self) -> int:
        return self.status_field("VmRSS")

    def reset_peak(self) -> None:
        assert self.proc is not None
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def peak(self) -> int:
        return self.status_field("VmHWM")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class socket_free:
    def __enter__(self) -> int:
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return int(self.s.getsockname()[1])

    def __exit__(self, *_: Any) -> None:
        self.s.close()


# ----------------------------------------------------------------------------------------- timing

def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def time_fn(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    out = None
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def routes(n: int, top_names: list[str]) -> list[dict[str, Any]]:
    scope = {"project": "bench", "pipeline": "runs"}
    return [
        {"name": "qc-data all", "path": "/api/qc-data", "body": {**scope, "data_range": None}},
        {"name": "qc-data 30", "path": "/api/qc-data", "body": {**scope, "data_range": 30}},
        {"name": "protein-names all", "path": "/api/protein-names",
         "body": {**scope, "data_range": None, "raw_files": None, "remove_contaminants": True,
                  "remove_reversed_sequences": True}},
        {"name": "protein-groups 10", "path": "/api/protein-groups",
         "body": {**scope, "data_range": None, "raw_files": None, "protein_names": top_names,
                  "columns": ["Reporter intensity corrected"]}},
        {"name": "qc/chart", "path": "/api/qc/chart",  # the dashboard's first chart (no counterpart in the original)
         "body": {**scope, "metric": "TotalScans", "kind": "values"}},
    ]


def measure_routes(d: Daemon, built: dict[str, Any], repeat: int, base_repeat: int) -> dict[str, Any]:
    orig = Original(Path(built["orig_dir"]), built["names"])
    scan = PyArrowScan([Path(built["orig_dir"]) / "parquet" / "protein_groups" / f"{x[:-4]}.parquet"
                        for x in built["names"]])
    names = json.loads(d.post("/api/protein-names", routes(0, [])[2]["body"])[1])["protein_names"]
    top = names[-10:]  # the ten best-scoring groups
    baselines: dict[str, dict[str, Callable[[], Any]]] = {
        "qc-data all": {"original": lambda: orig.qc_data(None)},
        "qc-data 30": {"original": lambda: orig.qc_data(30)},
        "protein-names all": {"original": lambda: orig.protein_names(None, True, True),
                              "pyarrow": lambda: scan.protein_names(None, True, True)},
        "protein-groups 10": {
            "original": lambda: orig.protein_groups(None, top, ["Reporter intensity corrected"]),
            "pyarrow": lambda: scan.protein_groups(None, top, ["Reporter intensity corrected"])},
        "qc/chart": {},
    }
    d.get("/api/health")
    rss_before = d.rss()
    d.reset_peak()
    peak = [0]
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], d.rss())
            time.sleep(0.02)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    results: list[dict[str, Any]] = []
    for r in routes(built["runs"], top):
        for _ in range(2):
            _, body, _ = d.post(r["path"], r["body"])
        times = [d.post(r["path"], r["body"])[2] for _ in range(repeat)]
        # the first request after a write (the answer cache's miss: computed, not served)
        after_write = []
        for k in range(max(3, repeat // 4)):
            d.write(k)
            after_write.append(d.post(r["path"], r["body"])[2])
        row: dict[str, Any] = {"route": r["name"], "p50_ms": 1000 * statistics.median(times),
                               "p95_ms": 1000 * pct(times, 0.95), "bytes": len(body),
                               "after_write_p50_ms": 1000 * statistics.median(after_write)}
        for label, fn in (baselines[r["name"]] if base_repeat > 0 else {}).items():
            p50, _ = time_fn(fn, base_repeat)
            row[f"{label}_p50_ms"] = 1000 * p50
            row[f"vs_{label}"] = p50 * 1000 / row["p50_ms"]
        results.append(row)
        print(_fmt_row(row), flush=True)
    stop.set()
    th.join()
    peak_rss = max(peak[0], d.peak())
    time.sleep(2)
    rss_after = d.rss()

    return {"routes": results, "rss_before": rss_before, "rss_peak": peak_rss, "rss_after": rss_after,
            "small_during_heavy": small_during_heavy(d, top, after_write=False),
            "small_during_heavy_after_write": small_during_heavy(d, top, after_write=True)}


# The heavy request's client runs in a process of its own: in this one, its thread reading a
# 4-40 MB answer would hold this process's GIL and delay the small requests' own client.
_HEAVY_CLIENT = """
import http.client, json, sys
port, token, path, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=600)
c.request("POST", path, body=body.encode(), headers={"Authorization": "Token " + token,
                                                     "Content-Type": "application/json",
                                                     "Accept-Encoding": "gzip, deflate"})
print("sent", flush=True)
r = c.getresponse()
r.read()
sys.exit(0 if r.status == 200 else 1)
"""


def small_during_heavy(d: Daemon, top: list[str], *, after_write: bool, rounds: int = 2) -> dict[str, Any]:
    """Small requests' latency while a heavy one (qc-data of all runs, protein groups) runs: served
    from the answer cache, or (``after_write``) computed because a write came just before."""
    small: dict[str, list[float]] = {"/api/projects": [], "/api/health": []}
    for k, heavy in enumerate([routes(0, top)[0], routes(0, top)[3]] * rounds):
        if after_write:
            d.write(k)
        child = subprocess.Popen([sys.executable, "-c", _HEAVY_CLIENT, str(d.port), d.token, heavy["path"],
                                  json.dumps(heavy["body"])], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.readline()  # the heavy request has been sent
        while child.poll() is None:
            small["/api/projects"].append(d.post("/api/projects", {})[2])
            small["/api/health"].append(d.get("/api/health")[2])
            time.sleep(0.01)
        if child.wait() != 0:
            raise RuntimeError(f"the heavy request {heavy['path']} failed")
    return {k: {"max_ms": 1000 * max(v), "p50_ms": 1000 * statistics.median(v), "n": len(v)}
            for k, v in small.items() if v}


def _fmt_row(row: dict[str, Any]) -> str:
    bases = [k for k in row if k.endswith("_p50_ms") and k not in ("p50_ms", "after_write_p50_ms")]
    base = "  ".join(f"{k[:-7]} {row[k]:9.1f} ms ({row['vs_' + k[:-7]]:6.1f}x; after a write "
                     f"{row[k] / row['after_write_p50_ms']:6.1f}x)" for k in bases)
    return (f"{row['route']:20} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  after a write "
            f"{row['after_write_p50_ms']:8.1f} ms  {row['bytes'] / 1e6:7.2f} MB  {base}")


def measure_idle(d: Daemon, seconds: float = 10.0) -> dict[str, Any]:
    c0, t0 = d.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return {"idle_cpu_percent": 100 * (d.cpu_seconds() - c0) / (time.monotonic() - t0), "idle_rss": d.rss()}


def measure_upload(d: Daemon, root: Path, gib: float, pipeline_uuid: str) -> dict[str, Any]:
    size = int(gib * (1 << 30))
    src = root / "upload.raw"
    head = RAW_HEAD.read_bytes()[: 1 << 20]
    block = os.urandom(8 << 20)
    with src.open("wb") as f:
        f.write(head)
        left = size - len(head)
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    dst = root / "copy.raw"
    start = time.perf_counter()
    with src.open("rb") as fi, dst.open("wb") as fo:
        shutil.copyfileobj(fi, fo, 8 << 20)
        fo.flush()
        os.fsync(fo.fileno())
    copy_s = time.perf_counter() - start
    dst.unlink()
    uuid_ = pipeline_uuid
    boundary = uuid.uuid4().hex
    pre = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"pid\"\r\n\r\n{uuid_}\r\n"
           f"--{boundary}\r\nContent-Disposition: form-data; name=\"orig_file\"; filename=\"big.raw\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    post = f"\r\n--{boundary}--\r\n".encode()
    rss0 = d.rss()
    d.reset_peak()
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=3600)
    start = time.perf_counter()
    c.putrequest("POST", "/api/upload/raw")
    c.putheader("Authorization", f"Token {d.token}")
    c.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    c.putheader("Content-Length", str(len(pre) + size + len(post)))
    c.endheaders()
    c.send(pre)
    with src.open("rb") as f:
        while chunk := f.read(4 << 20):
            c.send(chunk)
    c.send(post)
    r = c.getresponse()
    answer = r.read()
    up_s = time.perf_counter() - start
    if r.status != 201:
        raise RuntimeError(f"upload: {r.status} {answer[:300]!r}")
    peak = d.peak()
    src.unlink()
    mib = size / (1 << 20)
    return {"upload_gib": gib, "copy_mib_s": mib / copy_s, "upload_mib_s": mib / up_s,
            "upload_vs_copy": copy_s / up_s, "upload_rss_growth": peak - rss0}


def targets(out: dict[str, Any]) -> list[str]:
    """Issue 13's "Done when", each target against the measured figure: met, or missed by how much."""
    n = out["runs"]
    lines: list[str] = []

    def check(what: str, value: float, target: float, unit: str, *, at_least: bool = False) -> None:
        ok = value >= target if at_least else value <= target
        factor = (target / value if at_least else value / target) if value else float("inf")
        lines.append(f"  {'met   ' if ok else 'MISSED'} {what}: {value:,.2f} {unit} (target {'>=' if at_least else '<='}"
                     f" {target:,.2f}{'' if ok else f'; {factor:.1f}x off'})")

    limit = 100.0 if n <= 1000 else 500.0
    for r in out.get("routes", []):
        check(f"{r['route']} p50", r["p50_ms"], 200.0 if n > 1000 and r["route"].startswith("qc-data") else limit, "ms")
        if "vs_original" in r:
            check(f"{r['route']} vs the original's path", r["vs_original"], 20.0, "x", at_least=True)
        if "vs_pyarrow" in r:
            check(f"{r['route']} vs a plain pyarrow scan", r["vs_pyarrow"], 3.0, "x", at_least=True)
    for k, v in out.get("small_during_heavy", {}).items():
        check(f"{k} during a heavy request (max)", v["max_ms"], 50.0, "ms")
    # the same after a write (the answer cache's misses): what a dashboard sees once per new run
    for r in out.get("routes", []):
        if "after_write_p50_ms" in r:
            check(f"{r['route']} p50 after a write", r["after_write_p50_ms"],
                  200.0 if n > 1000 and r["route"].startswith("qc-data") else limit, "ms")
    for k, v in out.get("small_during_heavy_after_write", {}).items():
        check(f"{k} during a heavy request after a write (max)", v["max_ms"], 50.0, "ms")
    if "rss_after" in out:
        check("daemon RSS after the heavy requests", out["rss_after"] / 2**20, 300.0, "MiB")
    check("ingest with protein groups (parse + writes)", out["ingest_mq_with_parse_runs_per_s"], 50.0, "runs/s",
          at_least=True)
    check("ingest with protein groups (writes only)", out["ingest_mq_runs_per_s"], 50.0, "runs/s", at_least=True)
    if "ingest_mq_concurrent_runs_per_s" in out:
        check(f"ingest with protein groups, {out['ingest_concurrency']} at once (parse + writes)",
              out["ingest_mq_with_parse_concurrent_runs_per_s"], 50.0, "runs/s", at_least=True)
        check(f"ingest with protein groups, {out['ingest_concurrency']} at once (writes only)",
              out["ingest_mq_concurrent_runs_per_s"], 50.0, "runs/s", at_least=True)
    check("database size", out["db_mb_per_run"], 0.5, "MB/run")
    if "upload_vs_copy" in out:
        check("upload throughput vs a plain copy", out["upload_vs_copy"], 0.5, "x", at_least=True)
        check("upload RSS growth", out["upload_rss_growth"] / 2**20, 64.0, "MiB")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=20, help="timed HTTP requests per route (after 2 warm)")
    ap.add_argument("--base-repeat", type=int, default=3, help="timed runs of each baseline (0: none)")
    ap.add_argument("--upload-gib", type=float, default=2.0, help="0 skips the upload measurement")
    ap.add_argument("--keep", type=Path, help="build in (and keep) this folder; reused when it holds N runs")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--report", type=Path, help="only print the targets of an earlier results file")
    ap.add_argument("--ingest-only", action="store_true", help="only the ingest figures (no original's files, "
                    "no daemon)")
    args = ap.parse_args(argv)
    if args.ingest_only:
        with tempfile.TemporaryDirectory(prefix="qcd-ingest-") as tmp:
            figures = asyncio.run(ingest_figures(Path(tmp), args.runs, Source()))
        print(ingest_line(figures))
        return 0
    if args.report is not None:
        print("\n".join(targets(json.loads(args.report.read_text()))))
        return 0
    began = time.monotonic()
    root = args.keep or Path(tempfile.mkdtemp(prefix="qcd-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "built.json"
    try:
        if manifest.exists() and json.loads(manifest.read_text())["runs"] == args.runs:
            built = json.loads(manifest.read_text())
            print(f"reusing {root} ({args.runs} runs)")
        else:
            for stale in ("data", "side", "logs"):
                shutil.rmtree(root / stale, ignore_errors=True)
            print(f"building {args.runs} runs in {root} ...", flush=True)
            built = build(root, args.runs, Source())
            manifest.write_text(json.dumps(built))
        print(f"{ingest_line(built)}; DB {built['db_mb_per_run']:.3f} MB/run (original's Parquet "
              f"{built['original_parquet_bytes'] / built['runs'] / 1e6:.3f} MB/run)", flush=True)
        d = Daemon(root)
        d.start()
        try:
            idle = measure_idle(d)
            print(f"idle: {idle['idle_cpu_percent']:.2f} % CPU, RSS {idle['idle_rss'] / 2**20:.0f} MiB", flush=True)
            res = measure_routes(d, built, args.repeat, args.base_repeat)
            print(f"daemon RSS before {res['rss_before'] / 2**20:.0f} MiB, peak {res['rss_peak'] / 2**20:.0f} MiB, "
                  f"after {res['rss_after'] / 2**20:.0f} MiB")
            for label, key in (("", "small_during_heavy"), (" after a write", "small_during_heavy_after_write")):
                for k, v in res[key].items():
                    print(f"{k} during heavy requests{label}: max {v['max_ms']:.1f} ms, p50 {v['p50_ms']:.1f} ms "
                          f"(n={v['n']})")
            up = measure_upload(d, root, args.upload_gib, built["pipeline_uuid"]) if args.upload_gib > 0 else {}
            if up:
                print(f"upload {up['upload_gib']} GiB: {up['upload_mib_s']:.0f} MiB/s vs plain copy "
                      f"{up['copy_mib_s']:.0f} MiB/s ({up['upload_vs_copy']:.2f}x); RSS growth "
                      f"{up['upload_rss_growth'] / 2**20:.1f} MiB")
        finally:
            d.stop()
        out = {k: v for k, v in built.items() if k not in ("names",)} | idle | res | up
        out["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        out["loadavg"] = os.getloadavg()
        out["bench_seconds"] = time.monotonic() - began
        print(f"load average {out['loadavg'][0]:.1f} (2 cores); the bench took {out['bench_seconds'] / 60:.1f} min")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"bench-{args.runs}.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
        print(f"results: {args.out / f'bench-{args.runs}.json'}")
        print("targets (issue 13):\n" + "\n".join(targets(out)))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
