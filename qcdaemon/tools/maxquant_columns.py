"""The QC columns of MaxQuant's tables in the order the API shows them, and the statistics their
parsers share (:mod:`~qcdaemon.tools.maxquant_parse`, :mod:`~qcdaemon.tools.maxquant_proteins`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from qcdaemon.tools.tsv import Moments

SUMMARY_COLUMNS = (
    "MS", "MS/MS", "MS3", "MS/MS Submitted", "MS/MS Identified", "MS/MS Identified [%]",
    "Peptide Sequences Identified", "Av. Absolute Mass Deviation [mDa]",
    "Mass Standard Deviation [mDa]",
)
SUMMARY_V2 = {
    "MS/MS Submitted": "MS/MS submitted", "MS/MS Identified": "MS/MS identified",
    "MS/MS Identified [%]": "MS/MS identified [%]",
    "Peptide Sequences Identified": "Peptide sequences identified",
    "Av. Absolute Mass Deviation [mDa]": "Av. absolute mass deviation [mDa]",
    "Mass Standard Deviation [mDa]": "Mass standard deviation [mDa]",
}
PROTEIN_COLUMNS = (
    "N_protein_groups", "N_protein_true_hits", "N_protein_potential_contaminants",
    "N_protein_reverse_seq", "Protein_mean_seq_cov [%]",
)
PEPTIDE_COLUMNS = (
    "N_peptides", "N_peptides_potential_contaminants", "N_peptides_reverse", "Oxidations [%]",
    "N_missed_cleavages_total", "N_missed_cleavages_eq_0 [%]", "N_missed_cleavages_eq_1 [%]",
    "N_missed_cleavages_eq_2 [%]", "N_missed_cleavages_gt_3 [%]",
    "N_peptides_last_amino_acid_K [%]", "N_peptides_last_amino_acid_R [%]",
    "N_peptides_last_amino_acid_other [%]",
)
MSMS_COLUMNS = ("Mean_parent_int_frac",)
EVIDENCE_STATS = {  # output column -> (evidence column, statistic)
    "Uncalibrated - Calibrated m/z [ppm] (ave)": ("Uncalibrated - Calibrated m/z [ppm]", "mean"),
    "Uncalibrated - Calibrated m/z [ppm] (sd)": ("Uncalibrated - Calibrated m/z [ppm]", "sd"),
    "Uncalibrated - Calibrated m/z [Da] (ave)": ("Uncalibrated - Calibrated m/z [Da]", "mean"),
    "Uncalibrated - Calibrated m/z [Da] (sd)": ("Uncalibrated - Calibrated m/z [Da]", "sd"),
    "Peak Width(ave)": ("Retention length", "mean"),
    "Peak Width (std)": ("Retention length", "sd"),
}
QC_PEPTIDES = ("HVLTSIGEK", "LTILEELR")
QC_PROTEIN = "QC3_BSA"
QC_EXCLUDED_IDS = frozenset({"QC1|Peptide1", "QC2|Peptide2"})
NOT_DETECTED = "not detected"


def qc_peptide_columns(i: int) -> tuple[str, ...]:
    return (
        f"qc{i}_peptide_charges", f"N_qc{i}_missing_values",
        f"reporter_intensity_corrected_qc{i}_ave", f"reporter_intensity_corrected_qc{i}_sd",
        f"reporter_intensity_corrected_qc{i}_cv", f"calibrated_retention_time_qc{i}",
        f"retention_length_qc{i}", f"N_of_scans_qc{i}",
    )


PROTEIN_QC_COLUMNS = (
    "N_of_Protein_qc_pepts", "N_Protein_qc_missing_values",
    "reporter_intensity_corrected_Protein_qc_ave", "reporter_intensity_corrected_Protein_qc_sd",
    "reporter_intensity_corrected_Protein_qc_cv",
)
EVIDENCE_COLUMNS = tuple(EVIDENCE_STATS) + tuple(
    c for i in range(1, len(QC_PEPTIDES) + 1) for c in qc_peptide_columns(i))


def maxquant_columns(channels: int) -> tuple[str, ...]:
    """Ordered QC columns for ``channels`` reporter channels: the 9 summary metrics, the 56
    ``expected_columns`` of the original (with TMT1..N missing values), ``Missed Cleavages [%]``,
    then the TMT peptide and protein-group counts."""
    tmt = range(1, channels + 1)
    return (
        SUMMARY_COLUMNS + PROTEIN_COLUMNS + tuple(f"TMT{n}_missing_values" for n in tmt)
        + PEPTIDE_COLUMNS + MSMS_COLUMNS + EVIDENCE_COLUMNS + PROTEIN_QC_COLUMNS
        + ("Missed Cleavages [%]",) + tuple(f"TMT{n}_peptide_count" for n in tmt)
        + tuple(f"TMT{n}_protein_group_count" for n in tmt)
    )


MAXQUANT_COLUMNS: tuple[str, ...] = maxquant_columns(11)


def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    m = Moments()
    for v in values:
        m.add(v)
    return m.mean(), m.sd()


def cv(ave: float | None, sd: float | None, when_zero: Any) -> Any:
    if ave is None or sd is None:
        return None
    return when_zero if ave == 0 else sd / ave * 100


def missing_flags(values: Sequence[float | None]) -> str | None:
    """Per channel ``1`` if the intensity is missing or 0, else ``0``; ``None`` if no channels."""
    return ";".join("1" if v is None or v == 0 else "0" for v in values) or None


def best_of(items: Sequence[Any], intensity: Any) -> Any:
    """First item of maximal intensity (``None`` intensities lose; all ``None`` -> first)."""
    return max(items, key=lambda it: (intensity(it) is not None, intensity(it) or 0.0))
