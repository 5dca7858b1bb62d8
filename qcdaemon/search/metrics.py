"""Identification QC values of one search, and its PSM table (pyarrow).

A PSM counts when it is a target with spectrum q-value <= FDR; a peptide (plain sequence) when a
target PSM of it has peptide q-value <= FDR; a protein group (the set of proteins a peptide maps to,
as Sage reports it) when a counted peptide's protein q-value <= FDR.  Spreads are interquartile
ranges (75th minus 25th percentile, linear interpolation), robust to the few large errors a search
always has.  Distributions are percentages of the counted PSMs.  Names start with ``Search`` so they
sit next to MaxQuant's columns without clashing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from .sage import Psm, SearchResult
from .tmt import CHANNELS, reporter_intensities

PSM_SCHEMA = pa.schema([
    ("scan", pa.int32()), ("rt", pa.float64()), ("precursor_mz", pa.float64()), ("charge", pa.int16()),
    ("peptide", pa.string()), ("sequence", pa.string()), ("proteins", pa.string()), ("decoy", pa.bool_()),
    ("hyperscore", pa.float64()), ("calc_mass", pa.float64()), ("precursor_error_ppm", pa.float64()),
    ("isotope_error", pa.float64()), ("missed_cleavages", pa.int16()), ("length", pa.int16()),
    ("matched_peaks", pa.int16()), ("spectrum_q", pa.float64()), ("peptide_q", pa.float64()),
    ("protein_q", pa.float64()),
])


def passing(result: SearchResult, fdr: float | None = None) -> list[Psm]:
    q = result.params.fdr if fdr is None else fdr
    return [p for p in result.psms if not p.decoy and p.spectrum_q <= q]


def search_values(result: SearchResult, fdr: float | None = None) -> dict[str, Any]:
    """The QC values of ``result`` at ``fdr`` (default: the search's own FDR)."""
    q = result.params.fdr if fdr is None else fdr
    psms = passing(result, q)
    peptides = [p for p in result.psms if not p.decoy and p.peptide_q <= q]
    groups = {p.proteins for p in peptides if p.protein_q <= q}
    n = len(psms)
    values: dict[str, Any] = {
        "SearchEngine": result.engine,
        "SearchFasta": result.fasta_path.name,
        "SearchFdr": q,
        "SearchMs2Spectra": result.ms2_spectra,
        "SearchPsms": n,
        "SearchPeptides": len({p.sequence for p in peptides}),
        "SearchProteinGroups": len(groups),
        "SearchMs2IdRate": _round(100.0 * n / result.ms2_spectra) if result.ms2_spectra else None,
        "SearchDecoyPsms": sum(1 for p in result.psms if p.decoy and p.spectrum_q <= q),
        "SearchDatabaseProteins": result.database.proteins,
        "SearchDatabasePeptides": result.database.peptides,
        "SearchFragmentTolerance": f"{result.fragment_tolerance[0]:g} {result.fragment_tolerance[1]}",
        "SearchSeconds": result.seconds.get("total"),
    }
    errors = np.array([p.precursor_error_ppm for p in psms])
    values["SearchPrecursorErrorMedianPpm"] = _median(errors)
    values["SearchPrecursorErrorIqrPpm"] = _iqr(errors)
    fragments = np.array([e for p in psms for e in p.fragment_errors_ppm])
    values["SearchFragmentErrorMedianPpm"] = _median(fragments)
    values["SearchFragmentErrorIqrPpm"] = _iqr(fragments)
    mc = np.array([p.missed_cleavages for p in psms])
    values["SearchMissedCleavages0Pct"] = _pct(mc == 0, n)
    values["SearchMissedCleavages1Pct"] = _pct(mc == 1, n)
    values["SearchMissedCleavages2PlusPct"] = _pct(mc >= 2, n)
    z = np.array([p.charge for p in psms])
    values["SearchCharge1Pct"] = _pct(z == 1, n)
    values["SearchCharge2Pct"] = _pct(z == 2, n)
    values["SearchCharge3Pct"] = _pct(z == 3, n)
    values["SearchCharge4PlusPct"] = _pct(z >= 4, n)
    values["SearchPeptideLengthMedian"] = _median(np.array([p.length for p in psms]))
    rts = np.array([p.rt for p in psms])
    values["SearchIdRtSpanMin"] = _round(float(rts.max() - rts.min())) if n else None
    values["SearchIdRtIqrMin"] = _iqr(rts)
    if result.params.tmt:
        values.update(_tmt_values(result.params.tmt, psms))
    values["SearchNote"] = empty_reason(result, q)
    return values


def empty_reason(result: SearchResult, fdr: float) -> str | None:
    """Why nothing was identified (None when something was)."""
    if passing(result, fdr):
        return None
    targets = sum(1 for p in result.psms if not p.decoy)
    if not result.psms:
        return (f"no spectrum matched any peptide of {result.fasta_path.name} within the tolerances "
                f"({result.searched_spectra} spectra searched): the FASTA may not match the sample")
    ranked = sorted(result.psms, key=lambda p: -p.hyperscore)
    above = next((i for i, p in enumerate(ranked) if p.decoy), len(ranked))  # targets before the first decoy
    lowest = min((p.spectrum_q for p in result.psms if not p.decoy), default=1.0)
    return (f"no identification at {fdr:.0%} FDR: {targets} of {result.searched_spectra} spectra matched a target "
            f"and {len(result.psms) - targets} a decoy peptide best; the lowest q-value reached is {lowest:.1%} "
            f"({above} targets rank above the first decoy, and q >= 1/{max(above, 1)} by target-decoy counting: "
            f"{fdr:.0%} needs at least {math.ceil(1 / fdr - 1e-9)}); a short run may need a higher FDR, or the FASTA "
            "may not match the sample, or the run holds little peptide signal")


def _tmt_values(kind: str, psms: list[Psm]) -> dict[str, Any]:
    names = list(CHANNELS[kind])
    if not psms:
        return {f"SearchTmt{c}Intensity": None for c in names} | {"SearchTmtMissingChannels": None,
                                                                  "SearchTmtMissingValuesPct": None}
    matrix = np.vstack([reporter_intensities(kind, p.reporter_mz, p.reporter_intensity) for p in psms])
    out: dict[str, Any] = {}
    for j, channel in enumerate(names):
        present = matrix[:, j][matrix[:, j] > 0]
        out[f"SearchTmt{channel}Intensity"] = _round(float(np.median(present))) if present.size else 0.0
    out["SearchTmtMissingChannels"] = int(np.sum(~np.any(matrix > 0, axis=0)))
    out["SearchTmtMissingValuesPct"] = _round(100.0 * float(np.mean(matrix == 0)))
    return out


def psm_table(result: SearchResult) -> pa.Table:
    """Every best match (targets and decoys) with its q-values, so pages can apply any threshold."""
    cols: dict[str, list[Any]] = {name: [] for name in PSM_SCHEMA.names}
    for p in result.psms:
        for name in PSM_SCHEMA.names:
            cols[name].append(getattr(p, name))
    return pa.table(cols, schema=PSM_SCHEMA)


def _median(a: np.ndarray) -> float | None:
    return _round(float(np.median(a))) if a.size else None


def _iqr(a: np.ndarray) -> float | None:
    if a.size == 0:
        return None
    q1, q3 = np.percentile(a, [25, 75])
    return _round(float(q3 - q1))


def _pct(mask: np.ndarray, n: int) -> float | None:
    return _round(100.0 * float(np.sum(mask)) / n) if n else None


def _round(x: float) -> float:
    return round(x, 4)
