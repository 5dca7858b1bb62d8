"""The synchronous DuckDB store: one connection, used from one thread only (see ``gate.py``).

Every public method is one use of the database and returns plain dicts/lists, so callers never
hold a DuckDB result open.  Methods that change several rows run in one transaction.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

from qcdaemon.config import StoreConfig
from qcdaemon.core.clock import utcnow
from qcdaemon.errors import StoreBusy
from qcdaemon.store.alerts import AlertQueries
from qcdaemon.store.auth import AuthQueries
from qcdaemon.store.base import DataVersion
from qcdaemon.store.changes import ChangeQueries
from qcdaemon.store.proteins import ProteinQueries
from qcdaemon.store.qc import QcQueries
from qcdaemon.store.remote import RemoteQueries
from qcdaemon.store.runs import RunQueries
from qcdaemon.store.schema import MIGRATIONS

#: WAL size at which DuckDB checkpoints (its default is 16 MB, about 20 MaxQuant runs).  Each
#: checkpoint rewrites the row groups that grew since the last one, so with runs arriving one by
#: one a larger threshold rewrites each row group fewer times: measured on 250 runs with protein
#: groups, 64 MB costs 20-25 % less CPU per run than 16 MB and gives a 25 % smaller file.  The WAL
#: stays crash-safe either way; start-up replays at most this much.
CHECKPOINT_THRESHOLD = "64MB"
#: Memory DuckDB's allocator may hold on to after a task, freed but not given back.  DuckDB's
#: default, 128 MiB, kept the daemon's RSS 20-40 MiB higher after the heavy read routes at 10,000
#: runs (bench/bench.py); the heavy routes' time did not change measurably.
ALLOCATOR_FLUSH = "16MB"


class Store(ChangeQueries, AuthQueries, RunQueries, ProteinQueries, QcQueries, AlertQueries, RemoteQueries):
    """All of qcdaemon's persistent state in one DuckDB file."""

    def __init__(self, path: Path, cfg: StoreConfig | None = None) -> None:
        cfg = cfg or StoreConfig()
        self.data_version = DataVersion()  # bumped by every write (base.py); shared with reader views
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # password hashes, sealed tokens
        try:
            self.con = duckdb.connect(
                str(path),
                config={
                    "threads": cfg.threads,
                    "memory_limit": cfg.memory_limit,
                    "checkpoint_threshold": CHECKPOINT_THRESHOLD,
                    # jemalloc (DuckDB's allocator on Linux) keeps what a query freed up to this
                    # much before it flushes it back (default 128 MiB): see ALLOCATOR_FLUSH
                    "allocator_flush_threshold": ALLOCATOR_FLUSH,
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                },
            )
        except duckdb.IOException as exc:
            msg = str(exc)
            if "lock" in msg.lower() or "being used by another process" in msg:
                pid = re.search(r"PID (\d+)", msg)
                raise StoreBusy(
                    f"the database {path} is in use by another process"
                    + (f" (pid {pid.group(1)})" if pid else "")
                ) from None
            raise
        self.path = path
        self.migrate()
        self.qc_config_changed()  # what a cache derived from this file's QC configuration before is stale
        for f in (path, path.with_name(path.name + ".wal")):
            if f.exists() and f.stat().st_mode & 0o077:
                os.chmod(f, 0o600)

    # -- plumbing ---------------------------------------------------------------------------

    def migrate(self) -> None:
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, name VARCHAR, applied_at TIMESTAMP)"
        )
        done = int(self.scalar("SELECT coalesce(max(version), 0) FROM schema_version"))
        for version, (name, sql) in enumerate(MIGRATIONS, start=1):
            if version <= done:
                continue
            with self.transaction():
                self.con.execute(sql)
                self.con.execute("INSERT INTO schema_version VALUES (?, ?, ?)", [version, name, utcnow()])

    def schema_version(self) -> int:
        return int(self.scalar("SELECT max(version) FROM schema_version"))







    def checkpoint(self) -> None:
        self.con.execute("FORCE CHECKPOINT")

    def snapshot(self, target: Path) -> None:
        """A consistent copy of the whole database into ``target`` while the daemon runs."""
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        db = self.scalar("SELECT current_database()")
        self.con.execute(f"ATTACH '{_sql_str(str(tmp))}' AS qcd_snapshot")
        try:
            self.con.execute(f'COPY FROM DATABASE "{db}" TO qcd_snapshot')
        finally:
            self.con.execute("DETACH qcd_snapshot")
        tmp.replace(target)

    def close(self) -> None:
        try:
            self.con.execute("CHECKPOINT")
        finally:
            self.con.close()


def _sql_str(s: str) -> str:
    return s.replace("'", "''")
