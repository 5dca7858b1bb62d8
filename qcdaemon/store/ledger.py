"""The ledger of files seen in watched folders: every file version is decided once (run, rejected, alias)."""

from __future__ import annotations

from qcdaemon.core.clock import utcnow
from qcdaemon.store.base import StoreBase
from qcdaemon.store.rows import LedgerKey, LedgerRow


class LedgerQueries(StoreBase):
    # -- ledger of watched files ------------------------------------------------------------

    def ledger_note(self, watch_path: str, path: str, size: int, mtime_ns: int, state: str) -> None:
        """Record a candidate that is not yet finished (seen / settling); one pending row per path."""
        with self.transaction():
            self.execute("DELETE FROM files WHERE path = ? AND sha256 = ''", [path])
            self._ledger_insert(
                {"watch_path": watch_path, "path": path, "size": size, "mtime_ns": mtime_ns, "sha256": ""},
                state=state,
            )

    def ledger_forget_pending(self, path: str) -> None:
        self.execute("DELETE FROM files WHERE path = ? AND sha256 = ''", [path])

    def ledger_known(self, path: str, size: int, mtime_ns: int) -> LedgerRow | None:
        """A finished ledger row for this exact file version (path, size, mtime), if any."""
        return self.row(
            "SELECT * FROM files WHERE path = ? AND size = ? AND mtime_ns = ? AND sha256 <> '' LIMIT 1",
            [path, size, mtime_ns],
        )

    def ledger_final(self, key: LedgerKey, state: str, reason: str | None = None) -> bool:
        """Record a finished candidate that does not become a run (rejected); False if already known."""
        with self.transaction():
            self.execute("DELETE FROM files WHERE path = ? AND sha256 = ''", [key["path"]])
            if self._ledger_exists(key):
                return False
            self._ledger_insert(key, state=state, reason=reason)
        return True

    def ledger_same_content(self, path: str, size: int, sha256: str) -> LedgerRow | None:
        """A finished row for the same bytes at the same path under another mtime, if any."""
        return self.row(
            "SELECT * FROM files WHERE path = ? AND size = ? AND sha256 = ? ORDER BY id LIMIT 1",
            [path, size, sha256],
        )

    def ledger_alias(self, key: LedgerKey, same: LedgerRow) -> None:
        """Remember this (path, size, mtime) as the already-known content ``same`` (no new run)."""
        with self.transaction():
            self.execute("DELETE FROM files WHERE path = ? AND sha256 = ''", [key["path"]])
            if not self._ledger_exists(key):
                self._ledger_insert(key, state=same["state"], run_id=same["run_id"],
                                    reason=f"same content as ledger entry {same['id']} (only the mtime changed)")

    def ledger_exists(self, key: LedgerKey) -> bool:
        return self._ledger_exists(key)

    def ledger(self, limit: int = 200) -> list[LedgerRow]:
        return self.rows(f"SELECT * FROM files ORDER BY updated_at DESC LIMIT {int(limit)}")

    def ledger_rejected(self, limit: int = 100) -> list[LedgerRow]:
        """Files of watched folders that did not become runs (not RAW), newest first, with the reason."""
        return self.rows(
            "SELECT * FROM files WHERE state = 'rejected' ORDER BY updated_at DESC, id DESC"
            f" LIMIT {min(max(int(limit), 0), 10000)}"
        )

    def _ledger_exists(self, key: LedgerKey) -> bool:
        return self.row(
            "SELECT 1 FROM files WHERE path = ? AND size = ? AND mtime_ns = ? AND sha256 = ?",
            [key["path"], key["size"], key["mtime_ns"], key["sha256"]],
        ) is not None

    def _ledger_insert(self, key: LedgerKey, *, state: str, reason: str | None = None,
                       run_id: int | None = None) -> None:
        now = utcnow()
        self.execute(
            "INSERT INTO files VALUES (nextval('seq_files'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [key["watch_path"], key["path"], key["size"], key["mtime_ns"], key["sha256"], state, reason, run_id,
             now, now],
        )
