"""MaxQuant's ``proteinGroups.txt`` read column by column into Arrow tables (what the store inserts)
and the protein QC values of the run, in one streamed pass with bounded memory.

The values are those of :mod:`~qcdaemon.tools.maxquant_proteins`'s row-by-row parser (which stays
the reference: :class:`ProteinGroup` objects for callers that want rows); only the work moved from
one Python call per cell to one Arrow kernel per column.

A table of groups has the columns of :data:`GROUP_FIELDS` (``reporter``: the corrected reporter
intensity of each channel, channels ascending) and then, for each requested text column, its
cells as JSON texts, named as in the file (``null`` where the file has no such column).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from qcdaemon.tools.maxquant_columns import QC_EXCLUDED_IDS, QC_PROTEIN
from qcdaemon.tools.maxquant_proteins import ProteinAggregate, ProteinGroup
from qcdaemon.tools.tsv import Moments, open_table, reporter_channels, value
from qcdaemon.tools.tsv_arrow import BLOCK_BYTES, flags, json_texts, numbers, reporter_lists, string_batches, strip

GROUP_FIELDS = ("majority_ids", "fasta_headers", "score", "intensity", "contaminant", "reverse", "only_by_site",
                "reporter")
_REQUIRED = ("Protein IDs", "Majority protein IDs")
_TYPED = ("Majority protein IDs", "Fasta headers", "Score", "Intensity", "Potential contaminant", "Contaminant",
          "Reverse", "Only identified by site")
_COMPACT_ROWS = 1_000_000  # rows of channel flags held before they are made distinct (about 20 MB)
_AGGREGATED = ("Protein IDs", "Sequence coverage [%]", "Peptide counts (all)")  # what the QC values read


class _Scan:
    """The aggregate of :func:`~qcdaemon.tools.maxquant_proteins.stream_protein_groups`, batch by batch."""

    def __init__(self, n_channels: int) -> None:
        self.agg = ProteinAggregate()
        self.agg.coverage = Moments()
        self.agg.missing = [0] * n_channels
        self.n_channels = n_channels
        # per id: whether each channel saw it (c0, c1, ...), in tables made distinct by _compact
        self._held: list[pa.Table] = []
        self._held_rows = 0

    def add(self, batch: _Batch) -> None:
        agg, t = self.agg, batch.typed
        agg.n += batch.n
        agg.contaminants += pc.sum(t["contaminant"].cast(pa.int64())).as_py() or 0
        agg.reverse += pc.sum(t["reverse"].cast(pa.int64())).as_py() or 0
        true_hit = pc.invert(pc.or_(t["contaminant"], t["reverse"]))
        agg.true_hits += pc.sum(true_hit.cast(pa.int64())).as_py() or 0
        for c in pc.filter(numbers(batch.col("Sequence coverage [%]"), batch.n), true_hit).to_pylist():
            agg.coverage.add(c)
        kept = pc.and_(pc.and_(true_hit, pc.invert(t["only_by_site"])),
                       pc.invert(pc.is_in(t["majority_ids"], value_set=pa.array(sorted(QC_EXCLUDED_IDS)))))
        for k, rep in enumerate(batch.channels):
            lost = pc.fill_null(pc.equal(rep, 0.0), True)
            agg.missing[k] += pc.sum(pc.and_(kept, lost).cast(pa.int64())).as_py() or 0
        self._count_channels(batch)
        self._qc_best(batch)

    def _count_channels(self, batch: _Batch) -> None:
        """ChannelCounter's distinct ids per channel: each batch's rows with an id and a positive
        channel are kept (one row per group, a bit per channel), made distinct once at the end, or
        whenever more than ``_COMPACT_ROWS`` are held (bounded by the ids, not by ids x channels).
        Made distinct on the calling thread: a threaded group-by per batch left each of Arrow's
        threads a glibc arena of freed blocks (a 200,000-group parse peaked 60-100 MB higher)."""
        if not self.n_channels:
            return
        ids = strip(batch.typed["majority_ids"])
        cols: dict[str, pa.Array] = {"id": ids}
        for k, chan in enumerate(batch.channel_cols):
            positive = pc.fill_null(pc.greater(batch.channels[k], 0.0), False)
            for c in chan[1:]:
                positive = pc.or_(positive, pc.fill_null(pc.greater(numbers(batch.cols[c], batch.n), 0.0), False))
            cols[f"c{k}"] = positive
        any_positive = functools.reduce(pc.or_, list(cols.values())[1:])
        seen = pa.table(cols).filter(pc.and_(pc.not_equal(ids, ""), any_positive))
        self._held.append(seen)
        self._held_rows += seen.num_rows
        if self._held_rows > _COMPACT_ROWS:
            self._compact()

    def _compact(self) -> None:
        if self._held:
            seen = self._distinct(pa.concat_tables(self._held))
            self._held, self._held_rows = [seen], seen.num_rows

    def _distinct(self, seen: pa.Table) -> pa.Table:
        names = [f"c{k}" for k in range(self.n_channels)]
        out = seen.group_by("id", use_threads=False).aggregate([(c, "any") for c in names])
        return pa.table({"id": out.column("id"), **{c: out.column(f"{c}_any") for c in names}})

    def _qc_best(self, batch: _Batch) -> None:
        """First of maximal intensity among rows naming the QC protein (None intensities lose)."""
        pid = batch.col("Protein IDs")
        if pid is None:
            return
        hits = pc.indices_nonzero(pc.match_substring(pid, QC_PROTEIN)).to_pylist()
        if not hits:
            return
        intensity = batch.typed["intensity"].to_pylist()
        best = max(hits, key=lambda i: (intensity[i] is not None, intensity[i] or 0.0, -i))
        old = self.agg.qc_best
        mine = intensity[best]
        if old is None or (mine is not None and (old.intensity is None or mine > old.intensity)):
            peps = batch.col("Peptide counts (all)")
            self.agg.qc_best = ProteinGroup(
                majority_protein_ids="", fasta_headers="", score=None, intensity=mine, contaminant=False,
                reverse=False, only_by_site=False,
                reporter_corrected=tuple(r[best].as_py() for r in batch.channels),
                extra={"Protein IDs": value(pid[best].as_py()),
                       "Peptide counts (all)": None if peps is None else value(peps[best].as_py())})

    def counts(self) -> list[int]:
        if not self._held:
            return [0] * self.n_channels
        seen = pa.concat_tables(self._held)
        ids = seen.column("id")
        return [int(pc.count_distinct(ids.filter(seen.column(f"c{k}"))).as_py()) for k in range(self.n_channels)]


class _Batch:
    """One batch of string columns and its typed group columns."""

    def __init__(self, header: list[str], index: dict[str, int], cols: list[pa.Array | None],
                 channel_cols: list[list[int]]) -> None:
        self.index, self.cols, self.channel_cols = index, cols, channel_cols
        self.n = n = next((len(c) for c in cols if c is not None), 0)
        ids = self.col("Majority protein IDs")
        assert ids is not None  # a required column
        fasta = self.col("Fasta headers")
        self.channels = [numbers(cols[c[0]], n) for c in channel_cols]  # all channel columns are read
        self.typed: dict[str, pa.Array] = {
            "majority_ids": ids,
            "fasta_headers": fasta if fasta is not None else pa.array([""] * n, pa.string()),
            "score": numbers(self.col("Score"), n),
            "intensity": numbers(self.col("Intensity"), n),
            "contaminant": pc.or_(pc.or_(flags(self.col("Potential contaminant"), n), flags(self.col("Contaminant"), n)),
                                  pc.starts_with(ids, "CON__")),
            "reverse": pc.or_(flags(self.col("Reverse"), n), pc.starts_with(ids, "REV__")),
            "only_by_site": flags(self.col("Only identified by site"), n),
        }
        self.extra_names = set(header) - set(_TYPED) - {header[c[0]] for c in channel_cols}

    def col(self, name: str) -> pa.Array | None:
        i = self.index.get(name)
        return None if i is None else self.cols[i]

    def table(self, text_columns: Sequence[str]) -> pa.Table:
        cols = dict(self.typed)
        cols["reporter"] = reporter_lists(self.channels, self.n)
        for name in text_columns:  # a typed field or a channel's first column is no "extra" cell
            cols[name] = json_texts(self.col(name) if name in self.extra_names else None, self.n)
        return pa.table(cols)


def _batches(path: Path, channels_out: list[list[int]], text_columns: list[str], block_bytes: int
             ) -> Iterator[_Batch]:
    """The file's batches (the columns the groups and the values need); ``channels_out`` receives
    the reporter channels' column indices."""
    with open_table(Path(path), _REQUIRED) as table:
        channels = reporter_channels(table.header)
        channels_out[:] = channels
        names = {*_TYPED, *_AGGREGATED, *text_columns}
        needed = {i for n, i in table.index.items() if n in names} | {c for cols in channels for c in cols}
        for cols in string_batches(table, needed, block_bytes):
            yield _Batch(table.header, table.index, cols, channels)


