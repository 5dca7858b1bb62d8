"""Runs and what they hold: QC values, protein groups, chromatograms, PSMs."""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from qcdaemon.core.clock import utcnow
from qcdaemon.errors import NotFound
from qcdaemon.qc import qcdata
from qcdaemon.store.ledger import LedgerQueries
from qcdaemon.store.queue import QueueQueries
from qcdaemon.store.rows import LedgerKey, QcValue, RunRow

ACTIVE = ("queued", "running")
TERMINAL = ("done", "failed", "skipped", "cancelled")


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
_FALSY_JSON = frozenset({"null", '""', "0", "0.0", "-0.0", "false", "[]", "{}"})
_PG_FIXED = {"Fasta headers": "fasta_headers", "Score": "score", "Intensity": "intensity"}


def _json_default(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    raise TypeError(f"not JSON-able: {type(v).__name__}")


_SEP = "\x1f"  # never inside ensure_ascii JSON text: control characters are escaped there
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})


def _cells_json(values: list[Any]) -> list[str]:
    """Each value's JSON text as ``json.dumps`` gives it (non-finite numbers as null, as the API
    answers them), for a whole column in one C-encoder call: the list is encoded with a separator
    that cannot occur inside the encoding, then split."""
    if not values:
        return []
    text = json.dumps(values, separators=(_SEP, ":"), default=_json_default)
    cells = text[1:-1].split(_SEP)
    if len(cells) != len(values):  # a list or dict value: its inner separators split too
        cells = [json.dumps(v, default=_json_default) for v in values]
    return [("null" if c in _NON_FINITE else c) for c in cells] if "N" in text or "I" in text else cells


def _num_json(col: str) -> str:
    """SQL: a DOUBLE as JSON text.  DuckDB's DOUBLE -> VARCHAR cast is the shortest round-trip form,
    textually the same as Python's ``repr`` (so as ``json.dumps``); NaN, infinities and NULL -> null."""
    return f"CASE WHEN isfinite({col}) THEN CAST({col} AS VARCHAR) ELSE 'null' END"


def _int_list(ids: Sequence[int]) -> list[int]:
    return [int(i) for i in ids]


