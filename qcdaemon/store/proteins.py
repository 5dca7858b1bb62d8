"""Protein groups, stored columnar: typed columns for what the routes filter and average on, the
original's other standard columns as JSON text, and each group's id in the protein dictionary
(``proteins``: each (IDs, headers) pair once); the ``/api/protein-names`` and
``/api/protein-groups`` answers assembled by DuckDB from integer ids first."""

from __future__ import annotations

import dataclasses
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
_CON = "'CON\\_\\_%' ESCAPE '\\'"  # SQL LIKE patterns: the IDs of a contaminant, of a reversed sequence
_REV = "'REV\\_\\_%' ESCAPE '\\'"


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

@dataclasses.dataclass
class _KnownProteins:
    """The protein dictionary as the writer last saw it: (IDs, headers) -> id, the largest id, and
    the transaction that added pairs not yet seen committed."""

    ids: dict[tuple[str, str | None], int]
    top: int
    unsure_tx: int | None = None  # the transaction that added pairs to this copy, until one after it ran


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

    def insert_arrow(self, table: str, batch: pa.Table) -> None:
        """A batch of protein groups gets each row's protein id (``pid``, migration ``protein_dictionary``)
        appended before it is inserted, whichever write method inserts it; other tables as usual."""
        if table == "protein_groups" and "pid" not in batch.column_names:
            batch = batch.append_column("pid", self._protein_ids(batch))
        super().insert_arrow(table, batch)

    def _protein_ids(self, batch: pa.Table) -> pa.Array:
        """Each row's id in ``proteins`` by (majority IDs, headers), new pairs added in the caller's
        transaction.  The pairs known so far are kept in memory (one writer adds them); pairs this
        copy added are checked against the table once a later transaction runs (they are gone if
        theirs rolled back, and ids are never reused): a stale copy is read again."""
        keys = list(zip(batch["majority_ids"].to_pylist(), batch["fasta_headers"].to_pylist(), strict=True))
        known = self._known_proteins()
        new = [k for k in dict.fromkeys(keys) if k not in known.ids]
        if new:
            added = self.con.execute(
                "INSERT INTO proteins SELECT nextval('seq_proteins'), m, f, m LIKE " + _CON + ", m LIKE " + _REV +
                " FROM (SELECT unnest(?::VARCHAR[]) AS m, unnest(?::VARCHAR[]) AS f)"
                " RETURNING pid, majority_ids, fasta_headers, txid_current()",
                [[k[0] for k in new], [k[1] for k in new]],
            ).fetchall()
            for pid, ids, headers, tx in added:
                known.ids[(ids, headers)] = int(pid)
                known.top = max(known.top, int(pid))
                known.unsure_tx = int(tx)
        return pa.array([known.ids[k] for k in keys], pa.int32())

    def _known_proteins(self) -> _KnownProteins:
        """The writer's copy of the dictionary, read once; checked against the table's row count and
        largest id (one statement) only while it holds pairs of a transaction not known to have
        committed (every call once a batch added pairs; none in the steady state of known proteins)."""
        known: _KnownProteins | None = self.__dict__.get("_proteins_known")
        if known is not None and known.unsure_tx is None:
            return known
        tx, count, top = self.con.execute(
            "SELECT txid_current(), count(*), coalesce(max(pid), 0) FROM proteins").fetchall()[0]
        if known is None or len(known.ids) != count or known.top != top:
            known = _KnownProteins({(r[1], r[2]): int(r[0]) for r in self.con.execute(
                "SELECT pid, majority_ids, fasta_headers FROM proteins").fetchall()}, int(top))
            self.__dict__["_proteins_known"] = known
        elif tx != known.unsure_tx:  # a later transaction sees every pair this copy added: they committed
            known.unsure_tx = None
        return known

    def protein_names(
        self, run_ids: Sequence[int], remove_con: bool, remove_rev: bool
    ) -> list[dict[str, Any]]:
        if not run_ids:
            return []
        return self.rows(
            f"{_names_sql(remove_con, remove_rev)} ORDER BY score DESC NULLS LAST, majority_ids, fasta_headers",
            [_int_list(run_ids)],
        )

    def selected_run_names(self, pipeline_id: int, data_range: int | None) -> list[tuple[int, str]]:
        """(id, name) of ``selected_runs``' runs, in its order: what the protein routes need, without
        a whole row a run (at 10,000 runs 10,000 dicts, whose freed small blocks Python keeps)."""
        limit = "" if data_range is None else f"LIMIT {min(max(int(data_range), 0), 2**62)}"
        rows = self.con.execute(
            "SELECT id, name FROM (SELECT id, name, acquired_at, created_at FROM runs WHERE pipeline_id = ?"
            f" AND superseded_by IS NULL ORDER BY coalesce(acquired_at, created_at) DESC, id DESC {limit})"
            " ORDER BY coalesce(acquired_at, created_at), id",
            [pipeline_id],
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

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
        """The ``/api/protein-groups`` answer (pandas "columns" shape) as JSON.  The names become
        protein ids first (the dictionary), so the one scan filters on an integer column before it
        reads any other; the same query gives each cell's JSON text (the reporter intensities as
        one list of texts a row), and each column's object is joined in Arrow: no per-cell Python.
        ``runs``: (run id, displayed RawFile)."""
        if not runs or not names:
            return b"{}"
        found = self.con.execute(
            "SELECT pid, to_json(majority_ids), coalesce(to_json(fasta_headers), 'null') FROM proteins"
            " WHERE majority_ids IN (SELECT unnest(?::VARCHAR[])) ORDER BY pid", [[str(n) for n in names]]
        ).fetchall()
        if not found:
            return b"{}"
        wanted = qcdata.protein_columns(columns)
        cells: dict[str, str] = {"Score": _num_json("g.score"), "Intensity": _num_json("g.intensity")}
        cells.update({c: f"coalesce(g.{PG_TEXT_COLUMNS[c]}, 'null')" for c in PG_TEXT_COLUMNS})
        cells = {c: sql for c, sql in cells.items() if c in wanted}  # only what was asked for
        with_reporter = any(c == qcdata.REPORTER_TOKEN or qcdata.reporter_channel(c) for c in wanted)
        reporter_sql = f", list_transform(g.reporter, lambda x: {_num_json('x')}) AS _reporter" if with_reporter else ""
        # the groups alone: the run's and the protein's texts are looked up in Arrow below (joined
        # in SQL, 100,000 rows of strings cost the query a third more at 10,000 runs)
        texts: pa.Table = self.con.sql(
            "SELECT g.run_id, g.pid" + "".join(f", {sql} AS \"{c}\"" for c, sql in cells.items()) + reporter_sql +
            " FROM protein_groups g"
            # the proteins' ids as constants: a filter in the scan, on one integer column, before
            # any other column of the row is read (an IN over a subquery would be a join after it)
            f" WHERE g.pid IN ({', '.join(str(int(r[0])) for r in found)})"
            " AND g.run_id IN (SELECT unnest(?::INTEGER[])) ORDER BY g.run_id, g.idx",
            params=[[int(r) for r, _ in runs]],
        ).to_arrow_table()
        if texts.num_rows == 0:
            return b"{}"
        texts = texts.combine_chunks()
        run_ids = texts["run_id"].chunk(0)
        run_at = pc.index_in(run_ids, value_set=pa.array([int(r) for r, _ in runs], pa.int32()))
        pid_at = pc.index_in(texts["pid"].chunk(0), value_set=pa.array([int(r[0]) for r in found], pa.int32()))
        cols_of: dict[str, pa.Array] = {
            "RawFile": pc.take(pa.array([json.dumps(f) for _, f in runs], pa.string()), run_at),
            "RunKey": pc.binary_join_element_wise('"rf', pc.cast(run_ids, pa.string()), '"', ""),
            "Majority protein IDs": pc.take(pa.array([r[1] for r in found], pa.string()), pid_at),
            "Fasta headers": pc.take(pa.array([r[2] for r in found], pa.string()), pid_at),
            **{c: texts[c].chunk(0) for c in cells},
        }
        if not reporter_sql:
            texts = texts.append_column("_reporter", pa.nulls(texts.num_rows, pa.list_(pa.string())))
        reporter = texts["_reporter"].combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(reporter), 0)
        width = int(pc.max(lengths).as_py() or 0)
        out = ["RawFile", "RunKey", "Majority protein IDs", *qcdata.expand_reporter(wanted, width)]
        nulls = pa.array(["null"] * texts.num_rows, pa.string())
        cols = []
        for c in out:
            n = qcdata.reporter_channel(c)
            if c in cols_of:
                cols.append(cols_of[c])
            elif n is not None and n > 0:
                cols.append(_list_item(reporter, lengths, n - 1, nulls))
            else:
                cols.append(nulls)
        return _columns_json(out, pa.table(cols, names=[f"c{k}" for k in range(len(out))]))



