#!/usr/bin/env python3
"""Benchmark: the overhead of running MaxQuant (the stand-in) on a Dask worker against running it locally.

Starts a real ``dask scheduler`` and one ``dask worker`` on 127.0.0.1, then, for the same RAW
file and pipeline files, times (median of N runs, after one untimed warm-up of each):

* local: the command through ``tools.runner.run_tool``, as the local executor runs it;
* remote, path map: the same command on the worker, the mqpar naming the workers' paths
  (here the same folders: one machine), through ``remote.client.run_remote`` (connect, record
  the job, submit, publish, poll, collect, forget);
* remote, transfer: the RAW file, FASTA and mqpar sent to the worker, the tables sent back,
  each SHA-256 checked, landed into the work folder.

Prints each median and the overhead against local (seconds and ratio).  The stand-in itself
takes a fraction of a second, so the figures are the executor's own cost; a real MaxQuant run
takes an hour.

    python scripts/bench_remote.py [--runs 5] [RAW]     (default: tests/data/raw/small2.RAW)
"""

from __future__ import annotations

# ruff: noqa: ASYNC240  (a benchmark: the timed work is what it measures, blocking included)
import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qcdaemon.config import config_from_dict
from qcdaemon.remote.maxquant import MaxQuantInputs, maxquant_remote
from qcdaemon.store import AsyncStore, Store
from qcdaemon.tools import maxquant as mq
from qcdaemon.tools import rawtools as rt
from qcdaemon.tools.runner import run_tool

DATA = REPO / "tests" / "data"
STANDIN = REPO / "tests" / "tools" / "MaxQuantCmd"
MQPAR = DATA / "maxquant" / "mqpar" / "mqpar_tmt11_test.xml"
FASTA = DATA / "maxquant" / "qc-test.fasta"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(root: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    port, wport = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(root / "dask.log", "ab")  # noqa: SIM115
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], stdout=log, stderr=log)]
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny",
                                   "--nthreads", "1", "--memory-limit", "400MB", "--no-dashboard", "--host",
                                   "127.0.0.1", "--worker-port", str(wport)], stdout=log, stderr=log))
    deadline = time.monotonic() + 60
    while "Registered to" not in (root / "dask.log").read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit("the Dask worker did not connect")
        time.sleep(0.2)
    return address, procs


async def local_once(raw: Path, base: Path) -> float:
    t = time.perf_counter()
    shutil.rmtree(base, ignore_errors=True)
    staged = rt.stage_raw(raw, base / "maxquant")
    mq.write_mqpar(MQPAR, base / "mqpar.xml", raw=staged, fasta=FASTA, label="bench", threads=1, combined_dir=base)
    argv = mq.maxquant_argv([sys.executable, str(STANDIN)], base / "mqpar.xml", "none")
    res = await run_tool(argv, cwd=base, log_dir=base / "logs", name="maxquant", timeout=120)
    assert res.ok and (base / "combined" / "txt" / "proteinGroups.txt").is_file(), res
    return time.perf_counter() - t


async def remote_once(store: AsyncStore, cfg_keys: dict, raw: Path, base: Path) -> float:
    cfg = config_from_dict({"engine": {"maxquant": {"command": [sys.executable, str(STANDIN)], "runtime": "none",
                                                    "timeout_seconds": 120, **cfg_keys}}})
    t = time.perf_counter()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    await store.call(Store.set_remote_job, 1, "maxquant", None)
    res = await maxquant_remote(store, cfg, cfg.executors.of("maxquant"),
                                MaxQuantInputs(1, raw, base, FASTA, MQPAR, "bench"), asyncio.Event())
    assert res.ok and (base / "combined" / "txt" / "proteinGroups.txt").is_file(), res
    return time.perf_counter() - t


async def bench(raw: Path, runs: int, root: Path, address: str) -> None:
    store = AsyncStore(root / "bench.duckdb")
    try:  # one stage row for the remote jobs' keys (the store schema's own table)
        await store.call(Store.execute, "INSERT INTO stages (run_id, stage, seq, state) VALUES (1, 'maxquant', 3, 'running')")
        variants = {
            "local": lambda: local_once(raw, root / "local"),
            "remote, path map": lambda: remote_once(
                store, {"executor": "dask", "scheduler": address, "path_map": {str(root): str(root), str(FASTA.parent): str(FASTA.parent)}},
                raw, root / "mapped"),
            "remote, transfer": lambda: remote_once(
                store, {"executor": "dask", "scheduler": address, "transfer": True}, raw, root / "sent"),
        }
        medians: dict[str, float] = {}
        for name, once in variants.items():
            await once()  # warm-up, untimed
            medians[name] = statistics.median([await once() for _ in range(runs)])
        local = medians["local"]
        print(f"{raw.name} ({raw.stat().st_size / 2**20:.1f} MB), median of {runs} runs each")
        for name, m in medians.items():
            extra = "" if name == "local" else f"   overhead {m - local:+.3f} s   ratio {m / local:.2f}x"
            print(f"  {name:18s} {m:7.3f} s{extra}")
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("raw", nargs="?", type=Path, default=DATA / "raw" / "small2.RAW")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="qcd-bench-remote-") as tmp:
        root = Path(tmp).resolve()
        address, procs = start_cluster(root)
        try:
            asyncio.run(bench(args.raw.resolve(), args.runs, root, address))
        finally:
            for p in reversed(procs):
                p.send_signal(signal.SIGTERM if os.name == "posix" else signal.SIGINT)
                p.wait(timeout=30)


if __name__ == "__main__":
    main()