class RunQueries(QueueQueries, LedgerQueries):
    # -- runs -------------------------------------------------------------------------------

    def create_run(
        self,
        pipeline_id: int,
        name: str,
        *,
        source: str,
        owner_id: int | None,
        stored_path: str | None = None,
        size: int | None = None,
        sha256: str | None = None,
        stages: Sequence[str | tuple[str, str | None]] = (),
        state: str = "queued",
        acquired_at: dt.datetime | None = None,
        ledger: LedgerKey | None = None,
    ) -> RunRow:
        """Create a run, its queued stages and (optionally) its ledger row in one transaction."""
        with self.transaction():
            rid = self.next_id("seq_runs")
            now = utcnow()
            self.execute(
                "INSERT INTO runs (id, pipeline_id, name, stored_path, source, size, sha256, owner_id, created_at,"
                " acquired_at, flagged, use_downstream, state, change_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false, true, ?, nextval('seq_changes'))",
                [rid, pipeline_id, name, stored_path, source, size, sha256, owner_id, now, acquired_at, state],
            )
            for seq, stage in enumerate(stages, start=1):
                name, skip = (stage, None) if isinstance(stage, str) else stage
                self.execute(
                    "INSERT INTO stages (run_id, stage, seq, state, queued_at, ended_at, error)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [rid, name, seq, "skipped" if skip else "queued", now, now if skip else None, skip],
                )
            if stages:
                self._refresh_run(rid)
            if ledger is not None:
                self._ledger_insert(ledger, state=str(self.scalar("SELECT state FROM runs WHERE id = ?", [rid])), run_id=rid)
        return self.run(rid)

    def run(self, run_id: int) -> RunRow:
        r = self.row(
            "SELECT r.*, 'rf' || r.id AS run_key, u.email AS owner_email, pl.uuid AS pipeline_uuid,"
            " pl.slug AS pipeline_slug, p.slug AS project_slug FROM runs r"
            " JOIN pipelines pl ON pl.id = r.pipeline_id JOIN projects p ON p.id = pl.project_id"
            " LEFT JOIN users u ON u.id = r.owner_id WHERE r.id = ?",
            [run_id],
        )
        if r is None:
            raise NotFound(f"run rf{run_id} does not exist")
        return r

    def runs_of(self, pipeline_id: int) -> list[RunRow]:
        return self.rows(
            "SELECT r.*, 'rf' || r.id AS run_key, u.email AS owner_email FROM runs r"
            " LEFT JOIN users u ON u.id = r.owner_id WHERE r.pipeline_id = ? ORDER BY r.id",
            [pipeline_id],
        )

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything recorded for it (its files on disk are the caller's)."""
        with self.transaction():
            for table in ("qc_values", "qc_cells", "protein_groups", "chromatograms", "psms", "stages",
                          "qc_verdicts", "qc_exclusions"):
                self.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            self.execute("DELETE FROM files WHERE run_id = ?", [run_id])
            self.execute("DELETE FROM runs WHERE id = ?", [run_id])

    def failed_runs_of_path(self, path: str, exclude_run_id: int) -> list[int]:
        """Earlier runs of a watched file whose first stage failed (e.g. it was read while truncated)."""
        rows = self.rows(
            "SELECT DISTINCT r.id FROM files f JOIN runs r ON r.id = f.run_id"
            " JOIN stages s ON s.run_id = r.id AND s.stage = 'native' AND s.state = 'failed'"
            " WHERE f.path = ? AND r.id <> ? AND r.superseded_by IS NULL ORDER BY r.id",
            [path, exclude_run_id],
        )
        return [int(r["id"]) for r in rows]

    def supersede_runs(self, run_ids: Sequence[int], by_run_id: int) -> None:
        self.set_run_fields(list(run_ids), {"superseded_by": by_run_id})

    def run_has_values(self, run_id: int) -> bool:
        return self.scalar("SELECT count(*) FROM qc_values WHERE run_id = ?", [run_id]) > 0

    def set_run_fields(self, run_ids: Sequence[int], fields: Mapping[str, Any]) -> None:
        if not run_ids or not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        marks = ", ".join("?" * len(run_ids))
        self.execute(f"UPDATE runs SET {cols}, change_seq = nextval('seq_changes') WHERE id IN ({marks})",
                     [*fields.values(), *run_ids])

    def pipeline_uploaders(self, pipeline_id: int) -> list[str]:
        rows = self.rows(
            "SELECT DISTINCT u.email FROM runs r JOIN users u ON u.id = r.owner_id"
            " WHERE r.pipeline_id = ? ORDER BY u.email",
            [pipeline_id],
        )
        return [r["email"] for r in rows]

    def selected_runs(self, pipeline_id: int, data_range: int | None) -> list[RunRow]:
        """The pipeline's runs, oldest to newest by acquisition (then ingestion) time; the newest N."""
        limit = "" if data_range is None else f"LIMIT {min(max(int(data_range), 0), 2**62)}"
        return self.rows(
            "SELECT * FROM (SELECT r.*, 'rf' || r.id AS run_key, u.email AS owner_email FROM runs r"
            " LEFT JOIN users u ON u.id = r.owner_id WHERE r.pipeline_id = ? AND r.superseded_by IS NULL"
            f" ORDER BY coalesce(r.acquired_at, r.created_at) DESC, r.id DESC {limit})"
            " ORDER BY coalesce(acquired_at, created_at), id",
            [pipeline_id],
        )

    # -- QC values --------------------------------------------------------------------------

    def put_qc_values(self, run_id: int, source: str, values: dict[str, Any]) -> None:
        """Replace the run's values from one source (idempotent: a re-run stage overwrites)."""
        with self.transaction():
            self._replace_qc_values(run_id, source, values)

    def _replace_qc_values(self, run_id: int, source: str, values: dict[str, Any]) -> None:
        n = len(values)
        batch = pa.table({
            "run_id": pa.array([run_id] * n, pa.int32()),
            "source": pa.array([source] * n, pa.string()),
            "ord": pa.array(range(n), pa.int32()),
            "name": pa.array(list(values), pa.string()),
            "value": pa.array([json.dumps(v, default=_json_default, allow_nan=False) for v in values.values()],
                              pa.string()),
        })
        self.execute("DELETE FROM qc_values WHERE run_id = ? AND source = ?", [run_id, source])
        if n:
            self._insert_arrow("qc_values", batch)
        self._refresh_cells(run_id)
        self.execute("UPDATE runs SET change_seq = nextval('seq_changes') WHERE id = ?", [run_id])  # the cursor

    def _refresh_cells(self, run_id: int) -> None:
        """Re-merge the run's values into ``qc_cells`` (migration 4 says how; same SQL, one run)."""
        self.execute("DELETE FROM qc_cells WHERE run_id = ?", [run_id])
        self.execute(_CELLS_SQL, [run_id])

    def _insert_arrow(self, table: str, batch: pa.Table) -> None:
        """One INSERT of a whole Arrow batch (columns in the table's order), not row by row."""
        name = f"_batch_{table}"
        self.con.register(name, batch)
        try:
            self.execute(f"INSERT INTO {table} SELECT * FROM {name}")
        finally:
            self.con.unregister(name)

    def qc_values(self, run_ids: Sequence[int]) -> list[QcValue]:
        """(run_id, source, name, value) for the runs, in each source's column order."""
        if not run_ids:
            return []
        marks = ", ".join("?" * len(run_ids))
        rows = self.con.execute(
            f"SELECT run_id, source, name, value FROM qc_values WHERE run_id IN ({marks})"
            " ORDER BY run_id, source, ord",
            list(run_ids),
        ).fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3]) if r[3] is not None else None) for r in rows]

    def qc_data_json(self, pipeline_id: int, data_range: int | None, columns: Sequence[str] | None,
                     verdicts: Mapping[int, tuple[str, str]] | None = None) -> bytes:
        """The ``/api/qc-data`` answer as JSON, built in SQL: the run selection, the merge of each
        run's sources (``qcdata.merge_run_values``' precedence), the run metadata and calendar
        columns, and one JSON array per column by ``string_agg`` over the stored JSON texts (no
        value is parsed or re-encoded in Python).  Same answer as ``qcdata.build_qc_data``;
        ``verdicts`` (run id -> verdict, reasons) fill ``Verdict`` and ``Verdict reasons``."""
        limit = "" if data_range is None else f"LIMIT {min(max(int(data_range), 0), 2**62)}"
        sel = (
            "sel AS (SELECT r.*, row_number() OVER (ORDER BY coalesce(r.acquired_at, r.created_at), r.id) AS pos"
            " FROM (SELECT id, name, stored_path, acquired_at, created_at, flagged, use_downstream, state, owner_id"
            " FROM runs WHERE pipeline_id = ? AND superseded_by IS NULL"  # as selected_runs (issue 11)
            f" ORDER BY coalesce(acquired_at, created_at) DESC, id DESC {limit}) r)"
        )
        quoted = "'\"' || {} || '\"'"
        year = "lpad(CAST(year(s.acquired_at) AS VARCHAR), 4, '0')"
        meta_cells = {
            "RawFile": "to_json(CASE WHEN lower(s.name) LIKE '%.raw' THEN left(s.name, length(s.name) - 4)"
                       " ELSE s.name END)",
            "Index": "CAST(s.pos AS VARCHAR)",
            "DateAcquired": "coalesce(CAST(epoch_us(s.acquired_at) * 1000 AS VARCHAR), 'null')",
            "RunKey": "'\"rf' || s.id || '\"'",
            "Flagged": "CASE WHEN s.flagged THEN 'true' ELSE 'false' END",
            "Use Downstream": "CASE WHEN s.use_downstream IS NULL THEN 'null' WHEN s.use_downstream THEN 'true'"
                              " ELSE 'false' END",
            "Uploader": "coalesce(to_json(u.email), 'null')",
            "State": "coalesce(to_json(s.state), 'null')",
            "MetricsEngine": "CASE e.engine WHEN 2 THEN '\"rawtools\"' WHEN 1 THEN '\"native\"' ELSE 'null' END",
            # spec 3.1 item 4: Date, Day (day of year), Week (ISO week, calendar year), Month, Year
            "Date": quoted.format("strftime(s.acquired_at, '%Y-%m-%d')"),
            "Day": quoted.format(f"{year} || '-' || lpad(CAST(dayofyear(s.acquired_at) AS VARCHAR), 3, '0')"),
            "Week": quoted.format(f"{year} || '-' || lpad(CAST(week(s.acquired_at) AS VARCHAR), 2, '0')"),
            "Month": quoted.format("strftime(s.acquired_at, '%Y-%m')"),
            "Year": quoted.format(year),
        }
        calendar = {"Date", "Day", "Week", "Month", "Year"}
        select = ", ".join(
            f"coalesce({cell}, 'null')" if name in calendar else cell for name, cell in meta_cells.items()
        )
        with self.transaction():  # one snapshot for both queries
            meta = self.con.sql(
                f"WITH {sel}, eng AS (SELECT q.run_id, max(CASE q.source WHEN 'rawtools' THEN 2 WHEN 'native' THEN 1"
                " END) AS engine FROM qc_values q WHERE q.run_id IN (SELECT id FROM sel) GROUP BY q.run_id)"
                f" SELECT s.stored_path, s.id, {select}"
                " FROM sel s LEFT JOIN users u ON u.id = s.owner_id LEFT JOIN eng e ON e.run_id = s.id ORDER BY s.pos",
                params=[pipeline_id],
            ).to_arrow_table()
            n = meta.num_rows
            if n == 0:
                return b"{}"
            cells = self.con.sql(
                f"WITH {sel} SELECT c.name, s.pos, c.value, c.okey FROM qc_cells c JOIN sel s ON s.id = c.run_id",
                params=[pipeline_id],
            ).to_arrow_table()
        names, arrays, raw_path = _value_arrays(cells, n)
        paths = meta.column(0).to_pylist()
        if verdicts is not None:  # one pair per run (a verdict is per run, not per cell)
            got = [verdicts.get(rid) for rid in meta.column(1).to_pylist()]
            arrays["Verdict"] = ",".join(json.dumps(v[0]) if v else "null" for v in got)
            arrays["Verdict reasons"] = ",".join(json.dumps(v[1]) if v else "null" for v in got)
        whole = pa.array([0, n], pa.int32())
        for i, name in enumerate(meta_cells, start=2):  # each run-metadata column joined in one call
            arrays[name] = pc.binary_join(pa.ListArray.from_arrays(whole, meta.column(i).combine_chunks()), ",")[0].as_py()
        arrays["RawFilePath"] = ",".join(  # RawTools' own folder, else the stored file's
            t if t not in _FALSY_JSON else json.dumps(qcdata.dirname(paths[i])) for i, t in enumerate(raw_path))
        order = qcdata.column_order(names)
        return qcdata.assemble_json(list(columns) if columns is not None else order, arrays, n)

    # -- protein groups and chromatograms ------------------------------------------------------

    def put_protein_groups(self, run_id: int, groups: Iterable[Any], *, first_idx: int = 0) -> int:
        """Replace the run's protein groups (an Arrow batch insert, not row by row): typed columns
        for what the routes filter and average on, JSON text for the original's other standard columns.
        With ``first_idx`` > 0, add a further batch numbered from there (a large table in parts)."""
        table = self._protein_table(run_id, list(groups), first_idx)
        with self.transaction():
            if first_idx == 0:
                self._replace_protein_groups(run_id, table)
            elif table.num_rows:
                self._insert_arrow("protein_groups", table)
        return table.num_rows

    def _protein_table(self, run_id: int, groups: Sequence[Any], first_idx: int = 0) -> pa.Table:
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
            self._insert_arrow("protein_groups", table)

    def put_maxquant(self, run_id: int, values: dict[str, Any], groups: Iterable[Any]) -> int:
        """A MaxQuant stage's whole result, its QC values and protein groups, in one transaction."""
        table = self._protein_table(run_id, list(groups))
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

    # -- identifications of the search stage ----------------------------------------------------

    def put_psms(self, run_id: int, table: pa.Table) -> int:
        """Replace the run's PSMs with ``table`` (columns named as in ``psms``, without run_id; Arrow insert)."""
        batch = table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.int32()))
        with self.transaction():
            self.execute("DELETE FROM psms WHERE run_id = ?", [run_id])
            self.con.register("psm_batch", batch)
            try:
                self.execute("INSERT INTO psms BY NAME SELECT * FROM psm_batch")
            finally:
                self.con.unregister("psm_batch")
        return table.num_rows

    def psms(self, run_id: int) -> pa.Table:
        """The run's PSMs (targets and decoys with their q-values) in scan order."""
        cursor = self.con.cursor()  # a relation needs a connection without a pending result
        try:
            return cursor.sql("SELECT * EXCLUDE (run_id) FROM psms WHERE run_id = ? ORDER BY scan",
                              params=[run_id]).to_arrow_table()
        finally:
            cursor.close()

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
            " WHERE g.majority_ids IN (SELECT unnest(?::VARCHAR[])) ORDER BY g.run_id, g.idx",
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
        parts = " || ',' || ".join(
            f"{_sql_str(json.dumps(c) + ':{')} || string_agg('\"' || i || '\":' || {cells[c]}, ',' ORDER BY i) || '}}'"
            for c in out
        )
        name = "_protein_rows"
        self.con.register(name, matched.append_column("i", pa.array(range(matched.num_rows), pa.int64())))
        try:
            rows = self.con.execute(f"SELECT '{{' || {parts} || '}}' FROM {name}").fetchall()
        finally:
            self.con.unregister(name)
        return str(rows[0][0]).encode() if rows else b"{}"

    def put_chromatograms(self, run_id: int, chroms: dict[str, list[tuple[float, float]]]) -> None:
        with self.transaction():
            self.execute("DELETE FROM chromatograms WHERE run_id = ?", [run_id])
            for name, points in chroms.items():
                self.execute(
                    "INSERT INTO chromatograms VALUES (?, ?, ?, ?)",
                    [run_id, name, [float(p[0]) for p in points], [float(p[1]) for p in points]],
                )

    def chromatograms(self, run_id: int) -> dict[str, dict[str, list[float]]]:
        rows = self.rows("SELECT name, rt, intensity FROM chromatograms WHERE run_id = ? ORDER BY name", [run_id])
        return {r["name"]: {"rt": r["rt"], "intensity": r["intensity"]} for r in rows}


