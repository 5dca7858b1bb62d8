"""The store file (opened read-only for a moment) and each [[watch]]'s pipeline and owner in it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from qcdaemon.config import WatchConfig
from qcdaemon.errors import QcdaemonError
from qcdaemon.system.doctor.checks import FAIL, OK, WARN, Check, MiB
from qcdaemon.system.plan import show


def _pid(message: str) -> str | None:
    m = re.search(r"PID (\d+)", message)
    return m.group(1) if m else None


def check_store(db: Path) -> Check:
    """Open the DuckDB file read-only for a moment; a lock held by the daemon is fine."""
    return inspect_store(db, ())[0]


Targets = tuple[Check, Check]  # (watch[i].pipeline, watch[i].owner)


def inspect_store(db: Path, watches: Sequence[WatchConfig] = (), *, config: str = "") -> tuple[Check, list[Targets]]:
    """The store row, and for each [[watch]] whether its pipeline and owner exist.

    The daemon stops at start-up on a [[watch]] whose pipeline or owner is not in the store
    (``Ingest.resolve``); these rows say so beforehand.  The file is opened read-only with plain
    DuckDB (``Store`` would migrate, that is write); ``config`` is the config file named in the
    hints (the admin commands must reach the same database).
    """
    if not db.exists():
        store = Check("store", OK, f"{db} not created yet (the daemon creates it on first start)")
        return store, [_targets(i, w, None, config=config) for i, w in enumerate(watches)]
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        msg = str(exc)
        if "lock" in msg.lower() or "being used by another process" in msg:
            pid = _pid(msg)
            store = Check("store", OK, "in use by the running daemon" + (f" (pid {pid})" if pid else ""))
            return store, [_same(i, OK, "checked by the running daemon") for i in range(len(watches))]
        if "not a valid DuckDB database" in msg:
            store = Check("store", FAIL, f"{db} is not a valid DuckDB database (corrupt?): move it aside "
                                         "or restore a snapshot")
        else:
            store = Check("store", FAIL, f"cannot open {db}: {msg.splitlines()[0]}")
        return store, _unchecked(len(watches))
    try:
        tables = con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
        size = db.stat().st_size / MiB
        targets = [_targets(i, w, con, config=config) for i, w in enumerate(watches)]
    except duckdb.Error as exc:
        store = Check("store", FAIL, f"{db} opens but cannot be read (corrupt?): {str(exc).splitlines()[0]}")
        return store, _unchecked(len(watches))
    finally:
        con.close()
    return Check("store", OK, f"{db} ({size:.1f} MB, {tables[0] if tables else 0} tables)"), targets


def _same(i: int, status: str, detail: str) -> Targets:
    return Check(f"watch[{i}].pipeline", status, detail), Check(f"watch[{i}].owner", status, detail)


def _unchecked(n: int) -> list[Targets]:
    return [_same(i, WARN, "not checked: the store cannot be read (see the store row)") for i in range(n)]


def _exists(con: duckdb.DuckDBPyConnection | None, sql: str, params: list[str]) -> bool:
    """Whether the query returns a row; a table that does not exist yet holds no rows."""
    if con is None:
        return False
    try:
        return con.execute(sql, params).fetchone() is not None
    except duckdb.CatalogException:
        return False


_PIPELINE = "SELECT 1 FROM pipelines pl JOIN projects p ON p.id = pl.project_id WHERE "


def _targets(i: int, w: WatchConfig, con: duckdb.DuckDBPyConnection | None, *, config: str) -> Targets:
    """Look the watch's pipeline and owner up the way ``Store.find_pipeline`` and
    ``Store.user_by_email`` do; ``con`` None: the store does not exist (nothing does)."""
    tail = ["--config", config] if config else []
    ref = w.pipeline
    if "/" in ref:
        project, _, slug = ref.partition("/")
        found = _exists(con, _PIPELINE + "p.slug = ? AND pl.slug = ?", [project, slug])
        add = show(["qcdaemon", "pipeline", "add", "--project", project, "--name", slug, *tail])
        if _exists(con, "SELECT 1 FROM projects WHERE slug = ?", [project]):
            hint = f"create it with: {add}"
        else:
            hint = (f"no project {project!r} either; create both with: "
                    f"{show(['qcdaemon', 'project', 'add', project, *tail])}, then {add}")
    else:
        found = _exists(con, _PIPELINE + "pl.uuid = ?", [ref])
        hint = ("no pipeline has this uuid; name it as project-slug/pipeline-slug, or create it with: "
                + show(["qcdaemon", "pipeline", "add", "--project", "SLUG", "--name", "NAME", *tail]))
    pipeline = (Check(f"watch[{i}].pipeline", OK, ref) if found
                else Check(f"watch[{i}].pipeline", FAIL, f"no pipeline {ref!r} ({hint})"))
    email = w.owner.strip().lower()
    if _exists(con, "SELECT 1 FROM users WHERE email = ?", [email]):
        owner = Check(f"watch[{i}].owner", OK, email)
        if found and not owner_sees(con, ref, email):
            project = ref.partition("/")[0] if "/" in ref else "the pipeline's project"
            member = show(["qcdaemon", "project", "add-member", project if "/" in ref else "SLUG", email, *tail])
            owner = Check(f"watch[{i}].owner", WARN,
                          f"{email} is not a member of {project!r}, so cannot see the runs of this folder; the "
                          f"daemon makes them a member at start (or now: {member})")
    else:
        add_user = show(["qcdaemon", "user", "add", email, *tail])
        owner = Check(f"watch[{i}].owner", FAIL, f"no user {w.owner!r} (add it with: {add_user})")
    return pipeline, owner


def read_watch_targets(db: Path, watches: Sequence[WatchConfig]) -> list[dict[str, Any]] | None:
    """Per [[watch]]: whether its pipeline and owner exist and the owner sees the project, read from the
    store opened read-only; None when another process (the running daemon) holds the store."""
    con = None
    if db.exists():
        try:
            con = duckdb.connect(str(db), read_only=True)
        except duckdb.Error as exc:
            msg = str(exc)
            if "lock" in msg.lower() or "being used by another process" in msg:
                return None
            raise QcdaemonError(f"cannot open {db}: {msg.splitlines()[0]}") from None
    try:
        out = []
        for w in watches:
            email = w.owner.strip().lower()
            where = "p.slug = ? AND pl.slug = ?" if "/" in w.pipeline else "pl.uuid = ?"
            params = list(w.pipeline.partition("/")[::2]) if "/" in w.pipeline else [w.pipeline]
            out.append({"path": w.path, "pipeline": w.pipeline, "owner": w.owner,
                        "pipeline_found": _exists(con, _PIPELINE + where, params),
                        "owner_found": _exists(con, "SELECT 1 FROM users WHERE email = ?", [email]),
                        "owner_sees": owner_sees(con, w.pipeline, email)})
        return out
    finally:
        if con is not None:
            con.close()


def owner_sees(con: duckdb.DuckDBPyConnection | None, ref: str, email: str) -> bool:
    """Whether the user may see the pipeline's project (admin, creator or member), as the store decides."""
    where = "p.slug = ? AND pl.slug = ?" if "/" in ref else "pl.uuid = ?"
    params = list(ref.partition("/")[::2]) if "/" in ref else [ref]
    return _exists(
        con,
        _PIPELINE + where + " AND EXISTS (SELECT 1 FROM users u WHERE u.email = ? AND (u.is_admin"
        " OR p.created_by = u.id OR EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = p.id"
        " AND m.user_id = u.id)))",
        [*params, email],
    )