def protein_group_tables(path: Path, text_columns: Iterable[str] = (), block_bytes: int = BLOCK_BYTES
                         ) -> Iterator[pa.Table]:
    """The groups of a proteinGroups.txt (or .txt.gz) as Arrow tables in file order, a block of
    the file at a time (bounded memory for any size)."""
    names = list(text_columns)
    for batch in _batches(path, [], names, block_bytes):
        yield batch.table(names)


def scan_protein_groups(path: Path, text_columns: Iterable[str] = (), keep_rows: int = 0,
                        block_bytes: int = BLOCK_BYTES) -> tuple[ProteinAggregate, list[int], list[pa.Table] | None]:
    """One pass: the aggregate and per-channel counts of
    :func:`~qcdaemon.tools.maxquant_proteins.stream_protein_groups`, and the groups as tables when
    the file has at most ``keep_rows`` of them (else ``None``: nothing beyond that is kept)."""
    names = list(text_columns)
    channels: list[list[int]] = []
    scan: _Scan | None = None
    kept: list[pa.Table] | None = [] if keep_rows > 0 else None
    rows = 0
    for batch in _batches(path, channels, names, block_bytes):
        if scan is None:
            scan = _Scan(len(channels))
        scan.add(batch)
        rows += batch.n
        if kept is not None:
            kept = [*kept, batch.table(names)] if rows <= keep_rows else None
    if scan is None:  # a header and no rows
        scan = _Scan(0)
        scan.agg.missing = []
        return scan.agg, [0] * len(channels), kept
    return scan.agg, scan.counts(), kept
