"""QC values: each source's values of a run, their merge into ``qc_cells`` at ingest, and the
``/api/qc-data`` answer built from the merged cells in SQL and Arrow."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qcdaemon.qc import qcdata
from qcdaemon.store.base import StoreBase
from qcdaemon.store.rows import QcValue

_FALSY_JSON = frozenset({"null", '""', "0", "0.0", "-0.0", "false", "[]", "{}"})


def json_default(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    raise TypeError(f"not JSON-able: {type(v).__name__}")


_META_CELLS = {  # the run-metadata columns of /api/qc-data, each as a JSON text in SQL
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
    # spec 3.1 item 4: Date, Day (day of year), Week (ISO week, calendar year), Month, Year, each
    # one strftime with the JSON quotes in its format (%Y is zero-padded to 4 digits, %j to 3,
    # %V is the ISO week): one function a cell, not a dozen, which the optimizer's expression
    # rewriter took 4 ms of a 30 ms qc-data answer to go over
    "Date": "strftime(s.acquired_at, '\"%Y-%m-%d\"')",
    "Day": "strftime(s.acquired_at, '\"%Y-%j\"')",
    "Week": "strftime(s.acquired_at, '\"%Y-%V\"')",
    "Month": "strftime(s.acquired_at, '\"%Y-%m\"')",
    "Year": "strftime(s.acquired_at, '\"%Y\"')",
}
_CALENDAR = {"Date", "Day", "Week", "Month", "Year"}
# the stored path and the run id (as JSON texts: parsed back per run), then the columns above, every
# cell a non-null JSON text; named with a prefix no value name has (a control character)
_META_EXPRS = ["coalesce(to_json(s.stored_path), 'null')", "CAST(s.id AS VARCHAR)", *(
    f"coalesce({cell}, 'null')" if name in _CALENDAR else cell for name, cell in _META_CELLS.items())]
_META_KEYS = ["\x01stored_path", "\x01id", *("\x01" + name for name in _META_CELLS)]
_META_SET = frozenset(_META_KEYS)


class QcValueQueries(StoreBase):
    # -- QC values --------------------------------------------------------------------------

    def put_qc_values(self, run_id: int, source: str, values: dict[str, Any]) -> None:
        """Replace the run's values from one source (idempotent: a re-run stage overwrites)."""
        with self.transaction():
            self._replace_qc_values(run_id, source, values)

    def _replace_qc_values(self, run_id: int, source: str, values: dict[str, Any]) -> None:
        """The run's values are taken out in one statement (a DELETE that returns them), the other
        sources' put back with this source's in one Arrow batch, then the run's merged cells.  A run's
        first source deletes no cells: no value means no cell (cells are derived from values)."""
        names = list(values)
        texts = [json.dumps(v, default=json_default, allow_nan=False) for v in values.values()]
        old = self.write_tuples("DELETE FROM qc_values WHERE run_id = ? RETURNING source, name, value, ord", [run_id])
        if old:
            self.execute("DELETE FROM qc_cells WHERE run_id = ?", [run_id])
        rows = [(source, name, text, i) for i, (name, text) in enumerate(zip(names, texts, strict=True))]
        rows += [r for r in old if r[0] != source]
        if rows:
            self.insert_arrow("qc_values", pa.table({
                "run_id": pa.array([run_id] * len(rows), pa.int32()),
                "source": pa.array([r[0] for r in rows], pa.string()),
                "ord": pa.array([r[3] for r in rows], pa.int32()), "name": pa.array([r[1] for r in rows], pa.string()),
                "value": pa.array([r[2] for r in rows], pa.string()),
            }))
        cells = merge_cells(rows)
        if cells:
            self.insert_arrow("qc_cells", pa.table({
                "run_id": pa.array([run_id] * len(cells), pa.int32()),
                "name": pa.array(list(cells), pa.string()),
                "value": pa.array([c[0] for c in cells.values()], pa.string()),
                "okey": pa.array([c[1] for c in cells.values()], pa.int64()),
            }))
        # the change cursor (store/changes.py); through ``execute``, so it also bumps the data version
        self.execute("UPDATE runs SET change_seq = nextval('seq_changes') WHERE id = ?", [run_id])

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
        # one statement (one snapshot): the merged cells, and each run's metadata cells under the
        # names of _META_KEYS (so the same Arrow pass lays out both)
        cells = self.con.sql(
            f"WITH {sel}, eng AS (SELECT q.run_id, max(CASE q.source WHEN 'rawtools' THEN 2 WHEN 'native' THEN 1"
            " END) AS engine FROM qc_values q WHERE q.run_id IN (SELECT id FROM sel) GROUP BY q.run_id)"
            " SELECT c.name, s.pos, c.value, c.okey FROM qc_cells c JOIN sel s ON s.id = c.run_id UNION ALL"
            f" SELECT unnest(?::VARCHAR[]), s.pos, unnest([{', '.join(_META_EXPRS)}]), 0"
            " FROM sel s LEFT JOIN users u ON u.id = s.owner_id LEFT JOIN eng e ON e.run_id = s.id",
            params=[pipeline_id, _META_KEYS],
        ).to_arrow_table()
        if cells.num_rows == 0:
            return b"{}"
        n = int(pc.max(cells["pos"]).as_py())
        names, arrays, raw_path = _value_arrays(cells, n)
        meta = {k[1:]: _text(arrays.pop(k)) for k in _META_KEYS}  # a run's worth each: as Python text
        names = [x for x in names if x not in _META_SET]
        paths = json.loads("[" + meta.pop("stored_path") + "]")
        ids = json.loads("[" + meta.pop("id") + "]")
        if verdicts is not None:  # one pair per run (a verdict is per run, not per cell)
            got = [verdicts.get(rid) for rid in ids]
            arrays["Verdict"] = ",".join(json.dumps(v[0]) if v else "null" for v in got)
            arrays["Verdict reasons"] = ",".join(json.dumps(v[1]) if v else "null" for v in got)
        arrays.update(meta)  # the run-metadata columns over values of the same name
        arrays["RawFilePath"] = ",".join(  # RawTools' own folder, else the stored file's
            t if t not in _FALSY_JSON else json.dumps(qcdata.dirname(paths[i])) for i, t in enumerate(raw_path))
        order = qcdata.column_order(names)
        return _assemble(list(columns) if columns is not None else order, arrays, n)


