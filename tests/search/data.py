"""Paths of the search tests' real inputs (tests/data/search/, see its README)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "search"
YEAST_RAW = DATA / "MetaMorpheus_SmallCalibratible_Yeast.raw"
BSA_RAW = DATA / "galaxyp_BSA_min_22.raw"
MS1_ONLY_RAW = DATA / "DeconTools_C2-6_Stock_MeOH_FTMS.raw"
YEAST_FASTA = DATA / "UP000002311-S.cerevisiae.fasta.gz"
BSA_FASTA = DATA / "bsa.fasta"
