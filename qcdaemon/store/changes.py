"""The change cursor (``GET /api/changes``) and the hub's side of it: pulled runs kept by origin.

Every write of a run or of its QC values sets ``runs.change_seq`` to the next number of
``seq_changes`` inside the writing transaction (``runs.py``, ``queue.py``).  All writes go through
one writer thread, one transaction after another, so the numbers become visible to a reader in
their order: a reader that has seen number ``n`` committed has seen every smaller one that will
ever be.  ``changes_since(n)`` is therefore complete: what changed after ``n`` and nothing twice
for one state of a run.  A run changed again later comes again with its newer number (each row
is the run's whole current state, so applying it twice is harmless).  A deleted run leaves a
tombstone numbered from the same sequence (``hubdata.py``): it comes in ``deleted`` in its turn.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from typing import Any

from qcdaemon.core.clock import utcnow
from qcdaemon.store.auth import AuthQueries
from qcdaemon.store.hubdata import HubDataQueries
from qcdaemon.store.qcvalues import QcValueQueries
from qcdaemon.store.runs import RunQueries

MAX_LIMIT = 1000
# the run fields a pulled run copies from its origin (the hub's own: id, pipeline, owner, origin)
_COPIED = ("name", "sha256", "size", "acquired_at", "state", "error", "flagged", "use_downstream",
           "metrics_engine")


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


class ChangeQueries(HubDataQueries, AuthQueries, RunQueries, QcValueQueries):
    # -- the instrument daemon's side: what changed after a cursor --------------------------

    def change_cursor(self) -> int:
        """The newest change number (0 when nothing was ever written)."""
        return int(self.scalar("SELECT greatest((SELECT coalesce(max(change_seq), 0) FROM runs),"
                               " (SELECT coalesce(max(change_seq), 0) FROM deleted_runs))"))

    def changes_since(self, since: int, limit: int, project_ids: Sequence[int] | None) -> dict[str, Any]:
        """The runs changed after ``since`` (of the given projects; ``None``: all), oldest change
        first, at most ``limit`` changes in all, each with its current QC values per source and its
        data fingerprint, and the runs deleted meanwhile (``deleted``); ``next`` is the cursor to ask
        with next time and ``more`` whether more changes wait beyond it."""
        limit = min(max(int(limit), 1), MAX_LIMIT)
        params: list[Any] = [int(since)]
        scope = ""
        if project_ids is not None:
            if not project_ids:
                return {"runs": [], "deleted": [], "next": int(since), "more": False}
            scope = f" AND pl.project_id IN ({', '.join('?' * len(project_ids))})"
            params.extend(int(p) for p in project_ids)
        rows = self.rows(
            "SELECT r.id, 'rf' || r.id AS run_key, r.name, r.sha256, r.size, r.created_at, r.acquired_at, r.state,"
            " r.error, r.flagged, r.use_downstream, r.metrics_engine, r.origin, r.origin_key, r.change_seq,"
            " CASE WHEN r.superseded_by IS NULL THEN NULL ELSE 'rf' || r.superseded_by END AS superseded_by,"
            " p.slug AS project, p.name AS project_name, pl.slug AS pipeline, pl.name AS pipeline_name,"
            " pl.uuid AS pipeline_uuid, h.origin_flagged, h.origin_use_downstream"
            " FROM runs r JOIN pipelines pl ON pl.id = r.pipeline_id JOIN projects p ON p.id = pl.project_id"
            " LEFT JOIN hub_runs h ON h.run_id = r.id"
            f" WHERE r.change_seq > ?{scope} ORDER BY r.change_seq LIMIT {limit + 1}",
            params,
        )
        gone = self.deletions_since(since, limit, project_ids)
        changes = sorted([int(r["change_seq"]) for r in rows] + [int(d["change"]) for d in gone])
        more = len(changes) > limit
        last = changes[limit - 1] if more else (changes[-1] if changes else int(since))
        rows = [r for r in rows if int(r["change_seq"]) <= last]
        values = self._values_by_source([r["id"] for r in rows])
        prints = self.data_fingerprints([r["id"] for r in rows])
        out = []
        for r in rows:
            rid = r.pop("id")
            r["change"] = int(r.pop("change_seq"))
            r["created_at"], r["acquired_at"] = _iso(r["created_at"]), _iso(r["acquired_at"])
            r["values"] = values.get(rid, {})
            r["data"] = prints.get(rid, "")
            out.append(r)
        deleted = [{"run_key": d["run_key"], "change": int(d["change"])} for d in gone if int(d["change"]) <= last]
        return {"runs": out, "deleted": deleted, "next": last, "more": more}

    def _values_by_source(self, run_ids: Sequence[int]) -> dict[int, dict[str, dict[str, Any]]]:
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        rows = self.con.execute(
            f"SELECT run_id, source, name, value FROM qc_values WHERE run_id IN ({marks}) ORDER BY run_id, source, ord",
            list(run_ids),
        ).fetchall()
        out: dict[int, dict[str, dict[str, Any]]] = {}
        for rid, source, name, value in rows:
            out.setdefault(rid, {}).setdefault(source, {})[name] = None if value is None else json.loads(value)
        return out

    # -- the hub's side: pulled runs, upserted by origin, and the cursor per source ---------

    def hub_cursor(self, source: str) -> int:
        return int(self.scalar("SELECT coalesce(max(cursor), 0) FROM hub_cursors WHERE source = ?", [source]))

    def hub_failing(self) -> dict[str, dt.datetime]:
        """Since when each [[hub.source]] recorded as failing has failed (the hub_unreachable alert)."""
        return {str(r["source"]): r["failing_since"]
                for r in self.rows("SELECT source, failing_since FROM hub_source_failures")}

    def set_hub_failing(self, changes: Mapping[str, dt.datetime | None]) -> None:
        """Per source: a time records it failing since then (an earlier record is kept), None forgets it."""
        with self.transaction():
            for source, since in changes.items():
                if since is None:
                    self.execute("DELETE FROM hub_source_failures WHERE source = ?", [source])
                else:
                    self.execute("INSERT INTO hub_source_failures VALUES (?, ?) ON CONFLICT (source) DO NOTHING",
                                 [source, since])

    def hub_apply(self, source: str, runs: Sequence[Mapping[str, Any]], cursor: int,
                  pipeline_map: Mapping[str, str], workdir: str,
                  deleted: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """Upsert the pulled ``runs`` of ``source`` (by origin and run key there) into the hub's
        pipelines and store ``cursor`` as that source's, all in one transaction: a crash before
        the commit leaves the old cursor and none of the batch, after it both.  ``pipeline_map``
        maps ``project/pipeline`` of the source to one of the hub's (default: the same names,
        created when missing).  The ``deleted`` runs' copies are deleted, in the order of their
        change numbers among the runs'.  Returns how many runs were new, how many were deleted
        and the hub pipelines touched."""
        new = gone = 0
        touched: set[int] = set()
        steps = sorted([(int(r.get("change") or 0), 0, r) for r in runs]
                       + [(int(d.get("change") or 0), 1, d) for d in deleted], key=lambda t: (t[0], t[1]))
        with self.transaction():
            for _, kind, r in steps:
                if kind == 1:
                    row = self.row("SELECT id, pipeline_id FROM runs WHERE origin = ? AND origin_key = ?",
                                   [source, str(r["run_key"])])
                    if row is not None:  # already gone: a page applied again
                        self.delete_run(int(row["id"]))
                        touched.add(int(row["pipeline_id"]))
                        gone += 1
                    continue
                pid = self._hub_pipeline(str(r["project"]), str(r["pipeline"]), r, pipeline_map, workdir)
                new += self._hub_upsert(source, pid, r)
                touched.add(pid)
            self.execute(
                "INSERT INTO hub_cursors VALUES (?, ?, ?) ON CONFLICT (source) DO UPDATE"
                " SET cursor = excluded.cursor, pulled_at = excluded.pulled_at",
                [source, int(cursor), utcnow()],
            )
        return {"new": new, "deleted": gone, "pipelines": sorted(touched)}

    def _hub_pipeline(self, project: str, pipeline: str, r: Mapping[str, Any],
                      pipeline_map: Mapping[str, str], workdir: str) -> int:
        target = pipeline_map.get(f"{project}/{pipeline}", f"{project}/{pipeline}")
        proj, _, pipe = target.partition("/")
        row = self.row("SELECT pl.id FROM pipelines pl JOIN projects p ON p.id = pl.project_id"
                       " WHERE p.slug = ? AND pl.slug = ?", [proj, pipe])
        if row is not None:
            return int(row["id"])
        prow = self.row("SELECT id FROM projects WHERE slug = ?", [proj])
        if prow is not None:
            project_id = int(prow["id"])
        else:
            name = str(r.get("project_name") or proj) if proj == project else proj
            if self.row("SELECT id FROM projects WHERE name = ?", [name]):
                name = proj
            project_id = self.create_project(name, proj, "pulled by the hub", None)
        name = str(r.get("pipeline_name") or pipe) if pipe == pipeline else pipe
        p = self.create_pipeline(project_id, name, pipe, f"{workdir}/{proj}/{pipe}", rawtools_args="",
                                 read_only=True, uuid=str(uuidlib.uuid4()))
        return int(p["id"])

    def _hub_upsert(self, source: str, pipeline_id: int, r: Mapping[str, Any]) -> int:
        fields = {k: r.get(k) for k in _COPIED}
        fields["acquired_at"] = _parse_time(fields["acquired_at"])
        later = r.get("superseded_by")  # the origin's key of the complete version: already pulled (older change)
        sup = self.row("SELECT id FROM runs WHERE origin = ? AND origin_key = ?", [source, str(later)]) if later else None
        fields["superseded_by"] = None if sup is None else int(sup["id"])
        key = str(r["run_key"])
        row = self.row("SELECT id FROM runs WHERE origin = ? AND origin_key = ?", [source, key])
        rid = self.next_id("seq_runs") if row is None else int(row["id"])
        fields.update(self._hub_track(rid, r, row is None))  # the hub's own flag/accept/reject stay
        if row is None:
            self.execute(
                "INSERT INTO runs (id, pipeline_id, source, created_at, origin, origin_key, change_seq,"
                f" {', '.join(fields)}) VALUES (?, ?, 'hub', ?, ?, ?, nextval('seq_changes'),"
                f" {', '.join('?' * len(fields))})",
                [rid, pipeline_id, _parse_time(r.get("created_at")) or utcnow(), source, key, *fields.values()],
            )
        else:
            self.set_run_fields([rid], {"pipeline_id": pipeline_id, **fields})
        values: Mapping[str, Mapping[str, Any]] = r.get("values") or {}
        for old in self.rows("SELECT DISTINCT source FROM qc_values WHERE run_id = ?", [rid]):
            if old["source"] not in values:
                self._replace_qc_values(rid, old["source"], {})
        for src, vals in values.items():
            self._replace_qc_values(rid, str(src), dict(vals))
        return 1 if row is None else 0