def _list_item(lists: pa.ListArray, lengths: pa.Array, i: int, missing: pa.Array) -> pa.Array:
    """Item ``i`` of each list, ``missing``'s item where a list is shorter (or null)."""
    flat = lists.flatten() if lists.null_count == 0 else pc.list_flatten(lists)
    has = pc.greater(lengths, i)
    starts = pc.subtract(pa.array(lists.offsets.to_numpy()[:-1]), lists.offsets[0])
    at = pc.if_else(has, pc.add(starts, i), 0)
    return pc.if_else(has, pc.take(flat, at) if len(flat) else missing, missing)


def _columns_json(names: Sequence[str], texts: pa.Table) -> bytes:
    """``{"name": {"0": cell, "1": cell, ...}, ...}`` (pandas' "columns" shape) from a table of JSON
    texts, column ``k`` holding ``names[k]``'s cells in row order.  Joined in Arrow from the cells
    up to the whole answer (Arrow's kernels run without the GIL), then copied out once: built in
    Python strings, the joins, decodes and the final encode held the GIL for tens of ms at 10,000
    runs, and every small request waited."""
    n = texts.num_rows
    keys = _row_keys(n)
    whole = pa.array([0, n], pa.int32())
    parts: list[pa.Scalar] = []
    for k, c in enumerate(names):
        cells = pc.binary_join_element_wise(keys, texts.column(k).combine_chunks(), "")
        parts += [pa.scalar(("{" if k == 0 else "},") + json.dumps(c) + ":{"),
                  pc.binary_join(pa.ListArray.from_arrays(whole, cells), ",")[0]]
    answer = pc.binary_join_element_wise(*parts, pa.scalar("}}"), "")
    return bytes(answer.as_buffer().to_pybytes())


