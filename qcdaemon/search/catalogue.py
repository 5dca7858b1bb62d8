"""Catalogue metadata of the identification QC values: unit, direction, PSI-MS term where one fits.

``direction``: ``higher`` (more is better), ``lower`` (less is better), ``zero`` (best near 0, e.g.
mass errors), ``none`` (descriptive: a distribution or a setting).  A PSI-MS term is given only
where its definition matches the value exactly (psi-ms.obo 4.1.257, as in ``/work/shared`` mzQC
notes); e.g. MS:4000178 is the *mean* precursor ppm deviation, so the median has no term.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchMetric:
    name: str
    unit: str  # "count", "%", "ppm", "min", "residues", "s", "" (text)
    direction: str
    term: tuple[str, str] | None = None
    description: str = ""


def _m(name: str, unit: str, direction: str, description: str, term: tuple[str, str] | None = None) -> SearchMetric:
    return SearchMetric(name, unit, direction, term, description)


COUNT_TERMS = {
    "SearchPsms": ("MS:1003251", "count of identified spectra"),
    "SearchPeptides": ("MS:1003250", "count of identified peptidoforms"),
    "SearchProteinGroups": ("MS:1003327", "number of identified protein groups"),
}

CATALOGUE: dict[str, SearchMetric] = {m.name: m for m in [
    _m("SearchPsms", "count", "higher", "target PSMs at the search FDR (spectrum q-value)", COUNT_TERMS["SearchPsms"]),
    _m("SearchPeptides", "count", "higher", "distinct peptide sequences at the FDR (peptide q-value)",
       COUNT_TERMS["SearchPeptides"]),
    _m("SearchProteinGroups", "count", "higher", "protein groups at the FDR (picked-protein q-value)",
       COUNT_TERMS["SearchProteinGroups"]),
    _m("SearchMs2IdRate", "%", "higher", "identified MS2 spectra per MS2 spectrum"),
    _m("SearchMs2Spectra", "count", "none", "MS2 spectra in the file"),
    _m("SearchDecoyPsms", "count", "none", "decoy PSMs passing the FDR"),
    _m("SearchPrecursorErrorMedianPpm", "ppm", "zero", "median precursor mass error of the PSMs"),
    _m("SearchPrecursorErrorIqrPpm", "ppm", "lower", "interquartile range of the precursor mass errors"),
    _m("SearchFragmentErrorMedianPpm", "ppm", "zero", "median error of the matched fragment ions"),
    _m("SearchFragmentErrorIqrPpm", "ppm", "lower", "interquartile range of the fragment errors"),
    _m("SearchMissedCleavages0Pct", "%", "higher", "PSMs with no missed cleavage"),
    _m("SearchMissedCleavages1Pct", "%", "none", "PSMs with one missed cleavage"),
    _m("SearchMissedCleavages2PlusPct", "%", "lower", "PSMs with two or more missed cleavages"),
    _m("SearchCharge1Pct", "%", "none", "PSMs at charge 1"),
    _m("SearchCharge2Pct", "%", "none", "PSMs at charge 2"),
    _m("SearchCharge3Pct", "%", "none", "PSMs at charge 3"),
    _m("SearchCharge4PlusPct", "%", "none", "PSMs at charge 4 or more"),
    _m("SearchPeptideLengthMedian", "residues", "none", "median length of the identified peptides"),
    _m("SearchIdRtSpanMin", "min", "higher", "retention time from the first to the last identification"),
    _m("SearchIdRtIqrMin", "min", "higher", "interquartile range of the identifications' retention times"),
    _m("SearchTmtMissingChannels", "count", "lower", "TMT channels without a reporter ion in any PSM"),
    _m("SearchTmtMissingValuesPct", "%", "lower", "(PSM, channel) cells without a reporter ion"),
    _m("SearchDatabaseProteins", "count", "none", "proteins in the FASTA"),
    _m("SearchDatabasePeptides", "count", "none", "target and decoy peptides (incl. modified forms) in the index"),
    _m("SearchSeconds", "s", "lower", "search time (reading, database, scoring, FDR)"),
    _m("SearchFdr", "", "none", "the FDR the counts use, a fraction"),
    _m("SearchEngine", "", "none", "search engine and version"),
    _m("SearchFasta", "", "none", "FASTA file name"),
    _m("SearchFragmentTolerance", "", "none", "fragment tolerance used"),
    _m("SearchNote", "", "none", "why nothing was identified (empty when something was)"),
]}


def metric(name: str) -> SearchMetric | None:
    """Catalogue entry of ``name``; TMT channel intensities (SearchTmt<channel>Intensity) are generated."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    if name.startswith("SearchTmt") and name.endswith("Intensity"):
        channel = name[len("SearchTmt"):-len("Intensity")]
        return SearchMetric(name, "intensity", "higher", None, f"median TMT {channel} reporter intensity of the PSMs")
    return None
