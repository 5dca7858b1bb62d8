"""MaxQuant ``combined/txt`` tables -> one run's QC values (pure: files in, values out).

Columns and their sources follow the ProteomicsQC behaviour spec (section 3.2/3.3), with these
decisions where the original was buggy or silent:

* Every input file is optional. A missing ``summary.txt``, ``proteinGroups.txt``,
  ``peptides.txt``, ``msmsScans.txt`` or ``evidence.txt`` gives ``None`` for the columns it feeds;
  the other columns are still computed (the original dropped the whole row). A file that exists
  but is malformed (binary, not tab-separated, a required column missing, a ragged row) raises
  :class:`~qcdaemon.errors.ParseError` naming the file. ``X.txt.gz`` is read when ``X.txt`` is
  absent.
* ``N_missed_cleavages_gt_3 [%]`` keeps its historical name but counts peptides with **three or
  more** missed cleavages, so the four buckets (0, 1, 2, >=3) add up to 100 %. The original
  counted ``> 3`` and silently put exactly-3 peptides in no bucket.
* ``TMT<n>`` is the n-th reporter channel in ascending channel-number order (MaxQuant numbers
  channels from 1, so n is the channel number; a 0-based file becomes 1-based). Only channels
  present are emitted (no ``"not detected"`` padding, no cut at 11). Of several columns sharing a
  channel number (generic and experiment-suffixed), values come from the generic one (else the
  first); the TMT detection counts take the maximum across them, as spec 3.3 says.
  ``TMT<n>_missing_values``, ``TMT<n>_peptide_count`` and ``TMT<n>_protein_group_count`` are
  emitted for every channel seen in any available table, ``None`` where their source is missing.
* Contaminant = ``Potential contaminant`` (or old ``Contaminant``) is ``+`` or the majority ID
  starts with ``CON__``; reverse = ``Reverse`` is ``+`` or the ID starts with ``REV__``.
  ``N_protein_true_hits`` counts groups that are neither (no double subtraction).
* QC peptides (``HVLTSIGEK``, ``LTILEELR``) and the QC protein (``QC3_BSA``) keep the original's
  ``"not detected"`` strings when the table was read but holds no such entry. Of tied
  max-intensity rows the first is used (the original crashed on ties). The QC peptide
  statistics use one column per channel (duplicated columns do not change mean or population sd).
* Peptide percentages and ``Mean_parent_int_frac`` are rounded to 2 dp as in the original; the
  rest is unrounded. NaN never appears: a value that cannot be computed is ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qcdaemon.errors import ParseError
from qcdaemon.tools.tsv import (
    ChannelCounter,
    Moments,
    Table,
    bounded,
    find_table,
    is_flag,
    number,
    open_table,
    reporter_channels,
    value,
)

__all__ = ["MAXQUANT_COLUMNS", "ProteinGroup", "maxquant_columns", "parse_maxquant",
           "parse_protein_groups"]

SUMMARY_COLUMNS = (
    "MS", "MS/MS", "MS3", "MS/MS Submitted", "MS/MS Identified", "MS/MS Identified [%]",
    "Peptide Sequences Identified", "Av. Absolute Mass Deviation [mDa]",
    "Mass Standard Deviation [mDa]",
)
_SUMMARY_V2 = {
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
_EVIDENCE_STATS = {  # output column -> (evidence column, statistic)
    "Uncalibrated - Calibrated m/z [ppm] (ave)": ("Uncalibrated - Calibrated m/z [ppm]", "mean"),
    "Uncalibrated - Calibrated m/z [ppm] (sd)": ("Uncalibrated - Calibrated m/z [ppm]", "sd"),
    "Uncalibrated - Calibrated m/z [Da] (ave)": ("Uncalibrated - Calibrated m/z [Da]", "mean"),
    "Uncalibrated - Calibrated m/z [Da] (sd)": ("Uncalibrated - Calibrated m/z [Da]", "sd"),
    "Peak Width(ave)": ("Retention length", "mean"),
    "Peak Width (std)": ("Retention length", "sd"),
}
QC_PEPTIDES = ("HVLTSIGEK", "LTILEELR")
QC_PROTEIN = "QC3_BSA"
_QC_EXCLUDED_IDS = frozenset({"QC1|Peptide1", "QC2|Peptide2"})
NOT_DETECTED = "not detected"


def _qc_peptide_columns(i: int) -> tuple[str, ...]:
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
EVIDENCE_COLUMNS = tuple(_EVIDENCE_STATS) + tuple(
    c for i in range(1, len(QC_PEPTIDES) + 1) for c in _qc_peptide_columns(i))


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


@dataclass(frozen=True)
class ProteinGroup:
    """One row of proteinGroups.txt."""

    majority_protein_ids: str
    fasta_headers: str
    score: float | None
    intensity: float | None
    contaminant: bool
    reverse: bool
    only_by_site: bool
    reporter_corrected: tuple[float | None, ...]
    extra: dict[str, Any]


# --------------------------------------------------------------------------- proteinGroups.txt
_PG_FIELDS = ("Majority protein IDs", "Fasta headers", "Score", "Intensity",
              "Potential contaminant", "Contaminant", "Reverse", "Only identified by site")


def _protein_group(table: Table, row: list[str], channels: list[list[int]],
                   extra_idx: list[int]) -> ProteinGroup:
    ids = table.get(row, "Majority protein IDs") or ""
    contaminant = is_flag(table.get(row, "Potential contaminant")) or is_flag(
        table.get(row, "Contaminant")) or ids.startswith("CON__")
    return ProteinGroup(
        majority_protein_ids=ids,
        fasta_headers=table.get(row, "Fasta headers") or "",
        score=number(table.get(row, "Score")),
        intensity=number(table.get(row, "Intensity")),
        contaminant=contaminant,
        reverse=is_flag(table.get(row, "Reverse")) or ids.startswith("REV__"),
        only_by_site=is_flag(table.get(row, "Only identified by site")),
        reporter_corrected=tuple(number(row[cols[0]]) for cols in channels),
        extra={table.header[i]: value(row[i]) for i in extra_idx},
    )


def iter_protein_groups(path: Path) -> Iterator[ProteinGroup]:
    """The rows of a proteinGroups.txt one at a time (bounded memory: nothing is kept)."""
    required = ("Protein IDs", "Majority protein IDs")
    with open_table(Path(path), required) as table:
        channels = reporter_channels(table.header)
        used = {table.index[n] for n in _PG_FIELDS if n in table.index}
        used |= {cols[0] for cols in channels}
        extra_idx = [i for i in range(len(table.header)) if i not in used]
        for row in table.rows():
            yield _protein_group(table, row, channels, extra_idx)


def protein_group_batches(path: Path, size: int = 2000) -> Iterator[list[ProteinGroup]]:
    """:func:`iter_protein_groups` in lists of at most ``size`` (for batched inserts)."""
    batch: list[ProteinGroup] = []
    for g in iter_protein_groups(path):
        batch.append(g)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _ProteinAggregate:
    """What :func:`parse_maxquant` needs of the protein groups, computed in one streaming pass."""

    def __init__(self) -> None:
        self.n = self.true_hits = self.contaminants = self.reverse = 0
        self.coverage = Moments()
        self.missing: list[int] = []
        self.qc_best: ProteinGroup | None = None

    def add(self, g: ProteinGroup) -> None:
        self.n += 1
        self.contaminants += g.contaminant
        self.reverse += g.reverse
        if len(self.missing) < len(g.reporter_corrected):
            self.missing += [0] * (len(g.reporter_corrected) - len(self.missing))
        if not (g.contaminant or g.reverse):
            self.true_hits += 1
            c = g.extra.get("Sequence coverage [%]")
            self.coverage.add(float(c) if isinstance(c, int | float) else None)
            if not g.only_by_site and g.majority_protein_ids not in _QC_EXCLUDED_IDS:
                for n, v in enumerate(g.reporter_corrected):
                    self.missing[n] += v in (None, 0)
        if QC_PROTEIN in str(g.extra.get("Protein IDs") or ""):
            best = self.qc_best  # first of maximal intensity, as _best: None intensities lose
            if best is None or (g.intensity is not None and (best.intensity is None or g.intensity > best.intensity)):
                self.qc_best = g

    def values(self, channels: int) -> dict[str, Any]:
        values: dict[str, Any] = dict(zip(PROTEIN_COLUMNS, (
            self.n, self.true_hits, self.contaminants, self.reverse, self.coverage.mean()), strict=True))
        for n in range(channels):
            values[f"TMT{n + 1}_missing_values"] = self.missing[n] if n < len(self.missing) else 0
        return values | _protein_qc([self.qc_best] if self.qc_best is not None else [])


def _stream_protein_groups(path: Path) -> tuple[_ProteinAggregate, list[int]]:
    """One pass over the table: the aggregate and the channel counts, no group kept."""
    agg = _ProteinAggregate()
    with open_table(path, ("Protein IDs", "Majority protein IDs")) as table:
        channels = reporter_channels(table.header)
        used = {table.index[n] for n in _PG_FIELDS if n in table.index}
        used |= {cols[0] for cols in channels}
        extra_idx = [i for i in range(len(table.header)) if i not in used]
        counter = ChannelCounter(channels, table.index["Majority protein IDs"])
        for row in table.rows():
            agg.add(_protein_group(table, row, channels, extra_idx))
            counter.add(row)
    return agg, counter.counts()


def parse_protein_groups(path: Path) -> list[ProteinGroup]:
    """Every row of a MaxQuant proteinGroups.txt (or .txt.gz), in file order (all in memory:
    for large tables use :func:`protein_group_batches`)."""
    return list(iter_protein_groups(Path(path)))


def _mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    m = Moments()
    for v in values:
        m.add(v)
    return m.mean(), m.sd()


def _cv(ave: float | None, sd: float | None, when_zero: Any) -> Any:
    if ave is None or sd is None:
        return None
    return when_zero if ave == 0 else sd / ave * 100


def _missing_flags(values: Sequence[float | None]) -> str | None:
    """Per channel ``1`` if the intensity is missing or 0, else ``0``; ``None`` if no channels."""
    return ";".join("1" if v is None or v == 0 else "0" for v in values) or None


def _best(items: Sequence[Any], intensity: Any) -> Any:
    """First item of maximal intensity (``None`` intensities lose; all ``None`` -> first)."""
    return max(items, key=lambda it: (intensity(it) is not None, intensity(it) or 0.0))


def _protein_qc(groups: list[ProteinGroup]) -> dict[str, Any]:
    hits = [g for g in groups if QC_PROTEIN in str(g.extra.get("Protein IDs") or "")]
    if not hits:
        return dict.fromkeys(PROTEIN_QC_COLUMNS, NOT_DETECTED)
    best = _best(hits, lambda g: g.intensity)
    ave, sd = _mean_sd(best.reporter_corrected)
    peps = best.extra.get("Peptide counts (all)")
    return dict(zip(PROTEIN_QC_COLUMNS, (
        None if peps is None else str(peps), _missing_flags(best.reporter_corrected),
        ave, sd, _cv(ave, sd, None))))


def _protein_values(groups: list[ProteinGroup], channels: int) -> dict[str, Any]:
    """Counts, mean sequence coverage, per-channel missing values and the QC protein."""
    true_hits = [g for g in groups if not (g.contaminant or g.reverse)]
    cov = (g.extra.get("Sequence coverage [%]") for g in true_hits)
    coverage, _ = _mean_sd(float(c) if isinstance(c, int | float) else None for c in cov)
    values: dict[str, Any] = dict(zip(PROTEIN_COLUMNS, (
        len(groups), len(true_hits), sum(g.contaminant for g in groups),
        sum(g.reverse for g in groups), coverage)))
    kept = [g for g in true_hits
            if not g.only_by_site and g.majority_protein_ids not in _QC_EXCLUDED_IDS]
    for n in range(channels):
        values[f"TMT{n + 1}_missing_values"] = sum(
            g.reporter_corrected[n] in (None, 0) for g in kept)
    return values | _protein_qc(groups)


# ------------------------------------------------------------------------------- summary.txt
def _summary_values(path: Path) -> dict[str, Any]:
    """The 9 summary metrics of the first data row, v2 lower-case names mapped to v1."""
    with open_table(path, ("Raw file",)) as table:
        if "MS/MS Submitted" in table.index:
            names = {c: c for c in SUMMARY_COLUMNS}
        elif "MS/MS submitted" in table.index:
            names = {c: _SUMMARY_V2.get(c, c) for c in SUMMARY_COLUMNS}
        else:
            raise ParseError(f"{path}: no 'MS/MS Submitted' column; not a MaxQuant summary.txt")
        row = next(table.rows(), None)
        if row is None:
            raise ParseError(f"{path}: a header but no data row; MaxQuant summarised nothing")
        out = {c: value(table.get(row, n)) for c, n in names.items()}
        for c, x in out.items():
            bounded(path, c, x)
        return out


# ------------------------------------------------------------------------------ peptides.txt
def _pct(count: int, total: int) -> float | None:
    return round(count / total * 100, 2) if total else None


def _peptide_values(path: Path) -> dict[str, Any]:
    """Peptide counts, oxidation share, missed-cleavage buckets and C-terminal residues."""
    with open_table(path, ("Sequence", "Missed cleavages", "Last amino acid")) as table:
        n = cont = rev = ox = 0
        mc = [0, 0, 0, 0]  # 0, 1, 2, >=3
        last = {"K": 0, "R": 0}
        has_ox = "Oxidation (M) site IDs" in table.index
        for row in table.rows():
            n += 1
            cont += is_flag(table.get(row, "Potential contaminant")) or is_flag(
                table.get(row, "Contaminant"))
            rev += is_flag(table.get(row, "Reverse"))
            ox += bool(has_ox and table.get(row, "Oxidation (M) site IDs"))
            cleavages = number(table.get(row, "Missed cleavages"))
            if cleavages is not None and cleavages >= 0:
                mc[min(int(cleavages), 3)] += 1
            aa = table.get(row, "Last amino acid")
            if aa in last:
                last[aa] += 1
    return dict(zip(PEPTIDE_COLUMNS, (
        n, cont, rev, _pct(ox, n) if has_ox else None, mc[1] + mc[2] + mc[3],
        _pct(mc[0], n), _pct(mc[1], n), _pct(mc[2], n), _pct(mc[3], n),
        _pct(last["K"], n), _pct(last["R"], n), _pct(n - last["K"] - last["R"], n))))


# ----------------------------------------------------------------------------- msmsScans.txt
def _msms_values(path: Path) -> dict[str, Any]:
    with open_table(path, ("Parent intensity fraction",)) as table:
        mean, _ = _mean_sd(number(table.get(r, "Parent intensity fraction")) for r in table.rows())
    return {"Mean_parent_int_frac": None if mean is None else round(mean, 2)}


# ------------------------------------------------------------------------------ evidence.txt
def _qc_peptide(table: Table, i: int, rows: list[list[str]],
                channels: list[list[int]]) -> dict[str, Any]:
    columns = _qc_peptide_columns(i)
    if not rows:
        return dict.fromkeys(columns, NOT_DETECTED)
    charges = ";".join(table.get(r, "Charge") or "" for r in rows)
    best = _best(rows, lambda r: number(table.get(r, "Intensity")))
    reporters = [number(best[cols[0]]) for cols in channels]
    ave, sd = _mean_sd(reporters)
    return dict(zip(columns, (
        charges, _missing_flags(reporters), ave, sd, _cv(ave, sd, "not calculated"),
        number(table.get(best, "Calibrated retention time")),
        number(table.get(best, "Retention length")), value(table.get(best, "Number of scans")))))


def _evidence_values(path: Path) -> tuple[dict[str, Any], list[int]]:
    """Mass-error and peak-width statistics, QC peptides, per-channel peptide counts."""
    with open_table(path, ("Sequence",)) as table:
        channels = reporter_channels(table.header)
        sources = {src for src, _ in _EVIDENCE_STATS.values() if src in table.index}
        moments = {src: Moments() for src in sources}
        qc_rows: dict[str, list[list[str]]] = {p: [] for p in QC_PEPTIDES}
        counter = ChannelCounter(channels, table.index["Sequence"])
        for row in table.rows():
            for src, m in moments.items():
                m.add(number(table.get(row, src)))
            counter.add(row)
            if (seq := table.get(row, "Sequence")) in qc_rows:
                qc_rows[seq].append(row)
        values: dict[str, Any] = {}
        for column, (src, stat) in _EVIDENCE_STATS.items():
            found = moments.get(src)
            values[column] = None if found is None else (found.mean() if stat == "mean" else found.sd())
        for i, peptide in enumerate(QC_PEPTIDES, start=1):
            values |= _qc_peptide(table, i, qc_rows[peptide], channels)
    return values, counter.counts()


# ----------------------------------------------------------------------------------- the run
def _header_channels(path: Path | None) -> int:
    if path is None:
        return 0
    with open_table(path, ()) as table:
        return len(reporter_channels(table.header))


def parse_maxquant(txt_dir: Path) -> dict[str, Any]:
    """QC values of one run from MaxQuant's combined/txt folder: column name -> JSON-able value
    (int, float, str or None), in the column order the API should show them
    (:func:`maxquant_columns` for the channels present)."""
    txt_dir = Path(txt_dir)
    if not txt_dir.is_dir():
        raise ParseError(f"{txt_dir}: MaxQuant txt folder does not exist")
    values: dict[str, Any] = {}
    if summary := find_table(txt_dir, "summary.txt"):
        values |= _summary_values(summary)
    pg_counts: list[int] | None = None
    if pg := find_table(txt_dir, "proteinGroups.txt"):
        agg, pg_counts = _stream_protein_groups(pg)  # bounded memory (issue 12)
        if not agg.n:  # decided (issue 12): a run with 0 protein groups is not silently "done"
            raise ParseError(f"{pg}: a header but no protein groups; MaxQuant identified nothing")
        values |= agg.values(len(pg_counts))
    if peptides := find_table(txt_dir, "peptides.txt"):
        values |= _peptide_values(peptides)
    if msms := find_table(txt_dir, "msmsScans.txt"):
        values |= _msms_values(msms)
    pep_counts: list[int] | None = None
    if evidence := find_table(txt_dir, "evidence.txt"):
        ev_values, pep_counts = _evidence_values(evidence)
        values |= ev_values
    eq0 = values.get("N_missed_cleavages_eq_0 [%]")
    values["Missed Cleavages [%]"] = None if eq0 is None else round(100 - eq0, 2)
    channels = max(len(pg_counts or ()), len(pep_counts or ()), _header_channels(peptides))
    for n, counts in enumerate(pep_counts or (), start=1):
        values[f"TMT{n}_peptide_count"] = counts
    for n, counts in enumerate(pg_counts or (), start=1):
        values[f"TMT{n}_protein_group_count"] = counts
    return {column: values.get(column) for column in maxquant_columns(channels)}
