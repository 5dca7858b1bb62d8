"""Search one RAW file against one FASTA with Sage, and control the FDR by target-decoy competition.

The q-values are Sage's own (``sagepy.core.fdr.sage_fdr_psm`` on the hyperscore): spectrum-level
target-decoy competition, peptide-level picked-peptide and protein-level picked-protein competition
(Lazear, J. Proteome Res. 2023, 22, 3652-3659, "Sage: an open-source tool for fast proteomics
searching and quantification at scale"; picked-protein FDR as in Savitski et al., Mol. Cell.
Proteomics 2015, 14, 2394-2404).  Only the best match of each spectrum is kept (``report_psms=1``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .database import DatabaseCache, DatabaseInfo
from .errors import NoMs2Spectra, SearchError
from .fasta import read_fasta
from .params import SearchParams
from .sagepy_api import limit_threads, quiet, sagepy
from .spectra import Ms2Spectrum, Ms2Summary, iter_ms2

PROTON = 1.007276466621  # CODATA 2018 proton mass, u
ION_TRAP_FRAGMENT_DA = 0.5
ORBITRAP_FRAGMENT_PPM = 20.0


@dataclass
class Psm:
    """The best match of one MS2 spectrum (target or decoy) with its q-values."""

    scan: int
    rt: float
    precursor_mz: float  # observed, from the RAW file
    charge: int
    peptide: str  # modified sequence as Sage writes it, e.g. PEPM[+15.9949]K
    sequence: str  # plain residues
    proteins: str  # ';'-joined accessions of every protein holding the peptide
    decoy: bool
    hyperscore: float
    calc_mass: float  # neutral monoisotopic peptide mass
    exp_mass: float  # neutral precursor mass from the observed m/z and charge
    isotope_error: float  # Da, as Sage picked it (0, +-1.00335, ...)
    precursor_error_ppm: float  # (exp - isotope error - calc) / calc * 1e6
    missed_cleavages: int
    length: int
    matched_peaks: int
    spectrum_q: float
    peptide_q: float
    protein_q: float
    fragment_errors_ppm: list[float] = field(default_factory=list)
    reporter_mz: np.ndarray | None = None
    reporter_intensity: np.ndarray | None = None


@dataclass
class SearchResult:
    raw_path: Path
    fasta_path: Path
    params: SearchParams
    fragment_tolerance: tuple[float, str]
    ms2_spectra: int  # MS2 scans in the file
    searched_spectra: int  # of those, with a precursor and peaks
    analyzers: list[str]
    psms: list[Psm]  # best match per searched spectrum that Sage scored (targets and decoys)
    database: DatabaseInfo
    seconds: dict[str, float]  # read, database, score, fdr, total

    @property
    def engine(self) -> str:
        return f"Sage (sagepy {self.database.sagepy_version})"


def run_search(raw_path: Path | str, fasta_path: Path | str, params: SearchParams | None = None, *,
               cache: DatabaseCache | None = None) -> SearchResult:
    """Read, build (or reuse) the database, score, assign q-values.  Raises SearchError subclasses."""
    params = params or SearchParams()
    cache = cache or DatabaseCache(None)
    limit_threads(params.threads)
    sp = sagepy()
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    summary = Ms2Summary()
    spectra = list(_meta_and_processed(iter_ms2(raw_path, summary), sp))
    seconds["read"] = time.perf_counter() - started
    if summary.ms2 == 0:
        raise NoMs2Spectra(f"{Path(raw_path).name}: the file holds no MS2 spectra ({summary.scans} scans), nothing to identify")
    if not spectra:
        raise NoMs2Spectra(f"{Path(raw_path).name}: none of its {summary.ms2} MS2 spectra has a precursor m/z and peaks")

    fasta = read_fasta(fasta_path, decoy_tag=params.decoy_tag)
    t = time.perf_counter()
    db, info = cache.get(fasta, params)
    seconds["database"] = time.perf_counter() - t

    tolerance = fragment_tolerance(params, summary.analyzers or set())
    t = time.perf_counter()
    by_scan = {meta.scan: meta for meta, _ in spectra}
    try:
        with quiet():
            scorer = sp.Scorer(
                precursor_tolerance=sp.Tolerance(ppm=(-params.precursor_tolerance_ppm, params.precursor_tolerance_ppm)),
                fragment_tolerance=(sp.Tolerance(ppm=(-tolerance[0], tolerance[0])) if tolerance[1] == "ppm"
                                    else sp.Tolerance(da=(-tolerance[0], tolerance[0]))),
                min_matched_peaks=params.min_matched_peaks,
                min_isotope_err=params.min_isotope_error, max_isotope_err=params.max_isotope_error,
                min_precursor_charge=params.min_charge, max_precursor_charge=params.max_charge,
                report_psms=1, annotate_matches=True,
                static_mods=dict(params.fixed_mods) or None,
                variable_mods={k: list(v) for k, v in params.variable_mods.items()} or None,
            )
            scored = scorer.score_collection_psm(db, [processed for _, processed in spectra], num_threads=params.threads)
        seconds["score"] = time.perf_counter() - t
        t = time.perf_counter()
        matches = [m for group in scored.values() for m in group[:1]]
        if matches:
            with quiet():
                sp.sage_fdr_psm(matches, db, use_hyper_score=True)
        psms = [_psm(m, by_scan) for m in matches]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise SearchError(f"Sage failed while scoring {Path(raw_path).name}: {exc}") from None
    seconds["fdr"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    psms.sort(key=lambda p: p.scan)
    return SearchResult(
        raw_path=Path(raw_path), fasta_path=Path(fasta_path), params=params, fragment_tolerance=tolerance,
        ms2_spectra=summary.ms2, searched_spectra=len(spectra), analyzers=sorted(summary.analyzers or ()),
        psms=psms, database=info, seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def fragment_tolerance(params: SearchParams, analyzers: set[str]) -> tuple[float, str]:
    """The configured tolerance, or 20 ppm when every MS2 is Orbitrap (FTMS), else 0.5 Da (ion trap)."""
    if params.fragment_unit != "auto":
        return params.fragment_tolerance, params.fragment_unit
    if analyzers and analyzers <= {"FTMS", "ASTMS"}:
        return ORBITRAP_FRAGMENT_PPM, "ppm"
    return ION_TRAP_FRAGMENT_DA, "da"


class _Meta:
    """What the QC values need of a spectrum once Sage has its processed copy (no full peak list)."""

    __slots__ = ("charge", "precursor_mz", "reporter_intensity", "reporter_mz", "rt", "scan")

    def __init__(self, s: Ms2Spectrum) -> None:
        self.scan, self.rt, self.precursor_mz, self.charge = s.scan, s.rt, s.precursor_mz, s.charge
        self.reporter_mz, self.reporter_intensity = s.reporter_mz, s.reporter_intensity


def _meta_and_processed(spectra: Any, sp: Any) -> Any:
    """Turn each spectrum into Sage's processed form right away (top 150 peaks, deisotoped)."""
    processor = sp.SpectrumProcessor(take_top_n=150, deisotope=True)
    centroid = sp.Representation("centroid")
    for s in spectra:
        half = (s.isolation_width or 2.0) / 2
        precursor = sp.Precursor(mz=s.precursor_mz, charge=s.charge or None,
                                 isolation_window=sp.Tolerance(da=(-half, half)))
        raw = sp.RawSpectrum(
            file_id=1, spec_id=str(s.scan), total_ion_current=float(np.sum(s.intensity)), precursors=[precursor],
            mz=s.mz, intensity=s.intensity, representation=centroid, scan_start_time=s.rt,
            ion_injection_time=s.injection_time, ms_level=2,
        )
        try:
            processed = processor.process(raw)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a Rust panic arrives as pyo3's PanicException
            raise SearchError(f"Sage could not process scan {s.scan}: {exc}") from None
        yield _Meta(s), processed


