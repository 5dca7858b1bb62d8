"""Paths of the search tests' real inputs (tests/data/search/, see its README)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "search"
OUTSIDE = DATA.parent / "raw-outside"  # shared with the native tests
YEAST_RAW = DATA / "MetaMorpheus_SmallCalibratible_Yeast.raw"
BSA_RAW = OUTSIDE / "galaxyp_BSA_min_22.raw"
MS1_ONLY_RAW = OUTSIDE / "msdk_RP240K_01.raw"  # Orbitrap Elite, 55 MS1 scans, no MS2
YEAST_FASTA = DATA / "UP000002311-S.cerevisiae.fasta.gz"
BSA_FASTA = DATA / "bsa.fasta"
