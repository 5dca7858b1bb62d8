"""MaxQuant's ``proteinGroups.txt``: its rows (streamed, or in batches for the store) and the protein
QC values of one run, computed in one pass with bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qcdaemon.tools.maxquant_columns import (
    NOT_DETECTED,
    PROTEIN_COLUMNS,
    PROTEIN_QC_COLUMNS,
    QC_EXCLUDED_IDS,
    QC_PROTEIN,
    best_of,
    cv,
    mean_sd,
    missing_flags,
)
from qcdaemon.tools.tsv import ChannelCounter, Moments, Table, is_flag, number, open_table, reporter_channels, value


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


class ProteinAggregate:
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
            if not g.only_by_site and g.majority_protein_ids not in QC_EXCLUDED_IDS:
                for n, v in enumerate(g.reporter_corrected):
                    self.missing[n] += v in (None, 0)
        if QC_PROTEIN in str(g.extra.get("Protein IDs") or ""):
            best = self.qc_best  # first of maximal intensity, as best_of: None intensities lose
            if best is None or (g.intensity is not None and (best.intensity is None or g.intensity > best.intensity)):
                self.qc_best = g

    def values(self, channels: int) -> dict[str, Any]:
        values: dict[str, Any] = dict(zip(PROTEIN_COLUMNS, (
            self.n, self.true_hits, self.contaminants, self.reverse, self.coverage.mean()), strict=True))
        for n in range(channels):
            values[f"TMT{n + 1}_missing_values"] = self.missing[n] if n < len(self.missing) else 0
        return values | _protein_qc([self.qc_best] if self.qc_best is not None else [])


def stream_protein_groups(path: Path) -> tuple[ProteinAggregate, list[int]]:
    """One pass over the table: the aggregate and the channel counts, no group kept."""
    agg = ProteinAggregate()
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


def _protein_qc(groups: list[ProteinGroup]) -> dict[str, Any]:
    hits = [g for g in groups if QC_PROTEIN in str(g.extra.get("Protein IDs") or "")]
    if not hits:
        return dict.fromkeys(PROTEIN_QC_COLUMNS, NOT_DETECTED)
    best = best_of(hits, lambda g: g.intensity)
    ave, sd = mean_sd(best.reporter_corrected)
    peps = best.extra.get("Peptide counts (all)")
    return dict(zip(PROTEIN_QC_COLUMNS, (
        None if peps is None else str(peps), missing_flags(best.reporter_corrected),
        ave, sd, cv(ave, sd, None))))


def _protein_values(groups: list[ProteinGroup], channels: int) -> dict[str, Any]:
    """Counts, mean sequence coverage, per-channel missing values and the QC protein."""
    true_hits = [g for g in groups if not (g.contaminant or g.reverse)]
    cov = (g.extra.get("Sequence coverage [%]") for g in true_hits)
    coverage, _ = mean_sd(float(c) if isinstance(c, int | float) else None for c in cov)
    values: dict[str, Any] = dict(zip(PROTEIN_COLUMNS, (
        len(groups), len(true_hits), sum(g.contaminant for g in groups),
        sum(g.reverse for g in groups), coverage)))
    kept = [g for g in true_hits
            if not g.only_by_site and g.majority_protein_ids not in QC_EXCLUDED_IDS]
    for n in range(channels):
        values[f"TMT{n + 1}_missing_values"] = sum(
            g.reporter_corrected[n] in (None, 0) for g in kept)
    return values | _protein_qc(groups)
