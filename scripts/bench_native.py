#!/usr/bin/env python3
"""Benchmark: native metrics versus the real RawTools 2.0.7 on the same RAW files.

Process against process: for each file prints the wall-clock time of a whole
``qcdaemon parse raw <file>`` subprocess (the engine's native-stage command line) (interpreter start, imports, metrics, JSON out; median of
N runs) next to the wall-clock time of a whole RawTools subprocess (median of N runs of
``mono RawTools.exe -f <copy of the raw in a temp dir> -o <temp dir> -p -q -x -u -l -m -r TMT11 -chro 12TB``),
and their ratio.  Both start cold in the same way (a new process each run, the file in the page
cache after the first untimed run of each tool).  Where RawTools exits non-zero the column says ``crashed``.  Both baselines
are measured in this process run; RawTools works on a fresh temporary copy each run and
nothing is written next to the input files.

    python scripts/bench_native.py [--runs 5] [RAW ...]     (default: tests/data/raw/*)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qcdaemon.tools.rawtools import find_rawtools_exe

DEFAULT_FILES = ("small2.RAW", "small.RAW", "Angiotensin_325-HCD.raw", "Blank04_29Mar17_Smeagol.raw")
RAWTOOLS_ARGS = "-p -q -x -u -l -m -r TMT11 -chro 12TB".split()


@dataclass
class RawToolsTiming:
    seconds: float
    crashed: bool


def run_native_once(raw: Path) -> float:
    """One whole native-metrics process, launched as the engine's native stage launches it
    (``python -m qcdaemon.rawfile.cli <raw> --chromatograms``; ``qcdaemon parse raw`` is the same code)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qcdaemon.rawfile.cli", str(raw), "--chromatograms"], cwd=REPO,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=3600, check=True)
    return time.perf_counter() - start


def time_native(raw: Path, runs: int) -> float:
    run_native_once(raw)  # untimed: the page cache, like RawTools' untimed first run
    return statistics.median(run_native_once(raw) for _ in range(runs))


def run_rawtools_once(exe: Path, raw: Path) -> RawToolsTiming:
    with tempfile.TemporaryDirectory(prefix="bench-rawtools-") as tmp:
        copy = Path(tmp) / raw.name
        out = Path(tmp) / "out"
        out.mkdir()
        shutil.copyfile(raw, copy)
        start = time.perf_counter()
        proc = subprocess.run(["mono", str(exe), "-f", str(copy), "-o", str(out), *RAWTOOLS_ARGS],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=3600, check=False)
        return RawToolsTiming(time.perf_counter() - start, proc.returncode != 0)


def time_rawtools(exe: Path, raw: Path, runs: int) -> RawToolsTiming:
    run_rawtools_once(exe, raw)  # untimed: the page cache and mono's own caches
    timings = [run_rawtools_once(exe, raw) for _ in range(runs)]
    return RawToolsTiming(statistics.median(t.seconds for t in timings), any(t.crashed for t in timings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("files", nargs="*", type=Path, help="RAW files (default: the four in tests/data/raw)")
    parser.add_argument("--runs", type=int, default=5, help="runs per file and tool (median reported)")
    args = parser.parse_args(argv)
    files = args.files or [REPO / "tests" / "data" / "raw" / name for name in DEFAULT_FILES]
    exe = find_rawtools_exe() if shutil.which("mono") else None
    print(f"runs per measurement: {args.runs} (median); RawTools: {exe or 'unavailable (needs mono and pyRawTools)'}")
    print(f"{'file':32} {'MB':>6} {'native proc (s)':>15} {'RawTools (s)':>16} {'RawTools/native':>16}")
    for raw in files:
        native = time_native(raw, args.runs)
        size = raw.stat().st_size / 1e6
        if exe is None:
            print(f"{raw.name:32} {size:6.2f} {native:15.3f} {'unavailable':>16} {'-':>16}")
            continue
        rt = time_rawtools(exe, raw, args.runs)
        rt_text = f"crashed ({rt.seconds:.2f})" if rt.crashed else f"{rt.seconds:.3f}"
        ratio = "-" if rt.crashed else f"{rt.seconds / native:.1f}x"
        print(f"{raw.name:32} {size:6.2f} {native:15.3f} {rt_text:>16} {ratio:>16}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
