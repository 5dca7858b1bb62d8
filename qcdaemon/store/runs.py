"""Runs: creating one (with its stages and ledger row), selecting and changing them, and what a
run holds beside its values (chromatograms, the search stage's PSMs).  QC values are in
``qcvalues.py``, protein groups in ``proteins.py``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from qcdaemon.core.clock import utcnow
from qcdaemon.errors import NotFound
from qcdaemon.store.ledger import LedgerQueries
from qcdaemon.store.queue import QueueQueries
from qcdaemon.store.rows import LedgerKey, RunRow

ACTIVE = ("queued", "running")
_NAMES_CACHED = 1024  # (pipeline, owner) pairs whose names create_run keeps (cleared when full)
TERMINAL = ("done", "failed", "skipped", "cancelled")


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
        """Create a run, its queued stages and (optionally) its ledger row in one transaction.  The
        row returned is ``run(id)``'s, put together from what the statements give (the pipeline's
        names read first, the run's row by the insert's RETURNING) instead of read again; with
        stages, the run's state is the one ``_refresh_run`` derives from them (``_fresh_state``)."""
        now = utcnow()
        rows = [(stage, None) if isinstance(stage, str) else stage for stage in stages]
        if rows:
            state = _fresh_state(rows)
        tx = self.transaction()
        with tx:
            names = self._run_names(pipeline_id, owner_id)
            run = self.write_rows(
                "INSERT INTO runs (id, pipeline_id, name, stored_path, source, size, sha256, owner_id, created_at,"
                " acquired_at, flagged, use_downstream, state, change_seq)"
                " VALUES (nextval('seq_runs'), ?, ?, ?, ?, ?, ?, ?, ?, ?, false, true, ?, nextval('seq_changes'))"
                " RETURNING *",
                [pipeline_id, name, stored_path, source, size, sha256, owner_id, now, acquired_at, state],
            )[0]
            rid = int(run["id"])
            if rows:  # one statement for all of them
                self.execute(
                    "INSERT INTO stages (run_id, stage, seq, state, queued_at, ended_at, error) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows)),
                    [v for seq, (stage, skip) in enumerate(rows, start=1)
                     for v in (rid, stage, seq, "skipped" if skip else "queued", now, now if skip else None, skip)],
                )
            if ledger is not None:
                self._ledger_insert(ledger, state=state, run_id=rid)
        if not tx.nested:  # committed: the names are the database's (a rolled-back pipeline's never are)
            cache = self.__dict__.setdefault("_run_names_cache", {})
            if len(cache) >= _NAMES_CACHED:
                cache.clear()
            cache[(pipeline_id, owner_id)] = names
        run["run_key"] = f"rf{rid}"
        run.update(names)
        return run

    def _run_names(self, pipeline_id: int, owner_id: int | None) -> dict[str, Any]:
        """What ``run()`` joins to a run: its owner's email, its pipeline's uuid and slug, its
        project's slug.  Kept per (pipeline, owner) once a run of them committed: none of them is
        ever changed or deleted (a pipeline or project is not renamed, a user's email is fixed), and
        the join costs more than the rest of a run's insert (2.2 ms, DuckDB's planning of it)."""
        got: dict[str, Any] | None = self.__dict__.get("_run_names_cache", {}).get((pipeline_id, owner_id))
        if got is not None:
            return dict(got)
        names = self.row(
            "SELECT (SELECT email FROM users WHERE id = ?) AS owner_email, pl.uuid AS pipeline_uuid,"
            " pl.slug AS pipeline_slug, p.slug AS project_slug FROM pipelines pl"
            " JOIN projects p ON p.id = pl.project_id WHERE pl.id = ?",
            [owner_id, pipeline_id],
        )
        if names is None:
            raise NotFound(f"pipeline {pipeline_id} does not exist")
        return dict(names)

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

    def runs_by_ids(self, pipeline_id: int, ids: Sequence[int]) -> list[RunRow]:
        """``runs_of``' rows of just these runs (ids that cannot be a run's are no match)."""
        wanted = [i for i in ids if 0 < i < 2**63]
        if not wanted:
            return []
        return self.rows(
            "SELECT r.*, 'rf' || r.id AS run_key, u.email AS owner_email FROM runs r"
            " LEFT JOIN users u ON u.id = r.owner_id WHERE r.pipeline_id = ? AND r.id IN (SELECT unnest(?::BIGINT[]))"
            " ORDER BY r.id",
            [pipeline_id, wanted],
        )

    def run_names_of(self, pipeline_id: int) -> list[tuple[int, str]]:
        """(id, name) of every run of the pipeline (``runs_of`` without the rest of each row)."""
        rows = self.con.execute("SELECT id, name FROM runs WHERE pipeline_id = ? ORDER BY id", [pipeline_id]).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

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


def _fresh_state(stages: Sequence[tuple[str, str | None]]) -> str:
    """The state ``QueueQueries._refresh_run`` gives a new run whose stages are queued or skipped
    (a reason): queued while one is queued, else done (every stage skipped).  Tests hold the two equal."""
    return "queued" if any(not skip for _, skip in stages) else "done"