def _psm(match: Any, by_scan: dict[int, _Meta]) -> Psm:
    f = match.sage_feature
    meta = by_scan[int(match.spec_idx)]
    calc = float(f.calcmass)
    exp = float(f.expmass)
    iso = float(f.isotope_error)
    return Psm(
        scan=meta.scan, rt=meta.rt, precursor_mz=meta.precursor_mz, charge=int(f.charge),
        peptide=str(match.sequence_modified or match.sequence), sequence=str(match.sequence),
        proteins=";".join(match.proteins), decoy=bool(match.decoy), hyperscore=float(f.hyperscore),
        calc_mass=calc, exp_mass=exp, isotope_error=iso, precursor_error_ppm=(exp - iso - calc) / calc * 1e6,
        missed_cleavages=int(f.missed_cleavages), length=int(f.peptide_len), matched_peaks=int(f.matched_peaks),
        spectrum_q=float(f.spectrum_q), peptide_q=float(f.peptide_q), protein_q=float(f.protein_q),
        fragment_errors_ppm=_fragment_errors(f.fragments),
        reporter_mz=meta.reporter_mz, reporter_intensity=meta.reporter_intensity,
    )


def _fragment_errors(fragments: Any) -> list[float]:
    if fragments is None:
        return []
    calc = np.asarray(fragments.mz_calculated, dtype=np.float64)
    exp = np.asarray(fragments.mz_experimental, dtype=np.float64)
    ok = calc > 0
    return ((exp[ok] - calc[ok]) / calc[ok] * 1e6).tolist()
