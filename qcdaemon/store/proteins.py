"""Protein groups, stored columnar: typed columns for what the routes filter and average on, the
original's other standard columns as JSON text; the ``/api/protein-names`` and
``/api/protein-groups`` answers assembled by DuckDB."""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from qcdaemon.qc import qcdata
from qcdaemon.store.qcvalues import QcValueQueries, json_default
from qcdaemon.tools.maxquant_groups import GROUP_FIELDS

# proteinGroups.txt columns kept as real columns (the original's standard columns, spec 4.1,
# beyond the typed ones); each cell holds its JSON text.  API name -> SQL column (migration 2).
PG_TEXT_COLUMNS: dict[str, str] = {
    "Number of proteins": "n_proteins", "Peptides": "peptides", "Razor + unique peptides": "razor_unique_peptides",
    "Unique peptides": "unique_peptides", "Sequence coverage [%]": "sequence_coverage",
    "Unique + razor sequence coverage [%]": "unique_razor_sequence_coverage",
    "Unique sequence coverage [%]": "unique_sequence_coverage", "Mol. weight [kDa]": "mol_weight_kda",
    "Sequence length": "sequence_length", "Sequence lengths": "sequence_lengths", "Q-value": "q_value",
    "MS/MS count": "msms_count", "id": "mq_id", "Peptide IDs": "peptide_ids", "Peptide is razor": "peptide_is_razor",
    "Mod. peptide IDs": "mod_peptide_ids", "Evidence IDs": "evidence_ids", "MS/MS IDs": "msms_ids",
    "Best MS/MS": "best_msms", "Oxidation (M) site IDs": "oxidation_m_site_ids",
    "Oxidation (M) site positions": "oxidation_m_site_positions",
}
_PG_FIXED = {"Fasta headers": "fasta_headers", "Score": "score", "Intensity": "intensity"}

_SEP = "\x1f"  # never inside ensure_ascii JSON text: control characters are escaped there
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})


def _cells_json(values: list[Any]) -> list[str]:
    """Each value's JSON text as ``json.dumps`` gives it (non-finite numbers as null, as the API
    answers them), for a whole column in one C-encoder call: the list is encoded with a separator
    that cannot occur inside the encoding, then split."""
    if not values:
        return []
    text = json.dumps(values, separators=(_SEP, ":"), default=json_default)
    cells = text[1:-1].split(_SEP)
    if len(cells) != len(values):  # a list or dict value: its inner separators split too
        cells = [json.dumps(v, default=json_default) for v in values]
    return [("null" if c in _NON_FINITE else c) for c in cells] if "N" in text or "I" in text else cells


def _num_json(col: str) -> str:
    """SQL: a DOUBLE as JSON text.  DuckDB's DOUBLE -> VARCHAR cast is the shortest round-trip form,
    textually the same as Python's ``repr`` (so as ``json.dumps``); NaN, infinities and NULL -> null."""
    return f"CASE WHEN isfinite({col}) THEN CAST({col} AS VARCHAR) ELSE 'null' END"


def _parsed_table(run_id: int, groups: pa.Table, first_idx: int) -> pa.Table:
    """A table of tools.maxquant_groups as the rows of ``protein_groups``: the run and each row's
    position first, the text columns renamed (a text column the parse did not give: JSON null)."""
    n = groups.num_rows
    cols: dict[str, Any] = {"run_id": pa.repeat(pa.scalar(run_id, pa.int32()), n),
                            "idx": pa.array(range(first_idx, first_idx + n), pa.int32())}
    for name in GROUP_FIELDS:
        cols[name] = groups.column(name)
    names = set(groups.column_names)
    for name, col in PG_TEXT_COLUMNS.items():
        cols[col] = groups.column(name) if name in names else pa.repeat(pa.scalar("null"), n)
    return pa.table(cols)


def _int_list(ids: Sequence[int]) -> list[int]:
    return [int(i) for i in ids]