_KEYS: list[pa.Array] = [pa.array([], pa.string())]


def _row_keys(n: int) -> pa.Array:
    """``"0":``, ``"1":``, ... for ``n`` rows (made once for the largest ``n`` asked, then sliced)."""
    keys = _KEYS[0]
    if len(keys) < n:
        keys = pa.array([f'"{i}":' for i in range(max(n, 2 * len(keys)))], pa.string())
        _KEYS[0] = keys
    return keys.slice(0, n)


def _names_sql(remove_con: bool, remove_rev: bool) -> str:
    """Protein groups of the runs in the one list parameter, averaged per (IDs, headers): grouped
    by protein id over the narrow columns, the dictionary's strings joined to the groups only."""
    where = ["run_id IN (SELECT unnest(?::INTEGER[]))"]
    names = ["TRUE"]
    if remove_con:
        where.append("NOT contaminant")
        names.append("NOT p.con_prefix")
    if remove_rev:
        where.append("NOT reverse")
        names.append("NOT p.rev_prefix")
    return (
        "SELECT p.majority_ids, p.fasta_headers, a.score, a.intensity FROM (SELECT pid, avg(score) AS score,"
        f" avg(intensity) AS intensity FROM protein_groups WHERE {' AND '.join(where)} GROUP BY pid) a"
        f" JOIN proteins p ON p.pid = a.pid WHERE {' AND '.join(names)}"
    )
