"""The typed base every store module builds on: one DuckDB connection and its few primitives."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa


class StoreBase:
    """One DuckDB connection, used from one thread only (the gate in ``qcdaemon.store`` sees to that)."""

    con: duckdb.DuckDBPyConnection
    path: Path

    def transaction(self) -> Tx:
        return Tx(self.con)

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
        self.con.execute(sql, list(params))

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

    def next_id(self, seq: str) -> int:
        return int(self.scalar(f"SELECT nextval('{seq}')"))


class Tx:
    """``with store.transaction():`` commits on success and rolls back on any exception."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con.execute("BEGIN TRANSACTION")
        return self.con

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")
