"""Sage's results on the yeast file against an independent search of the same spectra, and its q-values.

The reference is ``independent.py``: our own digest, residue masses, Andromeda-style binomial
score and target-decoy competition, with spectra read by opentfraw (no qcdaemon and no Sage code).
Sage's documentation promises no numeric agreement with another engine; what two sound engines must
share on the same spectra is the peptide of the confident matches and the precursor mass error
(mass arithmetic), while the counts may differ by the engines' sensitivity (Sage's hyperscore and
picked competition find more than a plain binomial score; Lazear, J. Proteome Res. 2023, 22, 3652).
"""

from __future__ import annotations

import numpy as np
import pytest

from qcdaemon.search.metrics import passing, search_values
from qcdaemon.search.sage import SearchResult

from . import independent
from .data import YEAST_FASTA, YEAST_RAW


@pytest.fixture(scope="module")
def reference() -> dict[int, independent.Hit]:
    return {h.scan: h for h in independent.search(YEAST_RAW, YEAST_FASTA)}


def same(a: str, b: str) -> bool:
    return a.replace("I", "L") == b.replace("I", "L")  # isobaric: no engine tells I from L by mass


def test_every_psm_the_reference_accepts_sage_accepts_with_the_same_peptide(
        yeast_5pct: SearchResult, reference: dict[int, independent.Hit]) -> None:
    ours = {p.scan: p for p in passing(yeast_5pct)}
    theirs = [h for h in reference.values() if not h.decoy and h.q <= 0.05]
    assert len(theirs) >= 30  # the reference itself identifies a fair share of the 118 spectra
    assert all(h.scan in ours and same(ours[h.scan].sequence, h.sequence) for h in theirs)
    assert len(ours) >= len(theirs)  # Sage is at least as sensitive
    their_peptides = {h.sequence.replace("I", "L") for h in theirs}
    our_peptides = {p.sequence.replace("I", "L") for p in yeast_5pct.psms if not p.decoy and p.peptide_q <= 0.05}
    assert their_peptides <= our_peptides


def test_nearly_every_sage_psm_is_the_references_best_match_too(
        yeast_5pct: SearchResult, reference: dict[int, independent.Hit]) -> None:
    psms = passing(yeast_5pct)
    agree = [p for p in psms if p.scan in reference and same(reference[p.scan].sequence, p.sequence)]
    assert len(agree) >= 0.9 * len(psms), [(p.scan, p.sequence) for p in psms if p not in agree]
    # where they differ, neither engine is confident: the reference does not accept its own pick
    for p in psms:
        if p not in agree and p.scan in reference:
            assert reference[p.scan].q > 0.05


def test_precursor_mass_error_agrees_with_the_reference(
        yeast_5pct: SearchResult, reference: dict[int, independent.Hit]) -> None:
    pairs = [(p.precursor_error_ppm, reference[p.scan].precursor_error_ppm) for p in passing(yeast_5pct)
             if p.scan in reference and same(reference[p.scan].sequence, p.sequence)]
    sage, ref = np.array(pairs).T
    assert np.max(np.abs(sage - ref)) < 0.5  # Sage keeps masses as float32 (about 0.06 ppm per value)
    values = search_values(yeast_5pct)
    assert values["SearchPrecursorErrorMedianPpm"] == pytest.approx(float(np.median(ref)), abs=0.1)
    q1, q3 = np.percentile(ref, [25, 75])
    assert values["SearchPrecursorErrorIqrPpm"] == pytest.approx(float(q3 - q1), abs=0.2)


def test_sage_spectrum_q_values_are_the_textbook_target_decoy_q_values(yeast_5pct: SearchResult) -> None:
    """q = min over thresholds at or below the score of (decoys + 1) / targets (Elias & Gygi 2007; Kall 2008)."""
    ranked = sorted(yeast_5pct.psms, key=lambda p: -p.hyperscore)
    ours = independent.with_q_values([
        independent.Hit(p.scan, p.sequence, 0, p.decoy, p.hyperscore, p.charge, 0.0) for p in ranked])
    by_scan = {h.scan: h.q for h in ours}
    assert all(by_scan[p.scan] == pytest.approx(p.spectrum_q, abs=1e-6) for p in ranked)


def test_why_nothing_passes_at_1pct_on_118_spectra(yeast_5pct: SearchResult) -> None:
    """With the +1 correction the lowest q-value is 1 / (targets ranked above the first decoy)."""
    ranked = sorted(yeast_5pct.psms, key=lambda p: -p.hyperscore)
    first_decoy = next(i for i, p in enumerate(ranked) if p.decoy)
    lowest = min(p.spectrum_q for p in ranked)
    assert lowest == pytest.approx(1 / first_decoy, abs=1e-6)
    assert first_decoy < 100 and lowest > 0.01  # fewer than 100 targets before the first decoy
    strict = search_values(yeast_5pct, fdr=0.01)
    assert strict["SearchPsms"] == 0
    assert f"lowest q-value reached is {100 * lowest:.1f}%" in strict["SearchNote"]
    assert f"{first_decoy} targets rank above the first decoy" in strict["SearchNote"]
    assert "needs at least 100" in strict["SearchNote"]
    assert search_values(yeast_5pct, fdr=lowest)["SearchPsms"] == first_decoy