class ProteinQueries(QcValueQueries):
    # -- protein groups ------------------------------------------------------

    def put_protein_groups(self, run_id: int, groups: pa.Table | Iterable[Any], *, first_idx: int = 0) -> int:
        """Replace the run's protein groups (an Arrow batch insert, not row by row): typed columns
        for what the routes filter and average on, JSON text for the original's other standard columns.
        ``groups``: a table of :mod:`~qcdaemon.tools.maxquant_groups` (as the MaxQuant stage reads
        them) or ``ProteinGroup`` rows.  With ``first_idx`` > 0, add a further batch numbered from
        there (a large table in parts)."""
        table = self._protein_table(run_id, groups, first_idx)
        with self.transaction():
            if first_idx == 0:
                self._replace_protein_groups(run_id, table)
            elif table.num_rows:
                self.insert_arrow("protein_groups", table)
        return table.num_rows

    def _protein_table(self, run_id: int, groups: pa.Table | Iterable[Any], first_idx: int = 0) -> pa.Table:
        if isinstance(groups, pa.Table):
            return _parsed_table(run_id, groups, first_idx)
        groups = list(groups)
        n = len(groups)
        cols: dict[str, Any] = {
            "run_id": pa.array([run_id] * n, pa.int32()),
            "idx": pa.array(range(first_idx, first_idx + n), pa.int32()),
            "majority_ids": pa.array([g.majority_protein_ids for g in groups], pa.string()),
            "fasta_headers": pa.array([g.fasta_headers for g in groups], pa.string()),
            "score": pa.array([g.score for g in groups], pa.float64()),
            "intensity": pa.array([g.intensity for g in groups], pa.float64()),
            "contaminant": pa.array([g.contaminant for g in groups], pa.bool_()),
            "reverse": pa.array([g.reverse for g in groups], pa.bool_()),
            "only_by_site": pa.array([g.only_by_site for g in groups], pa.bool_()),
            "reporter": pa.array([list(g.reporter_corrected) for g in groups], pa.list_(pa.float64())),
        }
        extras = [g.extra for g in groups]
        for name, col in PG_TEXT_COLUMNS.items():
            try:
                values = list(map(operator.itemgetter(name), extras))  # one header per file: all rows have it
            except KeyError:
                values = [e.get(name) for e in extras]
            cols[col] = pa.array(_cells_json(values), pa.string())
        return pa.table(cols)

    def _replace_protein_groups(self, run_id: int, table: pa.Table) -> None:
        self.execute("DELETE FROM protein_groups WHERE run_id = ?", [run_id])
        if table.num_rows:
            self.insert_arrow("protein_groups", table)

    def put_maxquant(self, run_id: int, values: dict[str, Any], groups: pa.Table | Iterable[Any]) -> int:
        """A MaxQuant stage's whole result, its QC values and protein groups, in one transaction."""
        table = self._protein_table(run_id, groups)
        with self.transaction():
            self._replace_qc_values(run_id, "maxquant", values)
            self._replace_protein_groups(run_id, table)
        return table.num_rows

    def protein_names(
        self, run_ids: Sequence[int], remove_con: bool, remove_rev: bool
    ) -> list[dict[str, Any]]:
        if not run_ids:
            return []
        return self.rows(
            f"{_names_sql(remove_con, remove_rev)} ORDER BY score DESC NULLS LAST, majority_ids, fasta_headers",
            [_int_list(run_ids)],
        )

    def protein_names_json(self, run_ids: Sequence[int], remove_con: bool, remove_rev: bool) -> bytes:
        """The ``/api/protein-names`` answer as JSON, assembled by one DuckDB query."""
        if not run_ids:
            return b"{}"
        order = "ORDER BY score DESC NULLS LAST, majority_ids, fasta_headers"
        row = self.con.execute(
            "SELECT count(*), '{\"protein_names\":[' || string_agg(to_json(majority_ids), ',' " + order + ")"
            " || '],\"Fasta headers\":[' || string_agg(coalesce(to_json(fasta_headers), 'null'), ',' " + order + ")"
            f" || '],\"Score\":[' || string_agg({_num_json('score')}, ',' " + order + ")"
            f" || '],\"Intensity\":[' || string_agg({_num_json('intensity')}, ',' " + order + ") || ']}'"
            f" FROM ({_names_sql(remove_con, remove_rev)})",
            [_int_list(run_ids)],
        ).fetchall()[0]
        return b"{}" if not row[0] else str(row[1]).encode()

    def protein_rows(self, run_ids: Sequence[int], names: Sequence[str]) -> list[dict[str, Any]]:
        """The groups of ``names`` in the runs as dicts (``extra``: the stored standard columns, decoded)."""
        if not run_ids or not names:
            return []
        text = ", ".join(f"g.{c}" for c in PG_TEXT_COLUMNS.values())
        rows = self.rows(
            "SELECT g.run_id, g.idx, g.majority_ids, g.fasta_headers, g.score, g.intensity, g.contaminant, g.reverse,"
            f" g.only_by_site, g.reporter, {text}, 'rf' || g.run_id AS run_key FROM protein_groups g"
            " WHERE g.run_id IN (SELECT unnest(?::INTEGER[])) AND g.majority_ids IN (SELECT unnest(?::VARCHAR[]))"
            " ORDER BY g.run_id, g.idx",
            [_int_list(run_ids), [str(n) for n in names]],
        )
        for r in rows:
            r["extra"] = {name: json.loads(r.pop(col)) for name, col in PG_TEXT_COLUMNS.items() if r[col] is not None}
            for col in PG_TEXT_COLUMNS.values():
                r.pop(col, None)
        return rows

    def protein_groups_json(self, runs: Sequence[tuple[int, str]], names: Sequence[str],
                            columns: Sequence[str]) -> bytes:
        """The ``/api/protein-groups`` answer (pandas "columns" shape) as JSON: the groups are filtered
        by protein and run first (one scan into Arrow), then every requested column is one
        ``string_agg`` over the few matching rows.  ``runs``: (run id, displayed RawFile)."""
        if not runs or not names:
            return b"{}"
        wanted = qcdata.protein_columns(columns)
        text = [c for c in wanted if c in PG_TEXT_COLUMNS]
        fetch = ", ".join(["g.fasta_headers", "g.score", "g.intensity", "g.reporter",
                           *(f"g.{PG_TEXT_COLUMNS[c]}" for c in dict.fromkeys(text))])
        matched: pa.Table = self.con.sql(
            "WITH sel AS (SELECT unnest(?::INTEGER[]) AS run_id, unnest(?::VARCHAR[]) AS raw_file)"
            f" SELECT g.run_id, g.idx, s.raw_file, g.majority_ids, {fetch} FROM protein_groups g"
            " JOIN sel s ON s.run_id = g.run_id"
            # a filter in the scan (an IN over a subquery is a semi-join: every row's columns read first)
            " WHERE list_contains(?::VARCHAR[], g.majority_ids) ORDER BY g.run_id, g.idx",
            params=[[int(r) for r, _ in runs], [str(f) for _, f in runs], [str(n) for n in names]],
        ).to_arrow_table()
        if matched.num_rows == 0:
            return b"{}"
        lengths = pc.list_value_length(matched["reporter"])
        width = int(pc.max(lengths).as_py() or 0) if matched.num_rows else 0
        out = ["RawFile", "RunKey", "Majority protein IDs", *qcdata.expand_reporter(wanted, width)]
        cells: dict[str, str] = {"RawFile": "to_json(raw_file)", "RunKey": "'\"rf' || run_id || '\"'",
                                 "Majority protein IDs": "to_json(majority_ids)"}
        for c in out[3:]:
            n = qcdata.reporter_channel(c)
            if c == "Fasta headers":
                cells[c] = "coalesce(to_json(fasta_headers), 'null')"
            elif c in _PG_FIXED:
                cells[c] = _num_json(_PG_FIXED[c])
            elif n is not None:
                cells[c] = _num_json(f"reporter[{n}]") if n > 0 else "'null'"
            elif c in PG_TEXT_COLUMNS:
                cells[c] = f"coalesce({PG_TEXT_COLUMNS[c]}, 'null')"
            else:
                cells[c] = "'null'"
        # each cell's JSON text by DuckDB (one projection, in the rows' order), then each column's
        # object joined in Arrow: no sort and no per-cell Python
        name = "_protein_rows"
        self.con.register(name, matched)
        try:
            texts = self.con.sql(
                "SELECT " + ", ".join(f"coalesce({cells[c]}, 'null') AS c{k}" for k, c in enumerate(out)) + f" FROM {name}"
            ).to_arrow_table()
        finally:
            self.con.unregister(name)
        return _columns_json(out, texts)



