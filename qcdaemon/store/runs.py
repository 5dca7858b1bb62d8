"""Runs and what they hold: QC values, protein groups, chromatograms, PSMs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from qcdaemon.core.clock import utcnow
from qcdaemon.errors import NotFound
from qcdaemon.store.ledger import LedgerQueries
from qcdaemon.store.queue import QueueQueries
from qcdaemon.store.rows import LedgerKey, QcValue, RunRow

ACTIVE = ("queued", "running")
TERMINAL = ("done", "failed", "skipped", "cancelled")


def _json_default(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    raise TypeError(f"not JSON-able: {type(v).__name__}")


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
                " acquired_at, flagged, use_downstream, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false, true, ?)",
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
            for table in ("qc_values", "protein_groups", "chromatograms", "psms", "stages", "qc_verdicts", "qc_exclusions"):
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
        self.execute(f"UPDATE runs SET {cols} WHERE id IN ({marks})", [*fields.values(), *run_ids])

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
        rows = [
            (run_id, source, i, name, json.dumps(v, default=_json_default, allow_nan=False))
            for i, (name, v) in enumerate(values.items())
        ]
        with self.transaction():
            self.execute("DELETE FROM qc_values WHERE run_id = ? AND source = ?", [run_id, source])
            if rows:
                self.con.executemany("INSERT INTO qc_values VALUES (?, ?, ?, ?, ?)", rows)

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

    # -- protein groups and chromatograms ------------------------------------------------------

    def put_protein_groups(self, run_id: int, groups: Iterable[Any], *, first_idx: int = 0) -> int:
        """Replace the run's protein groups (an Arrow batch insert, not row by row); with
        ``first_idx`` > 0, add a further batch numbered from there (a large table in parts)."""
        groups = list(groups)
        table = pa.table(
            {
                "run_id": pa.array([run_id] * len(groups), pa.int32()),
                "idx": pa.array(range(first_idx, first_idx + len(groups)), pa.int32()),
                "majority_ids": [g.majority_protein_ids for g in groups],
                "fasta_headers": [g.fasta_headers for g in groups],
                "score": pa.array([g.score for g in groups], pa.float64()),
                "intensity": pa.array([g.intensity for g in groups], pa.float64()),
                "contaminant": pa.array([g.contaminant for g in groups], pa.bool_()),
                "reverse": pa.array([g.reverse for g in groups], pa.bool_()),
                "only_by_site": pa.array([g.only_by_site for g in groups], pa.bool_()),
                "reporter": pa.array([list(g.reporter_corrected) for g in groups], pa.list_(pa.float64())),
                "extra": [json.dumps(g.extra, default=_json_default) for g in groups],
            }
        )
        with self.transaction():
            if first_idx == 0:
                self.execute("DELETE FROM protein_groups WHERE run_id = ?", [run_id])
            self.con.register("pg_batch", table)
            try:
                self.execute("INSERT INTO protein_groups SELECT * FROM pg_batch")
            finally:
                self.con.unregister("pg_batch")
        return len(groups)

    def protein_names(
        self, run_ids: Sequence[int], remove_con: bool, remove_rev: bool
    ) -> list[dict[str, Any]]:
        if not run_ids:
            return []
        marks = ", ".join("?" * len(run_ids))
        where = [f"run_id IN ({marks})"]
        if remove_con:
            where.append("NOT contaminant AND majority_ids NOT LIKE 'CON\\_\\_%' ESCAPE '\\'")
        if remove_rev:
            where.append("NOT reverse AND majority_ids NOT LIKE 'REV\\_\\_%' ESCAPE '\\'")
        return self.rows(
            "SELECT majority_ids, fasta_headers, avg(score) AS score, avg(intensity) AS intensity"
            f" FROM protein_groups WHERE {' AND '.join(where)}"
            " GROUP BY majority_ids, fasta_headers ORDER BY score DESC NULLS LAST, majority_ids",
            list(run_ids),
        )

    def protein_rows(self, run_ids: Sequence[int], names: Sequence[str]) -> list[dict[str, Any]]:
        if not run_ids or not names:
            return []
        rmarks = ", ".join("?" * len(run_ids))
        nmarks = ", ".join("?" * len(names))
        rows = self.rows(
            f"SELECT g.*, 'rf' || g.run_id AS run_key FROM protein_groups g WHERE g.run_id IN ({rmarks})"
            f" AND g.majority_ids IN ({nmarks}) ORDER BY g.run_id, g.idx",
            [*run_ids, *names],
        )
        for r in rows:
            r["extra"] = json.loads(r["extra"]) if r["extra"] else {}
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
