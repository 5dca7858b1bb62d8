"""The persistent job queue: one row per run and stage, claimed by the engine's workers.

Stage states: queued -> running -> done | failed | skipped | cancelled.  A run's own state is
derived from its stages after every change (``_refresh_run``): queued, processing, done, failed.
A run is ``failed`` only when no stage produced values; a run with values is ``done`` even when
another stage failed (that stage stays ``failed`` with its reason, and ``runs.error`` lists the
failed stages' reasons).  A done stage may carry a note in ``error`` (RawTools exited non-zero
after writing its outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qcdaemon.core.clock import utcnow
from qcdaemon.errors import Conflict, NotFound
from qcdaemon.store.base import StoreBase
from qcdaemon.store.rows import RunOverview, StageRow

FIRST_STAGE = "native"
#: Stages that still run when the first stage failed: RawTools reads RAW files with Thermo's own
#: reader and may read what the native reader cannot.  MaxQuant (hours of CPU) stays off them.
RUN_AFTER_FIRST_FAILED = ("rawtools",)


class QueueQueries(StoreBase):
    # -- stages -----------------------------------------------------------------------------

    def stages(self, run_id: int) -> list[StageRow]:
        return self.rows("SELECT * FROM stages WHERE run_id = ? ORDER BY seq", [run_id])

    def claim_stage(self, stage: str) -> StageRow | None:
        """Mark the oldest runnable queued ``stage`` as running and return it (with its run).

        A stage other than the first one runs only once the run's first stage (``native``) has
        finished; when it failed, only the stages of :data:`RUN_AFTER_FIRST_FAILED` are still
        queued (``finish_stage`` skips the others), which keeps MaxQuant off corrupt files.
        """
        with self.transaction():
            row = self.row(
                "SELECT s.run_id FROM stages s WHERE s.stage = ? AND s.state = 'queued' AND NOT EXISTS ("
                "  SELECT 1 FROM stages f WHERE f.run_id = s.run_id AND f.seq < s.seq AND f.stage = ?"
                "  AND f.state IN ('queued', 'running'))"
                " ORDER BY s.queued_at, s.run_id LIMIT 1",
                [stage, FIRST_STAGE],
            )
            if row is None:
                return None
            self.execute(
                "UPDATE stages SET state = 'running', attempts = attempts + 1, started_at = ?, ended_at = NULL,"
                " exit_code = NULL, error = NULL WHERE run_id = ? AND stage = ?",
                [utcnow(), row["run_id"], stage],
            )
            self._refresh_run(row["run_id"])
        return self.row("SELECT * FROM stages WHERE run_id = ? AND stage = ?", [row["run_id"], stage])

    def finish_stage(
        self,
        run_id: int,
        stage: str,
        state: str,
        *,
        error: str | None = None,
        exit_code: int | None = None,
        log_dir: str | None = None,
    ) -> None:
        with self.transaction():
            self.execute(
                "UPDATE stages SET state = ?, ended_at = ?, error = ?, exit_code = ?, log_dir = coalesce(?, log_dir)"
                " WHERE run_id = ? AND stage = ?",
                [state, utcnow(), error, exit_code, log_dir, run_id, stage],
            )
            if stage == FIRST_STAGE and state == "failed":
                keep = ", ".join(f"'{n}'" for n in RUN_AFTER_FIRST_FAILED)
                self.execute(
                    "UPDATE stages SET state = 'skipped', ended_at = ?, error = ? WHERE run_id = ? AND state = 'queued'"
                    f" AND stage NOT IN ({keep})",
                    [utcnow(), f"not run: the {FIRST_STAGE} stage failed", run_id],
                )
            self._refresh_run(run_id)

    def requeue_stage(self, run_id: int, stage: str, *, count_attempt: bool = True) -> None:
        """Back to the queue; ``count_attempt=False`` when the daemon itself stopped the stage
        (a graceful stop is not the tool's failure and must not use up its attempts)."""
        with self.transaction():
            self.execute(
                "UPDATE stages SET state = 'queued', queued_at = ?, started_at = NULL,"
                " attempts = attempts - ? WHERE run_id = ? AND stage = ?",
                [utcnow(), 0 if count_attempt else 1, run_id, stage],
            )
            self._refresh_run(run_id)

    def requeue_interrupted(self, max_attempts: int = 5) -> list[tuple[int, str, str]]:
        """Stages left 'running' by a crash or kill go back to the queue (they are re-run), unless
        they were interrupted ``max_attempts`` times: a file that crashes the daemon must not do so forever."""
        rows = self.rows("SELECT run_id, stage, attempts FROM stages WHERE state = 'running'")
        out = []
        for r in rows:
            if r["attempts"] >= max_attempts:
                self.finish_stage(r["run_id"], r["stage"], "failed",
                                  error=f"interrupted {r['attempts']} times (the daemon stopped or died while it ran)")
                out.append((r["run_id"], r["stage"], "failed"))
            else:
                self.requeue_stage(r["run_id"], r["stage"])
                out.append((r["run_id"], r["stage"], "queued"))
        return out

    def retry_run(self, run_id: int, stages: Sequence[str] | None = None) -> list[str]:
        """Re-queue the run's failed/cancelled stages (or the named ones, which must be failed or
        cancelled); the stages a failed first stage skipped come back with it.  Done stages and
        stages skipped by the configuration are not re-run."""
        current = {s["stage"]: s for s in self.stages(run_id)}
        if not current:
            raise NotFound(f"run rf{run_id} has no stages")
        if any(s["state"] == "running" for s in current.values()):
            raise Conflict(f"run rf{run_id} is running; cancel it first")
        wanted = list(stages) if stages else [
            n for n, s in current.items() if s["state"] in ("failed", "cancelled")
        ]
        unknown = [n for n in wanted if n not in current]
        if unknown:
            raise NotFound(f"run rf{run_id} has no stage {unknown[0]!r}")
        blocked_by_first = f"not run: the {FIRST_STAGE} stage failed"
        finished = [n for n in wanted if current[n]["state"] not in ("failed", "cancelled")
                    and current[n]["error"] != blocked_by_first]
        if finished:
            raise Conflict(f"run rf{run_id}: the {finished[0]} stage is {current[finished[0]]['state']};"
                           " only failed or cancelled stages are retried")
        first = current.get(FIRST_STAGE)
        if first is not None:
            if FIRST_STAGE in wanted:  # the stages its failure skipped come back with it
                blocked = f"not run: the {FIRST_STAGE} stage failed"
                wanted += [n for n, s in current.items() if s["error"] == blocked and n not in wanted]
            elif first["state"] not in ("done", "skipped") and any(
                    n != FIRST_STAGE and n not in RUN_AFTER_FIRST_FAILED for n in wanted):
                raise Conflict(
                    f"run rf{run_id}: the {FIRST_STAGE} stage is {first['state']}; retry it (or the whole run) first"
                )
        with self.transaction():
            for n in wanted:
                self.execute(
                    "UPDATE stages SET state = 'queued', queued_at = ?, started_at = NULL, ended_at = NULL,"
                    " error = NULL, exit_code = NULL, attempts = 0 WHERE run_id = ? AND stage = ?",
                    [utcnow(), run_id, n],
                )
            self._refresh_run(run_id)
        return wanted

    def cancel_run(self, run_id: int) -> list[str]:
        """Queued stages become cancelled now; running ones are returned for the engine to stop."""
        with self.transaction():
            self.execute(
                "UPDATE stages SET state = 'cancelled', ended_at = ?, error = 'cancelled by user'"
                " WHERE run_id = ? AND state = 'queued'",
                [utcnow(), run_id],
            )
            self._refresh_run(run_id)
        return [s["stage"] for s in self.stages(run_id) if s["state"] == "running"]

    def queue_depth(self, project_ids: Sequence[int] | None = None) -> dict[str, int]:
        """Queued and running stages (of runs in ``project_ids`` when given; none for an empty list)."""
        if project_ids is None:
            rows = self.rows("SELECT state, count(*) AS n FROM stages WHERE state IN ('queued', 'running') GROUP BY state")
        elif not project_ids:
            rows = []
        else:
            rows = self.rows(
                "SELECT s.state, count(*) AS n FROM stages s JOIN runs r ON r.id = s.run_id"
                " JOIN pipelines pl ON pl.id = r.pipeline_id WHERE s.state IN ('queued', 'running')"
                f" AND pl.project_id IN ({', '.join('?' * len(project_ids))}) GROUP BY s.state",
                list(project_ids),
            )
        out = {"queued": 0, "running": 0}
        out.update({r["state"]: int(r["n"]) for r in rows})
        return out

    def last_error(self, project_ids: Sequence[int] | None = None) -> dict[str, Any] | None:
        """The most recent failed stage (of runs in ``project_ids`` when given)."""
        if project_ids is None:
            return self.row(
                "SELECT 'rf' || run_id AS run_key, stage, error, ended_at FROM stages WHERE state = 'failed'"
                " ORDER BY ended_at DESC NULLS LAST LIMIT 1"
            )
        if not project_ids:
            return None
        return self.row(
            "SELECT 'rf' || s.run_id AS run_key, s.stage, s.error, s.ended_at FROM stages s"
            " JOIN runs r ON r.id = s.run_id JOIN pipelines pl ON pl.id = r.pipeline_id"
            f" WHERE s.state = 'failed' AND pl.project_id IN ({', '.join('?' * len(project_ids))})"
            " ORDER BY s.ended_at DESC NULLS LAST LIMIT 1",
            list(project_ids),
        )

    def runs_overview(self, pipeline_id: int | None = None, limit: int = 100,
                      project_ids: Sequence[int] | None = None) -> list[RunOverview]:
        """The newest ``limit`` runs (of one pipeline, and/or of the given projects) with their stages."""
        conditions: list[str] = []
        params: list[Any] = []
        if pipeline_id is not None:
            conditions.append("r.pipeline_id = ?")
            params.append(pipeline_id)
        if project_ids is not None:
            if not project_ids:
                return []
            conditions.append(f"pl.project_id IN ({', '.join('?' * len(project_ids))})")
            params.extend(project_ids)
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        runs = self.rows(
            "SELECT r.id, 'rf' || r.id AS run_key, r.name, r.state, r.error, r.source, r.created_at, r.acquired_at,"
            " r.flagged, r.use_downstream, r.metrics_engine, r.origin, r.origin_key,"
            " CASE WHEN r.superseded_by IS NULL THEN NULL ELSE 'rf' || r.superseded_by END AS superseded_by,"
            " u.email AS owner, p.slug AS project, pl.slug AS pipeline"
            " FROM runs r JOIN pipelines pl ON pl.id = r.pipeline_id JOIN projects p ON p.id = pl.project_id"
            f" LEFT JOIN users u ON u.id = r.owner_id {where} ORDER BY r.id DESC LIMIT {min(max(int(limit), 0), 2**62)}",
            params,
        )
        if not runs:
            return runs
        marks = ", ".join("?" * len(runs))
        stages = self.rows(
            f"SELECT * FROM stages WHERE run_id IN ({marks}) ORDER BY run_id, seq", [r["id"] for r in runs]
        )
        by_run: dict[int, list[dict[str, Any]]] = {}
        for s in stages:
            by_run.setdefault(s["run_id"], []).append(s)
        for r in runs:
            r["stages"] = by_run.get(r["id"], [])
        return runs

    def _refresh_run(self, run_id: int) -> None:
        rows = self.rows("SELECT stage, state, error FROM stages WHERE run_id = ? ORDER BY seq", [run_id])
        states = [s["state"] for s in rows]
        if not states:
            return
        if "running" in states or ("queued" in states and any(s in ("done", "failed") for s in states)):
            state = "processing"
        elif "queued" in states:
            state = "queued"
        elif "done" in states:  # some stage produced values: the run has metrics
            state = "done"
        elif "failed" in states:
            state = "failed"
        elif "cancelled" in states:
            state = "cancelled"
        else:
            state = "done"
        failed = [f"{s['stage']}: {s['error'] or 'failed'}" for s in rows if s["state"] == "failed"]
        error = "; ".join(failed) if failed and state in ("done", "failed") else None
        self.execute("UPDATE runs SET state = ?, error = ?, change_seq = nextval('seq_changes') WHERE id = ?"
                     " AND (state IS DISTINCT FROM ? OR error IS DISTINCT FROM ?)", [state, error, run_id, state, error])
        self.execute("UPDATE files SET state = ?, updated_at = ? WHERE run_id = ?", [state, utcnow(), run_id])

    def queue_by_pipeline(self) -> dict[int, dict[str, int]]:
        """pipeline id -> runs waiting (a stage queued, none running) and runs being processed."""
        rows = self.rows(
            "SELECT r.pipeline_id AS pid, count(*) FILTER (WHERE s.running = 0) AS queued,"
            " count(*) FILTER (WHERE s.running > 0) AS running FROM runs r JOIN ("
            "  SELECT run_id, count(*) FILTER (WHERE state = 'running') AS running FROM stages"
            "  WHERE state IN ('queued', 'running') GROUP BY run_id) s ON s.run_id = r.id GROUP BY r.pipeline_id"
        )
        return {int(r["pid"]): {"queued": int(r["queued"]), "running": int(r["running"])} for r in rows}

    def runs_page(self, pipeline_id: int, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """One page of a pipeline's runs, newest acquisition first, with their stored verdicts."""
        total = int(self.scalar("SELECT count(*) FROM runs WHERE pipeline_id = ?", [pipeline_id]))
        rows = self.rows(
            "SELECT 'rf' || r.id AS run_key, r.name, r.state, r.acquired_at, r.created_at, r.flagged,"
            " r.use_downstream, u.email AS owner, v.verdict, v.summary FROM runs r"
            " LEFT JOIN users u ON u.id = r.owner_id LEFT JOIN qc_verdicts v ON v.run_id = r.id"
            " WHERE r.pipeline_id = ? ORDER BY coalesce(r.acquired_at, r.created_at) DESC, r.id DESC"
            f" LIMIT {max(0, min(int(limit), 1000))} OFFSET {max(0, int(offset))}",
            [pipeline_id],
        )
        return total, rows