def _columns_json(names: Sequence[str], texts: pa.Table) -> bytes:
    """``{"name": {"0": cell, "1": cell, ...}, ...}`` (pandas' "columns" shape) from a table of JSON
    texts, column ``k`` holding ``names[k]``'s cells in row order."""
    n = texts.num_rows
    keys = pa.array([f'"{i}":' for i in range(n)], pa.string())
    whole = pa.array([0, n], pa.int32())
    parts = []
    for k, c in enumerate(names):
        cells = pc.binary_join_element_wise(keys, texts.column(k).combine_chunks(), "")
        body = pc.binary_join(pa.ListArray.from_arrays(whole, cells), ",")[0].as_py()
        parts.append(f"{json.dumps(c)}:{{{body}}}")
    return ("{" + ",".join(parts) + "}").encode()


def _names_sql(remove_con: bool, remove_rev: bool) -> str:
    """Protein groups of the runs in the one list parameter, averaged per (IDs, headers)."""
    where = ["run_id IN (SELECT unnest(?::INTEGER[]))"]
    if remove_con:
        where.append("NOT contaminant AND majority_ids NOT LIKE 'CON\\_\\_%' ESCAPE '\\'")
    if remove_rev:
        where.append("NOT reverse AND majority_ids NOT LIKE 'REV\\_\\_%' ESCAPE '\\'")
    return (
        "SELECT majority_ids, fasta_headers, avg(score) AS score, avg(intensity) AS intensity"
        f" FROM protein_groups WHERE {' AND '.join(where)} GROUP BY majority_ids, fasta_headers"
    )