_CELLS_SQL = (
    "INSERT INTO qc_cells SELECT run_id, name, arg_max(value, (CASE source WHEN 'native' THEN 1"
    " WHEN 'rawtools' THEN CASE WHEN value <> 'null' THEN 2 ELSE 0 END ELSE 3 END, source)), min(okey)"
    " FROM (SELECT run_id, name, source, coalesce(value, 'null') AS value,"
    " CASE source WHEN 'native' THEN 0 WHEN 'rawtools' THEN 1"
    " ELSE 2 + dense_rank() OVER (PARTITION BY run_id ORDER BY source) END * 10000000 + ord AS okey"
    " FROM qc_values WHERE run_id = ?) GROUP BY run_id, name"
)


def _value_arrays(cells: pa.Table, n: int) -> tuple[list[str], dict[str, str], list[str]]:
    """From merged cells (name, pos 1..n, JSON text, order key): the value names in first-seen
    order, each name's JSON array body, and the RawFilePath cells per run.  Vectorised in Arrow:
    cells are laid out by (name, pos), each name's run of cells joined by one ``binary_join``."""
    if cells.num_rows == 0:
        return [], {}, ["null"] * n
    enc = pc.dictionary_encode(cells["name"]).combine_chunks()
    k = pc.cast(enc.indices, pa.int64())
    names: list[str] = enc.dictionary.to_pylist()
    pos0 = pc.subtract(pc.cast(cells["pos"].combine_chunks(), pa.int64()), 1)
    order = pc.sort_indices(pc.add(pc.multiply(k, n), pos0))
    values = pc.take(cells["value"].combine_chunks(), order)
    counts = [0] * len(names)
    vc = pc.value_counts(k)
    for key, count in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
        counts[key] = count
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values), ",").to_pylist()
    first = pa.table({"k": k, "c": pc.add(pc.multiply(pc.cast(cells["pos"], pa.int64()), 1 << 32),
                                          cells["okey"])}).group_by("k").aggregate([("c", "min")])
    rank = dict(zip(first["k"].to_pylist(), first["c_min"].to_pylist(), strict=True))
    arrays: dict[str, str] = {}
    raw_path = ["null"] * n
    sorted_pos: list[int] | None = None
    for i, name in enumerate(names):
        if counts[i] == n and name != "RawFilePath":
            arrays[name] = joined[i]
            continue
        if sorted_pos is None:
            sorted_pos = pc.take(pos0, order).to_pylist()
        filled = ["null"] * n
        lo, hi = offsets[i], offsets[i + 1]
        for p, t in zip(sorted_pos[lo:hi], values.slice(lo, hi - lo).to_pylist(), strict=True):
            filled[p] = t
        if name == "RawFilePath":
            raw_path = filled
        else:
            arrays[name] = ",".join(filled)
    return [names[i] for i in sorted(range(len(names)), key=rank.__getitem__)], arrays, raw_path


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


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
