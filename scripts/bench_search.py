#!/usr/bin/env python3
"""Benchmark: the Sage identification search on the outside RAW files, next to the MaxQuant stand-in.

Each file is searched the way the engine's search stage does it: one fresh child process
(``python -m qcdaemon.search.cli FILE --fasta F``), so the database is built in that process and
its peak memory is that process's.  Printed per file:

- ``db s`` / ``db MB``: Sage index build time and the child's peak resident memory after the build;
- ``spectra/s``: searched MS2 spectra per second of scoring (Sage, ``threads`` rayon workers);
- ``file->IDs s``: wall time from starting the child to its JSON values (interpreter start, RAW
  reading, database build, scoring, FDR): the time from a settled file to its ID-based values;
- ``MQ stand-in s``: wall time of ``tests/tools/MaxQuantCmd`` on the same file.  The stand-in only
  checks the mqpar and copies recorded tables, so this is a floor for the MaxQuant stage's
  overhead, not MaxQuant's search time (tens of minutes to hours per run on a real instrument PC).

FASTA: ``bsa.fasta`` for the BSA runs, the yeast proteome for all others (for non-yeast files this
is the "FASTA does not match" case).  Files the search refuses (no MS2, unreadable) show the reason.

With ``--daemon`` the files go through a real daemon instead (tests/daemonproc.py: a watched folder
per FASTA, the search stage and the MaxQuant stand-in as its MaxQuant stage), and the table shows,
per run, the time from the file being taken (settled; the run's creation) to the end of its native,
search and MaxQuant stages, from the stages' own timestamps in the store, and to the run's stored
verdict when that verdict is ID-based (``detail.basis == "id-based"``: the search's values are in).

With ``--warm`` one RAW file (default: the yeast file) goes through a real daemon twice in a row, once
with the warm search worker (``keep_warm_seconds = 300``) and once with a fresh child per run (0):
per run, the seconds from the file being taken (settled) to its ID-based verdict, whether the search
database was reused, and the warm worker's resident memory (now and its peak, from /proc) after the
second run.  The first run is cold either way; the second shows what the warm worker saves.

With ``--index-routes FASTA`` it measures, in this process, why the index is not cached on disk:
Sage's build against the only way sagepy 0.4.6 offers to make an index from saved parts (its
constructor, fed one Python object per peptide and per fragment), and whether the index pickles.

    python scripts/bench_search.py [--threads 2] [--fdr 0.01] [--daemon | --warm] [--index-routes FASTA] [RAW ...]
                                    (default: /work/shared/data/raw-outside/*.raw, else tests/data/search/*.raw)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qcdaemon.tools.maxquant import write_mqpar

DATA = REPO / "tests" / "data"
OUTSIDE = Path("/work/shared/data/raw-outside")
YEAST = DATA / "search" / "UP000002311-S.cerevisiae.fasta.gz"
BSA = DATA / "search" / "bsa.fasta"
MQPAR = DATA / "maxquant" / "mqpar" / "mqpar_tmt11_test.xml"
STANDIN = REPO / "tests" / "tools" / "MaxQuantCmd"


def fasta_for(raw: Path) -> Path:
    return BSA if "bsa" in raw.name.lower() else YEAST


def search_child(raw: Path, fasta: Path, threads: int, fdr: float) -> tuple[float, dict | None, str]:
    argv = [sys.executable, "-m", "qcdaemon.search.cli", str(raw), "--fasta", str(fasta), "--fdr", str(fdr),
            "--search-params", json.dumps({"threads": threads})]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return seconds, None, (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return seconds, json.loads(proc.stdout), ""


def standin_seconds(raw: Path, fasta: Path) -> float | None:
    with tempfile.TemporaryDirectory(prefix="bench-mq-") as tmp:
        mqpar = Path(tmp) / "mqpar.xml"
        write_mqpar(MQPAR, mqpar, raw=raw, fasta=fasta, label=raw.stem, threads=1, combined_dir=Path(tmp))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(STANDIN), str(mqpar)], capture_output=True, stdin=subprocess.DEVNULL)
        return time.perf_counter() - start if proc.returncode == 0 else None


def through_daemon(files: list[Path], threads: int, fdr: float) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from daemonproc import Daemon, wait_for  # the tests' real-daemon driver

    from qcdaemon.store import Store

    with tempfile.TemporaryDirectory(prefix="bench-search-daemon-") as tmp:
        root = Path(tmp)
        folders = {YEAST: root / "yeast", BSA: root / "bsa"}  # folder name = pipeline slug
        for folder in folders.values():
            folder.mkdir()
        watch = [{"path": str(folder), "pipeline": f"bench/{folder.name}", "owner": "op@lab.org",
                  "settle_seconds": 1.0, "poll_interval": 0.5} for folder in folders.values()]
        engine = {"search": {"threads": threads, "fdr": fdr},
                  "maxquant": {"command": [sys.executable, str(STANDIN)], "runtime": "none", "timeout_seconds": 120}}
        d = Daemon(root, engine=engine, watch=watch)
        try:
            d.cli("user", "add", "op@lab.org", "--password-stdin", input="bench-password\n")
            d.cli("project", "add", "Bench", "--member", "op@lab.org")
            for folder in folders.values():
                fasta = next(f for f, g in folders.items() if g == folder)
                d.cli("pipeline", "add", "--project", "bench", "--name", folder.name, "--fasta", str(fasta),
                      "--mqpar", str(MQPAR))
            d.start()
            for raw in files:
                shutil.copyfile(raw, folders[fasta_for(raw)] / raw.name)
            seen: dict[str, set[str]] = {}
            names = [f.name for f in folders.values()]

            def done() -> object:
                _poll_verdicts(d, names, seen)
                return d.finished(len(files))

            wait_for(done, 60 + 30 * len(files), "every run to finish", interval=0.5)
            for _ in range(6):  # the verdict follows the last stage's end by a moment
                time.sleep(0.5)
                _poll_verdicts(d, names, seen)
            d.stop()
        finally:
            d.close()
        store = Store(d.data / "qcdaemon.duckdb")
        try:
            pipelines = [p["id"] for p in store.rows("SELECT id FROM pipelines ORDER BY id")]
            rows = [(run, {s["stage"]: s for s in store.stages(run["id"])}) for p in pipelines for run in store.runs_of(p)]
            verdicts = {run_id: v for p in pipelines for run_id, v in store.verdicts_of(p).items()}
        finally:
            store.close()
    print(f"Through a real daemon ({threads} search threads, FDR {fdr:g}); seconds from the file being taken")
    print("native, search, MQ stand-in: end of the stage; search verdict: the ID-based verdict the search stage computed"
          " as it finished (polled from /api/qc/verdicts every 0.5 s); latest verdict: the stored one")
    head = (f"{'file':42} {'native':>7} {'search':>7} {'search verdict':>14} {'latest verdict':>14} {'MQ stand-in':>11}"
            "  search state")
    print(f"{head}\n{'-' * len(head)}")
    for run, stages in sorted(rows, key=lambda r: r[0]["name"]):
        took = {name: _seconds_after(run["created_at"], stages.get(name)) for name in ("native", "search", "maxquant")}
        search = stages.get("search") or {}
        note = search.get("state", "?") + (f" ({(search.get('error') or '')[:50]})" if search.get("error") else "")
        verdict = _id_verdict_after(run["created_at"], verdicts.get(run["id"]))
        first = _search_verdict_after(run["created_at"], stages.get("search"), seen.get(run["name"], set()))
        print(f"{run['name'][:42]:42} {took['native']:>7} {took['search']:>7} {first:>14} {verdict:>14} "
              f"{took['maxquant']:>11}  {note}")


def _poll_verdicts(d: object, pipelines: list[str], seen: dict[str, set[str]]) -> None:
    """Collect every verdict time (computed_at) each run shows in /api/qc/verdicts while the runs go on."""
    for pipeline in pipelines:
        try:
            answer = d.api("/api/qc/verdicts", {"project": "bench", "pipeline": pipeline})  # type: ignore[attr-defined]
        except (AssertionError, OSError):
            continue
        for run in answer.get("runs", []):
            if run.get("basis") == "id-based" and run.get("computed_at"):
                seen.setdefault(run["name"], set()).add(run["computed_at"])


def _search_verdict_after(created: dt.datetime, search: dict | None, seen: set[str]) -> str:
    """Seconds from the run's creation to the verdict the search stage computed as it finished.

    The stage stores its values, updates the verdict, then records its end: that verdict is the
    latest ID-based one seen between the stage's start and end (MaxQuant's may come earlier).
    """
    if not search or search.get("ended_at") is None or search.get("started_at") is None:
        return "-"
    times = [_naive_utc(dt.datetime.fromisoformat(t.replace("Z", "+00:00"))) for t in seen]
    during = [t for t in times if _naive_utc(search["started_at"]) <= t <= _naive_utc(search["ended_at"])]
    return f"{(max(during) - _naive_utc(created)).total_seconds():.1f}" if during else "-"


def _naive_utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def warm_vs_cold(raw: Path, threads: int, fdr: float) -> None:
    print(f"{raw.name} against {YEAST.name}, twice in a row through a real daemon ({threads} search threads,"
          f" FDR {fdr:g}); seconds from the file being taken to its ID-based verdict")
    head = f"{'keep_warm_seconds':>17} {'run 1 (cold)':>12} {'run 2':>7} {'run 2 db':>8} {'worker RSS MB':>13} {'peak MB':>8}"
    print(f"{head}\n{'-' * len(head)}")
    for keep in (300, 0):
        first, second, reused, rss = _two_runs(raw, threads, fdr, keep)
        now, peak = rss if rss else ("-", "-")
        print(f"{keep:17d} {first:>12} {second:>7} {reused:>8} {now:>13} {peak:>8}")


def _two_runs(raw: Path, threads: int, fdr: float, keep: int) -> tuple[str, str, str, tuple[str, str] | None]:
    sys.path.insert(0, str(REPO / "tests"))
    from daemonproc import Daemon, wait_for

    from qcdaemon.store import Store

    with tempfile.TemporaryDirectory(prefix="bench-search-warm-") as tmp:
        root = Path(tmp)
        folder = root / "yeast"
        folder.mkdir()
        watch = [{"path": str(folder), "pipeline": "bench/yeast", "owner": "op@lab.org", "settle_seconds": 1.0,
                  "poll_interval": 0.5}]
        d = Daemon(root, engine={"search": {"threads": threads, "fdr": fdr, "keep_warm_seconds": keep}}, watch=watch)
        rss = None
        try:
            d.cli("user", "add", "op@lab.org", "--password-stdin", input="bench-password\n")
            d.cli("project", "add", "Bench", "--member", "op@lab.org")
            d.cli("pipeline", "add", "--project", "bench", "--name", "yeast", "--fasta", str(YEAST))
            d.start()
            for n in (1, 2):  # one after the other: the second finds the first's database warm (or not)
                shutil.copyfile(raw, folder / f"run_{n}.raw")
                wait_for(lambda n=n: d.finished(n), 600, f"run {n} to finish", interval=0.5)  # type: ignore[misc]
            rss = _worker_rss(d.data / "pids")
            d.stop()
        finally:
            d.close()
        store = Store(d.data / "qcdaemon.duckdb")
        try:
            [pipeline] = [p["id"] for p in store.rows("SELECT id FROM pipelines")]
            runs = sorted(store.runs_of(pipeline), key=lambda r: r["name"])
            verdicts = store.verdicts_of(pipeline)
        finally:
            store.close()
        took = [_id_verdict_after(r["created_at"], verdicts.get(r["id"])) for r in runs]
        log = d.data / "work" / runs[1]["run_key"] / "search-stage" / "search.err"
        text = log.read_text() if log.is_file() else ""
        reused = "reused" if "reused" in text else "built" if "built in" in text else "?"
    return took[0], took[1], reused, rss


def _worker_rss(pid_dir: Path) -> tuple[str, str] | None:
    """VmRSS and VmHWM (MB) of the warm search worker the daemon's pid record names (Linux)."""
    for record in pid_dir.glob("search-worker-*.pid"):
        try:
            status = Path(f"/proc/{record.read_text().split()[0]}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return tuple(f"{int(fields[k].split()[0]) / 1024:.0f}" for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]
    return None


def index_routes(fasta_path: Path, threads: int) -> None:
    """Build time, export time and rebuild-from-parts time of one Sage index (see docs/search.md)."""
    import os
    import pickle

    os.environ["RAYON_NUM_THREADS"] = str(threads)
    import sagepy_connector

    from qcdaemon.search.database import _build, peak_rss_mb
    from qcdaemon.search.fasta import read_fasta
    from qcdaemon.search.params import SearchParams

    fasta = read_fasta(fasta_path)
    _build("warm-up", read_fasta(BSA), SearchParams())  # the first Sage call starts its thread pool
    db, info = _build("bench", fasta, SearchParams(threads=threads))
    ptr = db.get_py_ptr()
    try:
        pickle.dumps(ptr)
        pickles = "yes"
    except TypeError as exc:
        pickles = f"no ({exc})"
    t = time.perf_counter()
    peptides, indices, mzs = ptr.peptides, ptr.fragment_indices.tolist(), ptr.fragment_mzs.tolist()
    export = time.perf_counter() - t
    t = time.perf_counter()
    py_peptide, py_db = sagepy_connector.py_peptide.PyPeptide, sagepy_connector.py_database
    parts = [py_peptide(q.decoy, q.sequence, list(q.modifications), q.monoisotopic, q.missed_cleavages, q.position,
                        list(q.proteins), q.semi_enzymatic, q.n_term, q.c_term) for q in peptides]
    fragments = [py_db.PyTheoretical(i, m) for i, m in zip(indices, mzs)]
    objects = time.perf_counter() - t
    t = time.perf_counter()
    again = py_db.PyIndexedDatabase(parts, fragments, ptr.ion_kinds, list(ptr.min_value), ptr.potential_mods,
                                    ptr.bucket_size, ptr.generate_decoys, ptr.decoy_tag)
    construct = time.perf_counter() - t
    assert again.num_fragments == ptr.num_fragments
    print(f"{fasta_path.name}: {info.proteins} proteins, {info.peptides} peptides, {info.fragments} fragments")
    print(f"  Sage build {info.build_seconds:.2f} s (peak RSS {info.peak_rss_mb} MB); pickles: {pickles}")
    print(f"  export to arrays {export:.2f} s; rebuild from parts: objects {objects:.2f} s + constructor {construct:.2f} s"
          f" = {objects + construct:.2f} s ({(objects + construct) / info.build_seconds:.1f}x the build),"
          f" peak RSS {peak_rss_mb()} MB")


def _id_verdict_after(created: object, verdict: dict | None) -> str:
    """Seconds from the run's creation to its stored verdict, when that verdict is ID-based."""
    if not verdict or (verdict.get("detail") or {}).get("basis") != "id-based":
        return "-"
    return f"{(verdict['computed_at'] - created).total_seconds():.1f}"


def _seconds_after(created: object, stage: dict | None) -> str:
    if not stage or stage["ended_at"] is None or stage["state"] != "done":
        return "-"
    return f"{(stage['ended_at'] - created).total_seconds():.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fdr", type=float, default=0.01)
    parser.add_argument("--daemon", action="store_true", help="through a real daemon (stage timestamps)")
    parser.add_argument("--warm", action="store_true", help="cold vs warm: two runs in a row, warm worker vs none")
    parser.add_argument("--index-routes", type=Path, metavar="FASTA", help="build vs rebuild-from-parts of one index")
    args = parser.parse_args(argv)
    if args.index_routes:
        index_routes(args.index_routes, args.threads)
        return 0
    files = args.files or sorted((OUTSIDE if OUTSIDE.is_dir() else DATA / "search").glob("*.raw"))
    if args.warm:
        warm_vs_cold(args.files[0] if args.files else DATA / "search" / "MetaMorpheus_SmallCalibratible_Yeast.raw",
                     args.threads, args.fdr)
        return 0
    if args.daemon:
        through_daemon(files, args.threads, args.fdr)
        return 0
    head = f"{'file':42} {'fasta':8} {'MS2':>5} {'db s':>6} {'db MB':>6} {'spectra/s':>9} {'file->IDs s':>11} " \
           f"{'PSMs':>5} {'peps':>5} {'MQ stand-in s':>13}"
    print(f"Sage search, {args.threads} threads, FDR {args.fdr:g}; one child process per file\n{head}\n{'-' * len(head)}")
    for raw in files:
        fasta = fasta_for(raw)
        wall, doc, error = search_child(raw, fasta, args.threads, args.fdr)
        mq = standin_seconds(raw, fasta)
        mq_text = f"{mq:13.2f}" if mq is not None else f"{'failed':>13}"
        label = "bsa" if fasta == BSA else "yeast"
        if doc is None:
            print(f"{raw.name[:42]:42} {label:8} {'-':>5} {'':>6} {'':>6} {'':>9} {wall:11.2f} {'':>5} {'':>5} {mq_text}"
                  f"   ({error[:70]})")
            continue
        v, db, s = doc["values"], doc["database"], doc["seconds"]
        rate = v["SearchMs2Spectra"] / s["score"] if s.get("score") else float("nan")
        print(f"{raw.name[:42]:42} {label:8} {v['SearchMs2Spectra']:5d} {db['build_seconds']:6.2f} "
              f"{(db['peak_rss_mb'] or 0):6.0f} {rate:9.0f} {wall:11.2f} {v['SearchPsms']:5d} {v['SearchPeptides']:5d} "
              f"{mq_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