def _text(body: str | pa.Scalar) -> str:
    return body if isinstance(body, str) else str(body.as_py())


def _assemble(columns: Sequence[str], arrays: Mapping[str, str | pa.Scalar], n: int) -> bytes:
    """``qcdata.assemble_json``'s answer, joined in Arrow (the value columns stay Arrow scalars to
    the end, and Arrow's kernels run without the GIL) and copied out once: built as Python strings,
    the 15 MB answer of 10,000 runs was copied and re-encoded three times holding the GIL."""
    if n == 0:
        return b"{}"
    nulls = pa.scalar(",".join(["null"] * n))
    parts: list[pa.Scalar] = []
    for k, c in enumerate(dict.fromkeys(columns)):
        parts.append(pa.scalar(("{" if k == 0 else "],") + json.dumps(c) + ":["))
        body = arrays.get(c, nulls)
        parts.append(body if isinstance(body, pa.Scalar) else pa.scalar(body))
    if not parts:
        return b"{}"
    parts.append(pa.scalar("]}"))
    return bytes(pc.binary_join_element_wise(*parts, "").as_buffer().to_pybytes())


def merge_cells(rows: Sequence[tuple[str, str, str | None, int]]) -> dict[str, tuple[str, int]]:
    """One run's values, (source, name, JSON text, position in its source), merged as migration 4
    (``qc_cells``) does in SQL: per name the value of the source ranked highest, (another source
    over native over RawTools' nulls; RawTools' non-null values over native's; among the other
    sources the alphabetically last), and the key that orders the columns (the smallest of
    native 0, RawTools 1, the other sources 2 + their rank by name, times 10^7, plus the position).
    Same answer as ``qcdata.merge_run_values``; tests hold the two equal."""
    rank = {s: i for i, s in enumerate(sorted({r[0] for r in rows}), start=1)}
    best: dict[str, tuple[tuple[int, str], str, int]] = {}
    for source, name, value, ord_ in rows:
        text = "null" if value is None else value
        if source == "native":
            prio, base = 1, 0
        elif source == "rawtools":
            prio, base = (2 if text != "null" else 0), 1
        else:
            prio, base = 3, 2 + rank[source]
        okey = base * 10_000_000 + ord_
        got = best.get(name)
        if got is None:
            best[name] = ((prio, source), text, okey)
        else:
            win = (prio, source) > got[0]
            best[name] = ((prio, source) if win else got[0], text if win else got[1], min(okey, got[2]))
    return {name: (b[1], b[2]) for name, b in best.items()}


def _value_arrays(cells: pa.Table, n: int) -> tuple[list[str], dict[str, str | pa.Scalar], list[str]]:
    """From merged cells (name, pos 1..n, JSON text, order key): the value names in first-seen
    order, each name's JSON array body, and the RawFilePath cells per run.  Vectorised: each cell
    is scattered to its place in a (name x run) grid (one cell per name and run; an empty place is
    ``null``), and each name's row of the grid is joined by one ``binary_join``: no sort, and no
    per-cell Python for a name that some runs lack."""
    if cells.num_rows == 0:
        return [], {}, ["null"] * n
    enc = pc.dictionary_encode(cells["name"]).combine_chunks()
    names: list[str] = enc.dictionary.to_pylist()
    k = enc.indices.to_numpy().astype(np.int64)
    pos = cells["pos"].to_numpy().astype(np.int64)
    at = np.full(len(names) * n, -1, dtype=np.int64)
    at[k * n + pos - 1] = np.arange(cells.num_rows, dtype=np.int64)
    grid = pc.fill_null(pc.take(cells["value"].combine_chunks(), pa.array(at, mask=at < 0)), "null")
    rows = pa.ListArray.from_arrays(pa.array(np.arange(0, len(names) * n + 1, n, dtype=np.int32)), grid)
    joined = pc.binary_join(rows, ",")  # kept in Arrow: scalars into the answer's one join
    first = pa.table({"k": enc.indices, "c": pc.add(pc.multiply(pa.array(pos), 1 << 32), cells["okey"])}
                     ).group_by("k", use_threads=False).aggregate([("c", "min")])
    rank = dict(zip(first["k"].to_pylist(), first["c_min"].to_pylist(), strict=True))
    arrays: dict[str, str | pa.Scalar] = {name: joined[i] for i, name in enumerate(names)}
    raw_path = ["null"] * n
    if "RawFilePath" in arrays:
        i = names.index("RawFilePath")
        raw_path = grid.slice(i * n, n).to_pylist()
        del arrays["RawFilePath"]
    return [names[i] for i in sorted(range(len(names)), key=rank.__getitem__)], arrays, raw_path
