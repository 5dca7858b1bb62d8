#!/usr/bin/env python3
"""Compare the native metrics with the real RawTools 2.0.7, file by file and metric by metric.

For every ``*.raw`` file of a folder it runs RawTools the way qcdaemon does (the metrics run
``-f <raw> -o <dir> -p -q -x -u -l -m -r TMT11 -chro 12TB`` and the QC run ``-d <dir> -qc <dir>``,
on a staged hard link / copy, cwd = the job's output folder) and the native reader
(``qcdaemon parse raw``'s code), then prints per file and metric both values, the relative
difference and ``agree`` / ``DIFFER`` (1 % tolerance for measurements, exact for counts and
names), and a summary line.  RawTools' reference values are the file's ``QcDataTable.csv`` row
(QC mode), which is what qcdaemon stores as the RawTools stage's values.

RawTools' outputs are cached (``--cache``, default ``/tmp/qcdaemon-rawtools-cache``) by file
name, size and mtime, so a re-run does not start mono again; ``--fresh`` ignores the cache.
Nothing is written next to the RAW files.

    python scripts/compare_rawtools.py FOLDER [--cache DIR] [--fresh] [--markdown] [--only NAME ...]

Exit status 0 when every compared metric agrees, 1 when some differ.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qcdaemon.errors import ParseError
from qcdaemon.rawfile.native import compute_native_metrics
from qcdaemon.tools import rawtools as rt
from qcdaemon.tools.rawtools_parse import parse_qc_data_table

TOLERANCE = 0.01
#: Metrics compared exactly (counts and names); the rest within TOLERANCE relative.
EXACT = {"TotalScans", "NumMs1Scans", "NumMs2Scans", "NumMs3Scans", "NumEsiInstabilityFlags",
         "Instrument", "ExperimentMsOrder", "Ms1Analyzer", "Ms2Analyzer", "Ms3Analyzer", "DateAcquired"}
#: QcDataTable columns that need a search or quantification (no native counterpart).
NOT_NATIVE = {"RawFile", "MedianMassDrift(ppm)", "IdentificationRate(IDs/Ms2Scan)", "DigestionEfficiency",
              "MissedCleavageRate(/PSM)", "MedianPeptideScore", "CutoffDecoyScore(0.05FDR)", "NumberOfPSMs",
              "NumberOfUniquePeptides", "PsmChargeRatio3to2", "PsmChargeRatio4to2", "SearchParameters"}
#: How RawTools writes "no value" in its table.
PLACEHOLDERS = {None, "Any", "None", ""}
#: Metrics that need MS2 scans: RawTools prints 0 for them on a run without MS2 scans ("File
#: only contains MS1 scans. Skipping meta data calculations."), native gives None.
NEEDS_MS2 = {"Ms2MedianSummedIntensity", "MedianPrecursorIntensity", "MedianMs1IsolationInterference",
             "MedianMs2PeakFractionConsumingTop80PercentTotalIntensity"}


@dataclass
class RawToolsRun:
    table: dict[str, Any] | None
    exit_codes: dict[str, int]
    reason: str | None  # why there is no table row (crash message)
    seconds: float


@dataclass
class Row:
    metric: str
    native: Any
    rawtools: Any
    rel: float | None
    verdict: str  # agree / DIFFER / both-none / no-ms2 (RawTools' 0 placeholder) / native-only


@dataclass
class FileReport:
    name: str
    rawtools: RawToolsRun
    native_error: str | None
    rows: list[Row] = field(default_factory=list)


def _cache_key(raw: Path) -> str:
    st = raw.stat()
    return f"{raw.name}-{st.st_size}-{st.st_mtime_ns}"


def run_rawtools(raw: Path, cache: Path, fresh: bool) -> RawToolsRun:
    """Both RawTools jobs on ``raw`` (cached); the QcDataTable row when RawTools wrote one."""
    command = rt.default_rawtools_command()
    if command is None:
        raise SystemExit("RawTools is not runnable here (needs mono and the pyRawTools distribution)")
    work = cache / _cache_key(raw)
    done = work / "done.json"
    if fresh and work.exists():
        shutil.rmtree(work)
    if not done.is_file():
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        staged = rt.stage_raw(raw, work / rt.STAGE_DIR)
        codes: dict[str, int] = {}
        start = time.perf_counter()
        for name, argv in rt.rawtools_jobs(command, staged, work):
            job = rt.job_dir(work, name)
            job.mkdir(parents=True, exist_ok=True)
            with open(job / "stdout.txt", "wb") as out, open(job / "stderr.txt", "wb") as err:
                codes[name] = subprocess.run(argv, cwd=job, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                             timeout=600, check=False).returncode
        shutil.rmtree(work / rt.STAGE_DIR, ignore_errors=True)
        done.write_text(json.dumps({"exit_codes": codes, "seconds": time.perf_counter() - start}))
    info = json.loads(done.read_text())
    table_path = rt.job_dir(work, "rawtools_qc") / "QcDataTable.csv"
    table, reason = None, None
    if table_path.is_file():
        try:
            rows = parse_qc_data_table(table_path)
            table = rows[0] if rows else None
        except ParseError as exc:
            reason = f"QcDataTable.csv unreadable: {exc}"
    if table is None and reason is None:
        reason = _crash_reason(rt.job_dir(work, "rawtools_qc")) or "no QcDataTable.csv row"
    return RawToolsRun(table, info["exit_codes"], reason, info["seconds"])


def _crash_reason(job: Path) -> str | None:
    """The first .NET exception line RawTools printed (``System.XxxException: message``)."""
    for name in ("stderr.txt", "stdout.txt"):
        path = job / name
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                if "Exception:" in line and not line.strip().startswith("Unhandled Exception"):
                    return line.strip()[:160]
    return None


def compare_values(native: dict[str, Any], table: dict[str, Any]) -> list[Row]:
    rows = []
    no_ms2 = table.get("NumMs2Scans") == 0
    for metric, ref in table.items():
        if metric in NOT_NATIVE:
            continue
        mine = native.get(metric)
        if no_ms2 and metric in NEEDS_MS2 and ref == 0 and mine is None:
            rows.append(Row(metric, mine, ref, None, "no-ms2"))
            continue
        rows.append(_compare(metric, mine, ref))
    return rows


def _compare(metric: str, mine: Any, ref: Any) -> Row:
    if metric == "DateAcquired":
        mine_s = mine.strftime("%m/%d/%Y %H:%M:%S") if isinstance(mine, dt.datetime) else mine
        ref_s = ref.strftime("%m/%d/%Y %H:%M:%S") if isinstance(ref, dt.datetime) else ref
        return Row(metric, mine_s, ref_s, None, "agree" if mine_s == ref_s else "DIFFER")
    if ref in PLACEHOLDERS:
        return Row(metric, mine, ref, None, "both-none" if mine is None else "native-only")
    if isinstance(ref, str) or metric in EXACT:
        return Row(metric, mine, ref, None, "agree" if mine == ref else "DIFFER")
    if not isinstance(mine, (int, float)):
        return Row(metric, mine, ref, None, "DIFFER")
    ref_f, mine_f = float(ref), float(mine)
    rel = abs(mine_f - ref_f) / abs(ref_f) if ref_f else (0.0 if mine_f == 0 else math.inf)
    ok = rel <= TOLERANCE or abs(mine_f - ref_f) <= 1e-9
    return Row(metric, mine, ref, rel, "agree" if ok else "DIFFER")


def report_file(raw: Path, cache: Path, fresh: bool) -> FileReport:
    rawtools = run_rawtools(raw, cache, fresh)
    try:
        native = compute_native_metrics(raw).values
        native_error = None
    except ParseError as exc:
        native, native_error = {}, str(exc)
    rep = FileReport(raw.name, rawtools, native_error)
    if rawtools.table is not None:
        rep.rows = compare_values(native, rawtools.table)
    return rep


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    return "None" if value is None else str(value)


def print_text(reports: list[FileReport]) -> None:
    for rep in reports:
        codes = ", ".join(f"{k} exit {v}" for k, v in rep.rawtools.exit_codes.items())
        print(f"== {rep.name}  (RawTools: {codes}; native: {rep.native_error or 'ok'})")
        if rep.rawtools.table is None:
            print(f"   RawTools wrote no QC row: {rep.rawtools.reason}")
            continue
        for r in rep.rows:
            rel = f"{r.rel:.2e}" if r.rel is not None else "-"
            print(f"   {r.metric:58s} native={_fmt(r.native):24s} rawtools={_fmt(r.rawtools):24s} rel={rel:9s} {r.verdict}")


def print_markdown(reports: list[FileReport]) -> None:
    print("| file | metric | native | RawTools 2.0.7 | rel. difference | verdict |")
    print("|---|---|---|---|---|---|")
    for rep in reports:
        if rep.rawtools.table is None:
            print(f"| {rep.name} | (all) | {rep.native_error or 'metrics'} | no QC row: {rep.rawtools.reason} | – | – |")
            continue
        for r in rep.rows:
            if r.verdict in ("both-none", "no-ms2"):
                continue
            rel = f"{r.rel:.1e}" if r.rel is not None else "–"
            print(f"| {rep.name} | `{r.metric}` | {_fmt(r.native)} | {_fmt(r.rawtools)} | {rel} | {r.verdict} |")


def summary(reports: list[FileReport]) -> tuple[str, bool]:
    compared = [r for rep in reports for r in rep.rows if r.verdict in ("agree", "DIFFER")]
    differ = [r for r in compared if r.verdict == "DIFFER"]
    with_table = [rep for rep in reports if rep.rawtools.table is not None]
    full = [rep.name for rep in with_table if not any(r.verdict == "DIFFER" for r in rep.rows)]
    native_failed = [rep.name for rep in reports if rep.native_error]
    placeholders = sum(1 for rep in reports for r in rep.rows if r.verdict == "no-ms2")
    text = (f"SUMMARY: {len(reports)} files, RawTools QC row for {len(with_table)}, "
            f"native failed on {len(native_failed)}; {len(compared)} metric values compared, "
            f"{len(compared) - len(differ)} agree, {len(differ)} differ "
            f"({placeholders} RawTools 0-placeholders on runs without MS2 not counted); "
            f"files agreeing fully: {len(full)}/{len(with_table)}"
            + (f" (differ: {', '.join(sorted({rep.name for rep in with_table} - set(full)))})" if differ else ""))
    return text, not differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/qcdaemon-rawtools-cache"))
    parser.add_argument("--fresh", action="store_true", help="re-run RawTools even when cached")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead")
    parser.add_argument("--only", nargs="*", help="file names to compare (default: all)")
    args = parser.parse_args(argv)
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() == ".raw" and p.is_file())
    if args.only:
        files = [p for p in files if p.name in set(args.only)]
    reports = [report_file(p, args.cache.absolute(), args.fresh) for p in files]
    (print_markdown if args.markdown else print_text)(reports)
    text, ok = summary(reports)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
