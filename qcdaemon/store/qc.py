"""Quality-control state: guide sets, annotations (and their kinds), per-metric exclusions,
per-pipeline metric rules and settings, and the stored verdicts with their reasons.

Times are naive UTC in the database (as everywhere in the store). Rows come back as plain dicts;
JSON columns (run keys, rules, overrides, reasons) are decoded here.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import pyarrow as pa

from qcdaemon.core.clock import utcnow
from qcdaemon.errors import Conflict, NotFound
from qcdaemon.store.base import StoreBase


def _naive_utc(t: dt.datetime | None) -> dt.datetime | None:
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(dt.UTC).replace(tzinfo=None)


def _spans(ids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted ids as (first, last) ranges of consecutive ids."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _number(v: Any) -> float | None:
    """A decoded JSON value as TRY_CAST(value AS DOUBLE) gives it: numbers as floats, else None."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# database file -> version of its QC configuration (see QcQueries.qc_config_version): one process
# holds a DuckDB file, and every write of the configuration goes through the methods below
_CONFIG_VERSIONS: dict[str, int] = {}
F = TypeVar("F", bound=Callable[..., Any])


def _config_write(fn: F) -> F:
    """A write of the QC configuration: the version changes after it (also after a failed one),
    so a cache never keeps what was read before the write under the version after it."""
    @functools.wraps(fn)
    def wrapper(self: QcQueries, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        finally:
            self.qc_config_changed()

    return cast(F, wrapper)


class QcQueries(StoreBase):
    # -- the series the verdicts are computed from ------------------------------------------

    def qc_runs(self, pipeline_id: int) -> list[dict[str, Any]]:
        """Every run of the pipeline: id, key, name, acquisition time (else ingestion time),
        whether it was rejected; oldest first."""
        return self.rows(
            "SELECT id, 'rf' || id AS run_key, name, coalesce(acquired_at, created_at) AS acquired,"
            " acquired_at IS NULL AS time_guessed, coalesce(use_downstream = false, false) AS rejected"
            " FROM runs WHERE pipeline_id = ? ORDER BY coalesce(acquired_at, created_at), id",
            [pipeline_id],
        )

    def qc_run_tuples(self, pipeline_id: int) -> list[tuple[int, dt.datetime, bool]]:
        """(id, acquisition or else ingestion time, rejected) of every run, oldest first (lean)."""
        return self.con.execute(
            "SELECT id, coalesce(acquired_at, created_at), use_downstream IS NOT DISTINCT FROM false"
            " FROM runs WHERE pipeline_id = ? ORDER BY coalesce(acquired_at, created_at), id",
            [pipeline_id]).fetchall()

    def qc_run_signature(self, pipeline_id: int) -> tuple[Any, ...]:
        """What changes whenever a run of the pipeline comes, goes, is re-timed or (un)rejected."""
        return tuple(self.con.execute(
            "SELECT count(*), coalesce(max(id), 0), coalesce(sum(id), 0),"
            " coalesce(sum(epoch_us(coalesce(acquired_at, created_at))), 0),"
            " count(*) FILTER (WHERE use_downstream IS NOT DISTINCT FROM false)"
            " FROM runs WHERE pipeline_id = ?", [pipeline_id]).fetchone() or ())

    def qc_metric_values(self, run_ids: Sequence[int] | None,
                         names: Sequence[str] | None = None, *, numeric: Sequence[str] = (),
                         pipeline_id: int | None = None) -> list[tuple[int, str, str, Any]]:
        """(run_id, source, name, value) of the runs (``None`` with ``pipeline_id``: all of its
        runs), only the named metrics if given. Values of the ``numeric`` names come as numbers
        (or None) straight from the database, without decoding JSON in Python."""
        if (run_ids is not None and not run_ids) or (names is not None and not names):
            return []
        params: list[Any] = []
        where = []
        if run_ids is None:
            where.append("run_id IN (SELECT id FROM runs WHERE pipeline_id = ?)")
            params.append(pipeline_id)
        else:
            spans = _spans(run_ids)
            if len(spans) <= 8:  # id ranges let DuckDB skip row groups (a verdict's guide set + history)
                where.append("(" + " OR ".join("run_id BETWEEN ? AND ?" for _ in spans) + ")")
                params.extend(x for span in spans for x in span)
            else:
                where.append("run_id IN (SELECT unnest(?))")
                params.append(sorted(set(run_ids)))
        if names is not None:
            where.append(f"name IN ({', '.join('?' * len(names))})")
            params.extend(names)
        fast = set(numeric)
        if run_ids is not None and len(set(run_ids)) <= 64:  # a verdict's few runs: JSON decoded here, one lean query
            few = self.con.execute(f"SELECT run_id, source, name, value FROM qc_values WHERE {' AND '.join(where)}"
                                   " ORDER BY run_id, source, ord", params).fetchall()
            return [(r[0], r[1], r[2], _number(v) if r[2] in fast else v)
                    for r in few for v in [None if r[3] is None else json.loads(r[3])]]
        marks = ", ".join("?" * len(fast)) if fast else "NULL"
        rows = self.con.execute(
            f"SELECT run_id, source, name, CASE WHEN name IN ({marks}) THEN NULL ELSE value END,"
            f" CASE WHEN name IN ({marks}) THEN TRY_CAST(value AS DOUBLE) END"
            f" FROM qc_values WHERE {' AND '.join(where)} ORDER BY run_id, source, ord",
            [*fast, *fast, *params]).fetchall()
        return [(r[0], r[1], r[2], r[4] if r[2] in fast else (json.loads(r[3]) if r[3] is not None else None))
                for r in rows]

    def qc_value_columns(self, pipeline_id: int, names: Sequence[str], *, since: dt.datetime | None = None,
                         id_sources: Sequence[str] = ()) -> tuple[Any, Any, Any, list[tuple[int, Any]], set[int]]:
        """The pipeline's merged values of ``names`` as numbers, column-wise for numpy: (run ids,
        index into ``names``, value as a float, NaN for none or no number) of each (run, name), of
        the runs acquired at or after ``since`` if given; and (run id, decoded value) of each run's
        ``SearchParameters``; and the ids of the runs with a value of ``names`` from one of
        ``id_sources``. Merged as :func:`qcdaemon.qc.qcdata.merge_run_values` merges: a
        source other than the scan engines over them (the alphabetically later one winning), else
        RawTools unless null, else native."""
        where = "r.pipeline_id = ?"
        params: list[Any] = [pipeline_id]
        if since is not None:
            where += " AND coalesce(r.acquired_at, r.created_at) >= ?"
            params.append(_naive_utc(since))
        merged = (
            "SELECT v.run_id, v.name, arg_max(coalesce(v.value, 'null'), (CASE v.source WHEN 'native' THEN 1"
            " WHEN 'rawtools' THEN CASE WHEN coalesce(v.value, 'null') <> 'null' THEN 2 ELSE 0 END ELSE 3 END,"
            f" v.source)) AS value FROM qc_values v JOIN runs r ON r.id = v.run_id WHERE {where}"
            " AND list_contains(?, v.name) GROUP BY v.run_id, v.name")
        table: pa.Table = self.con.sql(
            f"SELECT run_id, list_position(?, name) - 1 AS col, TRY_CAST(value AS DOUBLE) AS x FROM ({merged})",
            params=[list(names), *params, list(names)]).to_arrow_table()
        ids = table.column("run_id").to_numpy()
        cols = table.column("col").to_numpy()
        xs = table.column("x").to_numpy(zero_copy_only=False)
        searched = self.con.execute(merged.replace("list_contains(?, v.name)", "v.name = 'SearchParameters'"),
                                    params).fetchall()
        id_based = {r[0] for r in self.con.execute(
            f"SELECT DISTINCT v.run_id FROM qc_values v JOIN runs r ON r.id = v.run_id WHERE {where}"
            " AND list_contains(?, v.name) AND list_contains(?, v.source)",
            [*params, list(names), list(id_sources)]).fetchall()} if id_sources else set()
        return ids, cols, xs, [(r[0], json.loads(r[2])) for r in searched], id_based

    def qc_signature(self, pipeline_id: int) -> tuple[Any, ...]:
        """What changes whenever a run of the pipeline comes, goes, is re-timed or (un)rejected
        (the first five values, as :meth:`qc_run_signature`), or the QC configuration is written
        through a store on this database file (guide sets, annotations and their kinds, exclusions,
        metric and pipeline settings: the sixth, :meth:`qc_config_version`); the key of the caches
        of what is derived from them. One query."""
        return (*self.qc_run_signature(pipeline_id), self.qc_config_version())

    def qc_config_version(self) -> int:
        """A number that changes with every write of the QC configuration through any store on
        this file in this process (the reader views share it), and with each opening of the file."""
        return _CONFIG_VERSIONS.get(str(self.path), 0)

    def qc_config_changed(self) -> None:
        key = str(self.path)
        _CONFIG_VERSIONS[key] = _CONFIG_VERSIONS.get(key, 0) + 1

    def qc_run_state(self, run_id: int) -> tuple[int, dt.datetime, tuple[Any, ...]] | None:
        """(pipeline id, acquisition or else ingestion time, :meth:`qc_signature` of its pipeline)
        of a run, in one query (what a new verdict starts from)."""
        row = self.con.execute(
            "SELECT r.pipeline_id, coalesce(r.acquired_at, r.created_at), s.* FROM runs r,"
            " (SELECT count(*), coalesce(max(id), 0), coalesce(sum(id), 0),"
            "  coalesce(sum(epoch_us(coalesce(acquired_at, created_at))), 0),"
            "  count(*) FILTER (WHERE use_downstream IS NOT DISTINCT FROM false)"
            "  FROM runs WHERE pipeline_id = (SELECT pipeline_id FROM runs WHERE id = $1)) s WHERE r.id = $1",
            [run_id]).fetchone()
        return None if row is None else (int(row[0]), row[1], (*row[2:], self.qc_config_version()))

    def watch_path_of(self, run_id: int) -> str | None:
        """The watched folder a run came from (None: uploaded)."""
        return self.scalar("SELECT watch_path FROM files WHERE run_id = ? ORDER BY id LIMIT 1", [run_id])

    # -- guide sets ---------------------------------------------------------------------------

    def guide_sets_of(self, pipeline_id: int) -> list[dict[str, Any]]:
        rows = self.rows("SELECT * FROM qc_guide_sets WHERE pipeline_id = ? ORDER BY id", [pipeline_id])
        for r in rows:
            r["run_keys"] = _load(r["run_keys"])
        return rows

    @_config_write
    def add_guide_set(self, pipeline_id: int, *, label: str, start: dt.datetime | None,
                      end: dt.datetime | None, run_keys: Sequence[str] | None,
                      created_by: int | None) -> dict[str, Any]:
        gid = self.next_id("seq_qc_guide_sets")
        self.execute(
            "INSERT INTO qc_guide_sets (id, pipeline_id, label, start_at, end_at, run_keys, created_by,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [gid, pipeline_id, label, _naive_utc(start), _naive_utc(end),
             json.dumps(list(run_keys)) if run_keys is not None else None, created_by, utcnow()])
        return self.guide_set(pipeline_id, gid)

    def guide_set(self, pipeline_id: int, gid: int) -> dict[str, Any]:
        r = self.row("SELECT * FROM qc_guide_sets WHERE pipeline_id = ? AND id = ?", [pipeline_id, gid])
        if r is None:
            raise NotFound(f"guide set gs{gid} does not exist in this pipeline")
        r["run_keys"] = _load(r["run_keys"])
        return r

    @_config_write
    def delete_guide_set(self, pipeline_id: int, gid: int) -> None:
        self.guide_set(pipeline_id, gid)
        self.execute("DELETE FROM qc_guide_sets WHERE pipeline_id = ? AND id = ?", [pipeline_id, gid])

    # -- annotations --------------------------------------------------------------------------

    def annotation_kinds(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM qc_annotation_kinds ORDER BY name")

    @_config_write
    def add_annotation_kind(self, name: str, label: str, resets_baseline: bool) -> dict[str, Any]:
        with self.transaction():
            if self.scalar("SELECT count(*) FROM qc_annotation_kinds WHERE name = ?", [name]):
                raise Conflict(f"annotation kind {name!r} exists")
            self.execute("INSERT INTO qc_annotation_kinds VALUES (?, ?, ?)", [name, label, resets_baseline])
        return {"name": name, "label": label, "resets_baseline": resets_baseline}

    def annotations_of(self, pipeline_id: int) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT a.*, u.email AS author FROM qc_annotations a LEFT JOIN users u ON u.id = a.author_id"
            " WHERE a.pipeline_id = ? ORDER BY a.happened_at, a.id", [pipeline_id])

    @_config_write
    def add_annotation(self, pipeline_id: int, *, kind: str, at: dt.datetime, text: str,
                       author_id: int | None) -> dict[str, Any]:
        aid = self.next_id("seq_qc_annotations")
        self.execute("INSERT INTO qc_annotations VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [aid, pipeline_id, kind, _naive_utc(at), text, author_id, utcnow()])
        return self.annotation(pipeline_id, aid)

    def annotation(self, pipeline_id: int, aid: int) -> dict[str, Any]:
        r = self.row("SELECT a.*, u.email AS author FROM qc_annotations a LEFT JOIN users u ON u.id = a.author_id"
                     " WHERE a.pipeline_id = ? AND a.id = ?", [pipeline_id, aid])
        if r is None:
            raise NotFound(f"annotation {aid} does not exist in this pipeline")
        return r

    @_config_write
    def delete_annotation(self, pipeline_id: int, aid: int) -> None:
        self.annotation(pipeline_id, aid)
        self.execute("DELETE FROM qc_annotations WHERE pipeline_id = ? AND id = ?", [pipeline_id, aid])

    # -- per-metric exclusions ----------------------------------------------------------------

    def exclusions_of(self, pipeline_id: int) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT e.run_id, 'rf' || e.run_id AS run_key, e.metric, e.reason, u.email AS created_by,"
            " e.created_at FROM qc_exclusions e LEFT JOIN users u ON u.id = e.created_by"
            " WHERE e.pipeline_id = ? ORDER BY e.metric, e.run_id", [pipeline_id])

    @_config_write
    def set_exclusions(self, pipeline_id: int, run_ids: Sequence[int], metric: str, *,
                       excluded: bool, reason: str = "", created_by: int | None = None) -> None:
        with self.transaction():
            for rid in run_ids:
                self.execute("DELETE FROM qc_exclusions WHERE run_id = ? AND metric = ?", [rid, metric])
                if excluded:
                    self.execute("INSERT INTO qc_exclusions VALUES (?, ?, ?, ?, ?, ?)",
                                 [rid, metric, pipeline_id, reason, created_by, utcnow()])

    # -- per-pipeline metric rules and settings -----------------------------------------------

    def metric_settings_of(self, pipeline_id: int) -> list[dict[str, Any]]:
        rows = self.rows("SELECT * FROM qc_metric_settings WHERE pipeline_id = ? ORDER BY metric", [pipeline_id])
        for r in rows:
            r["rules"], r["overrides"] = _load(r["rules"]), _load(r["overrides"])
        return rows

    @_config_write
    def put_metric_settings(self, pipeline_id: int, metric: str, *, rules: Any, overrides: Any,
                            updated_by: int | None, config_file: str | None = None) -> None:
        """Replace a metric's rules and catalogue overrides (both None: back to the defaults);
        ``config_file``: the config file they come from (None: the API or the CLI)."""
        with self.transaction():
            self.execute("DELETE FROM qc_metric_settings WHERE pipeline_id = ? AND metric = ?",
                         [pipeline_id, metric])
            if rules is not None or overrides is not None:
                self.execute("INSERT INTO qc_metric_settings (pipeline_id, metric, rules, overrides, updated_by,"
                             " updated_at, config_file) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [pipeline_id, metric, None if rules is None else json.dumps(rules),
                              None if overrides is None else json.dumps(overrides), updated_by, utcnow(),
                              config_file])

    def pipeline_qc_settings(self, pipeline_id: int) -> dict[str, Any] | None:
        return self.row("SELECT * FROM qc_pipeline_settings WHERE pipeline_id = ?", [pipeline_id])

    @_config_write
    def put_pipeline_qc_settings(self, pipeline_id: int, *, auto_guide_runs: int | None,
                                 offline_hours: float | None, updated_by: int | None,
                                 config_file: str | None = None) -> None:
        """Replace the pipeline's QC settings (``auto_guide_runs`` None: remove them, back to the
        defaults); ``config_file`` as in :meth:`put_metric_settings`."""
        with self.transaction():
            self.execute("DELETE FROM qc_pipeline_settings WHERE pipeline_id = ?", [pipeline_id])
            if auto_guide_runs is not None:
                self.execute("INSERT INTO qc_pipeline_settings (pipeline_id, auto_guide_runs, offline_hours,"
                             " updated_by, updated_at, config_file) VALUES (?, ?, ?, ?, ?, ?)",
                             [pipeline_id, auto_guide_runs, offline_hours, updated_by, utcnow(), config_file])

    def qc_settings_from_config(self) -> list[tuple[int, str | None]]:
        """(pipeline id, metric; None for the pipeline's own settings) of every setting a config
        file wrote."""
        return [(r[0], r[1]) for r in self.con.execute(
            "SELECT pipeline_id, metric FROM qc_metric_settings WHERE config_file IS NOT NULL UNION ALL"
            " SELECT pipeline_id, NULL FROM qc_pipeline_settings WHERE config_file IS NOT NULL").fetchall()]

    # -- verdicts -----------------------------------------------------------------------------

    def put_verdicts(self, pipeline_id: int, verdicts: Iterable[dict[str, Any]], *,
                     replace_all: bool = False) -> int:
        """Store verdicts (``run_id``, ``verdict``, ``summary``, ``detail`` (JSON-able),
        ``guide_set``); ``replace_all`` drops the pipeline's other stored verdicts first."""
        now = utcnow()
        verdicts = list(verdicts)
        table = pa.table({
            "run_id": pa.array([v["run_id"] for v in verdicts], pa.int32()),
            "pipeline_id": pa.array([pipeline_id] * len(verdicts), pa.int32()),
            "verdict": pa.array([v["verdict"] for v in verdicts], pa.string()),
            "summary": pa.array([v["summary"] for v in verdicts], pa.string()),
            "detail": pa.array([json.dumps(v["detail"]) for v in verdicts], pa.string()),
            "guide_set": pa.array([v["guide_set"] for v in verdicts], pa.string()),
            "computed_at": pa.array([now] * len(verdicts), pa.timestamp("us")),
        })
        if len(verdicts) == 1 and not replace_all:  # one new verdict: two plain statements
            v = verdicts[0]
            with self.transaction():
                self.execute("DELETE FROM qc_verdicts WHERE run_id = ?", [v["run_id"]])
                self.execute("INSERT INTO qc_verdicts VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [v["run_id"], pipeline_id, v["verdict"], v["summary"], json.dumps(v["detail"]),
                              v["guide_set"], now])
            return 1
        with self.transaction():
            if replace_all:
                self.execute("DELETE FROM qc_verdicts WHERE pipeline_id = ?", [pipeline_id])
            elif verdicts:
                self.execute("DELETE FROM qc_verdicts WHERE run_id IN (SELECT unnest(?))",
                             [[v["run_id"] for v in verdicts]])
            if verdicts:  # one Arrow batch, not row by row
                self.con.register("qc_verdict_batch", table)
                try:
                    self.execute("INSERT INTO qc_verdicts SELECT * FROM qc_verdict_batch")
                finally:
                    self.con.unregister("qc_verdict_batch")
        return len(verdicts)

    def verdicts_of(self, pipeline_id: int, run_ids: Sequence[int] | None = None,
                    *, detail: bool = True) -> dict[int, dict[str, Any]]:
        cols = "run_id, verdict, summary, guide_set, computed_at" + (", detail" if detail else "")
        if run_ids is None:
            rows = self.rows(f"SELECT {cols} FROM qc_verdicts WHERE pipeline_id = ?", [pipeline_id])
        else:
            rows = self.rows(f"SELECT {cols} FROM qc_verdicts WHERE pipeline_id = ? AND run_id IN"
                             " (SELECT unnest(?))", [pipeline_id, list(run_ids)])
        out = {}
        for r in rows:
            if detail:
                r["detail"] = _load(r["detail"])
            out[r["run_id"]] = r
        return out
