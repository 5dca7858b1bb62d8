"""The typed base every store module builds on: one DuckDB connection and its few primitives."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

_TICKS = itertools.count(1)  # one sequence for every store of the process: a version never repeats


# Tables no cached answer reads (the chart cache reads runs, QC values, verdicts, the QC set-up and
# users; the read routes' answer cache also protein groups): their writes leave the data version
# alone.  The alerts' checks write a cursor every 30 s and every sign-in writes a session; with
# them, a cache would hardly ever be used.
QUIET_TABLES = frozenset({"alerts", "alert_events", "alert_deliveries", "alert_attempts", "alert_cursors",
                          "sessions", "tokens", "stages", "files", "chromatograms", "psms"})
_TARGET = re.compile(r"\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+([A-Za-z_]\w*)", re.IGNORECASE)


def _changes_answers(sql: str) -> bool:
    """Whether a write may change what a cached answer shows: yes unless it names a quiet table."""
    m = _TARGET.match(sql)
    return m is None or m.group(1).lower() not in QUIET_TABLES


class DataVersion:
    """Changes after every write statement (but those to ``QUIET_TABLES``) and after the commit of
    a transaction that made one (``execute`` and ``Tx``), so a cache of answers computed from the
    store can tell they may be stale (``service/chartcache.py``).  Shared by the store and its
    reader views (``next`` on the shared count is atomic)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = next(_TICKS)

    def bump(self) -> None:
        self.value = next(_TICKS)


class StoreBase:
    """One DuckDB connection, used from one thread only (the gate in ``qcdaemon.store`` sees to that)."""

    con: duckdb.DuckDBPyConnection
    path: Path
    data_version: DataVersion

    def transaction(self) -> Tx:
        return Tx(self.con, self.data_version)

    # rows() and row() give Any-typed dicts: each public store method declares the row type it
    # returns (qcdaemon.store.rows), and that declaration is what callers are checked against.
    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        cur = self.con.execute(sql, list(params))
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def row(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self.con.execute(sql, list(params)).fetchall()  # fetched to the end: no result left pending
        return rows[0][0] if rows else None

    def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        """Every write goes through here (reads use ``rows``, ``row``, ``scalar``)."""
        self.con.execute(sql, list(params))
        if _changes_answers(sql):
            self.data_version.bump()  # after the statement: committed unless inside a transaction

    def write_rows(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """A write with a RETURNING clause: as ``execute``, and the returned rows as dicts (the
        write and the read of what it wrote in one statement)."""
        cur = self.con.execute(sql, list(params))
        names = [d[0] for d in cur.description or ()]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        if _changes_answers(sql):
            self.data_version.bump()
        return rows

    def write_tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """As ``write_rows``, the returned rows as tuples."""
        rows = self.con.execute(sql, list(params)).fetchall()
        if _changes_answers(sql):
            self.data_version.bump()
        return rows

    def insert_arrow(self, table: str, batch: pa.Table) -> None:
        """One INSERT of a whole Arrow batch (columns in the table's order), not row by row.  The
        batch is found by DuckDB's replacement scan of this frame's local variable (no view is
        registered and dropped: two statements fewer, a third of the cost of a small insert)."""
        _qcd_arrow_batch = batch  # read by name by the statement below
        try:
            self.con.execute(f"INSERT INTO {table} SELECT * FROM _qcd_arrow_batch")
        except duckdb.CatalogException:  # a wrapped connection: this frame is not the caller DuckDB sees
            self.con.register("_qcd_arrow_view", batch)
            try:
                self.con.execute(f"INSERT INTO {table} SELECT * FROM _qcd_arrow_view")
            finally:
                self.con.unregister("_qcd_arrow_view")
        if table.lower() not in QUIET_TABLES:
            self.data_version.bump()  # as ``execute`` does: a cached answer may show this table

    def next_id(self, seq: str) -> int:
        return int(self.scalar(f"SELECT nextval('{seq}')"))


class Tx:
    """``with store.transaction():`` commits on success and rolls back on any exception."""

    def __init__(self, con: duckdb.DuckDBPyConnection, version: DataVersion) -> None:
        self.con = con
        self.version = version

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        # inside another transaction on this connection: joins it (the outer one commits or rolls back)
        self.nested = id(self.con) in _OPEN
        if not self.nested:
            self.con.execute("BEGIN TRANSACTION")
            _OPEN.add(id(self.con))
        self.at = self.version.value
        return self.con

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self.nested:
            return  # an exception goes on to the outer transaction, which rolls back
        try:
            self.con.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            _OPEN.discard(id(self.con))
            if self.version.value != self.at:  # it wrote: the writes are visible to readers only now
                self.version.bump()


_OPEN: set[int] = set()  # connections with a transaction open (each is used by one thread only)
