#!/usr/bin/env python3
"""Benchmark: the read routes over HTTP against the original server's read path.

A thin front to ``bench/bench.py`` without the upload measurement: realistic runs (RawTools QC
values of the 140-run series, MaxQuant values and 1,272 protein groups x 11 channels per run,
perturbed), a real daemon on 127.0.0.1, and in the same process the original's per-run
pandas/Parquet read path and a plain pyarrow-dataset scan of the same per-run Parquet files.

    python scripts/bench_api.py [--runs 1000] [--repeat 20] [--base-repeat 3] [--keep DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--upload-gib", "0", *sys.argv[1:]]))
