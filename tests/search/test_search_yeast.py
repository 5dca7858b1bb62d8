"""The yeast run against the yeast proteome: counts, and agreement with independent references.

References (none of them is qcdaemon's own output):
- the issue's trial of sagepy 0.4.6 on this file (trypsin, 1 missed cleavage, Met oxidation,
  reversed decoys) found 42 peptides at 5 % FDR; the issue asks for at least 40;
- MetaMorpheus's own test suite (smith-chem-wisc/MetaMorpheus, Test/MatchIonsOfAllCharges.cs) uses
  AAAHSSLK, RQPAQPR and EKAEAEAEK as peptides whose spectra are in this file, found by a different
  engine (MetaMorpheus ClassicSearch, 5 ppm);
- the precursor mass error is recomputed here from the sequence with a residue-mass table of our
  own (Unimod/NIST monoisotopic masses, independent.py) and the RAW file's precursor m/z and charge;
- an independent search of the same spectra (independent.py, test_search_independent.py);
- a second search path: opentfraw writes the file as mzML, Sage's own mzML reader reads it
  (sagepy.core.read_spectra, Rust) and the same engine searches it; spectra reading, precursor
  choice and peak handling are then not qcdaemon's.  Sage is deterministic for a given input, so
  the two paths must agree closely; they may differ only where the mzML carries a different
  precursor (isolation target instead of the trailer's monoisotopic m/z).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from qcdaemon.search.fasta import read_fasta
from qcdaemon.search.metrics import PSM_SCHEMA, passing, psm_table, search_values
from qcdaemon.search.params import SearchParams
from qcdaemon.search.sage import SearchResult, fragment_tolerance, run_search

from .data import YEAST_FASTA, YEAST_RAW
from .independent import C13, CARBAMIDOMETHYL, OXIDATION, PROTON, RESIDUE, WATER

UNIMOD_MASS = {4: CARBAMIDOMETHYL, 35: OXIDATION}


def own_mass(modified: str) -> float:
    mods = sum(UNIMOD_MASS[int(m)] for m in re.findall(r"\[UNIMOD:(\d+)\]", modified))
    plain = re.sub(r"\[[^\]]*\]", "", modified)
    return sum(RESIDUE[a] for a in plain) + WATER + mods


def test_at_5pct_fdr_at_least_40_peptides(yeast_5pct: SearchResult) -> None:
    values = search_values(yeast_5pct)
    assert values["SearchMs2Spectra"] == 118  # the shared README's count for this file
    assert values["SearchPeptides"] >= 40
    assert values["SearchPsms"] >= values["SearchPeptides"]
    assert values["SearchMs2IdRate"] == pytest.approx(100 * values["SearchPsms"] / 118, abs=1e-3)
    # target-decoy: decoys that pass are at most FDR x targets (q-value definition)
    assert values["SearchDecoyPsms"] <= 0.05 * values["SearchPsms"] + 1
    assert yeast_5pct.fragment_tolerance == (20.0, "ppm")  # all MS2 are Orbitrap


def test_peptides_that_metamorpheus_uses_for_this_file_are_identified(yeast_5pct: SearchResult) -> None:
    found = {p.sequence for p in yeast_5pct.psms if not p.decoy and p.peptide_q <= 0.05}
    assert {"AAAHSSLK", "RQPAQPR", "EKAEAEAEK"} <= found


def test_precursor_error_agrees_with_own_mass_arithmetic(yeast_5pct: SearchResult) -> None:
    psms = passing(yeast_5pct)
    own = []
    for p in psms:
        observed = (p.precursor_mz - PROTON) * p.charge
        isotopes = round(p.isotope_error / C13)
        calc = own_mass(p.peptide)
        assert calc == pytest.approx(p.calc_mass, abs=2e-3)  # Sage stores masses as float32
        own.append((observed - isotopes * C13 - calc) / calc * 1e6)
    own = np.array(own)
    sage = np.array([p.precursor_error_ppm for p in psms])
    assert np.max(np.abs(own - sage)) < 0.5  # Sage keeps masses as float32 (~0.06 ppm per value)
    values = search_values(yeast_5pct)
    assert values["SearchPrecursorErrorMedianPpm"] == pytest.approx(float(np.median(own)), abs=0.1)
    # the trial: top hits at -1 to -2 ppm
    assert -2.5 < values["SearchPrecursorErrorMedianPpm"] < -0.5


def test_second_path_through_mzml_and_sages_own_reader(yeast_5pct: SearchResult, db_cache, tmp_path: Path) -> None:
    import opentfraw
    from sagepy.core import Scorer, SpectrumProcessor, Tolerance, read_spectra
    from sagepy.core.fdr import sage_fdr_psm

    mzml = tmp_path / "yeast.mzML"
    opentfraw.RawFile(str(YEAST_RAW)).to_mzml(str(mzml))
    params = yeast_5pct.params
    db, _ = db_cache.get(read_fasta(YEAST_FASTA), params)
    processor = SpectrumProcessor(take_top_n=150, deisotope=True)
    spectra = [processor.process(s) for s in read_spectra(str(mzml), ms_level=2)]
    scorer = Scorer(
        precursor_tolerance=Tolerance(ppm=(-20.0, 20.0)), fragment_tolerance=Tolerance(ppm=(-20.0, 20.0)),
        min_matched_peaks=4, min_isotope_err=-1, max_isotope_err=3, min_precursor_charge=2, max_precursor_charge=4,
        report_psms=1, static_mods={"C": "[UNIMOD:4]"}, variable_mods={"M": ["[UNIMOD:35]"]},
    )
    matches = [m for group in scorer.score_collection_psm(db, spectra, num_threads=2).values() for m in group[:1]]
    sage_fdr_psm(matches, db, use_hyper_score=True)
    other_psms = [m for m in matches if not m.decoy and m.sage_feature.spectrum_q <= 0.05]
    other_peptides = {m.sequence for m in matches if not m.decoy and m.sage_feature.peptide_q <= 0.05}
    ours = search_values(yeast_5pct)
    our_peptides = {p.sequence for p in yeast_5pct.psms if not p.decoy and p.peptide_q <= 0.05}
    assert len(spectra) == 118
    assert abs(len(other_psms) - ours["SearchPsms"]) <= 0.15 * ours["SearchPsms"]
    overlap = len(our_peptides & other_peptides) / len(our_peptides | other_peptides)
    assert overlap >= 0.8, (sorted(our_peptides - other_peptides), sorted(other_peptides - our_peptides))
    other_error = float(np.median([m.sage_feature.delta_mass for m in other_psms]))
    assert other_error == pytest.approx(ours["SearchPrecursorErrorMedianPpm"], abs=0.5)


def test_equivalent_settings_with_a_tighter_precursor_window(yeast_5pct: SearchResult, db_cache) -> None:
    """Errors are about -1.8 +- 0.6 ppm, so a 10 ppm window holds the same true hits as 20 ppm."""
    tight = run_search(YEAST_RAW, YEAST_FASTA, yeast_5pct.params.replace(precursor_tolerance_ppm=10.0), cache=db_cache)
    assert tight.database.reused  # same FASTA and digest: the index is not rebuilt
    ours = {p.sequence for p in passing(yeast_5pct)}
    theirs = {p.sequence for p in passing(tight)}
    assert len(ours & theirs) / len(ours | theirs) >= 0.8


def test_distributions_and_fdr_levels(yeast_5pct: SearchResult) -> None:
    v = search_values(yeast_5pct)
    charges = [v[f"SearchCharge{k}Pct"] for k in ("1", "2", "3", "4Plus")]
    missed = [v[f"SearchMissedCleavages{k}Pct"] for k in ("0", "1", "2Plus")]
    assert sum(charges) == pytest.approx(100, abs=1e-3)
    assert sum(missed) == pytest.approx(100, abs=1e-3)
    assert v["SearchMissedCleavages2PlusPct"] == 0  # the digest allows one missed cleavage
    assert 7 <= v["SearchPeptideLengthMedian"] <= 30
    rts = [p.rt for p in passing(yeast_5pct)]
    assert v["SearchIdRtSpanMin"] == pytest.approx(max(rts) - min(rts), abs=1e-3)
    assert 0 < v["SearchIdRtSpanMin"] <= 1.0  # the file spans about one minute (RT 24.04 to 25.0)
    assert abs(v["SearchFragmentErrorMedianPpm"]) < 20 and v["SearchFragmentErrorIqrPpm"] > 0
    strict = search_values(yeast_5pct, fdr=0.01)
    assert strict["SearchPsms"] <= v["SearchPsms"] and strict["SearchPeptides"] <= v["SearchPeptides"]
    assert v["SearchProteinGroups"] <= v["SearchPeptides"]


def test_psm_table_is_arrow_with_every_best_match(yeast_5pct: SearchResult) -> None:
    table = psm_table(yeast_5pct)
    assert isinstance(table, pa.Table) and table.schema == PSM_SCHEMA
    assert table.num_rows == len(yeast_5pct.psms) <= 118
    q = np.array(table.column("spectrum_q").to_pylist())
    assert np.all((q >= 0) & (q <= 1))
    scans = table.column("scan").to_pylist()
    assert len(set(scans)) == len(scans)  # one best match per spectrum


def test_auto_fragment_tolerance_follows_the_analyzer() -> None:
    p = SearchParams()
    assert fragment_tolerance(p, {"FTMS"}) == (20.0, "ppm")
    assert fragment_tolerance(p, {"ITMS"}) == (0.5, "da")
    assert fragment_tolerance(p, {"FTMS", "ITMS"}) == (0.5, "da")
    assert fragment_tolerance(p.replace(fragment_tolerance=10.0, fragment_unit="ppm"), {"ITMS"}) == (10.0, "ppm")
