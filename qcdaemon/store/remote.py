"""Stages run on a Dask cluster (issue 17): the remote job of a stage's attempt and its worker.

The job state stays here, in the stage's row: the key of the Dask job an attempt submitted
(recorded before the job is submitted, so a restarted daemon knows which job to look for) and the
address of the worker that ran it.
"""

from __future__ import annotations

from qcdaemon.store.base import StoreBase


class RemoteQueries(StoreBase):
    def set_remote_job(self, run_id: int, stage: str, key: str | None) -> None:
        """Record (or with None forget) the Dask job of the stage's current attempt; the worker is
        not known yet."""
        self.execute("UPDATE stages SET remote_key = ?, worker = NULL WHERE run_id = ? AND stage = ?",
                     [key, run_id, stage])

    def remote_job(self, run_id: int, stage: str) -> str | None:
        """The Dask job key recorded for the stage, or None."""
        key = self.scalar("SELECT remote_key FROM stages WHERE run_id = ? AND stage = ?", [run_id, stage])
        return str(key) if key is not None else None

    def set_stage_worker(self, run_id: int, stage: str, worker: str | None) -> None:
        """Where the stage's attempt runs (the Dask worker's address)."""
        self.execute("UPDATE stages SET worker = ? WHERE run_id = ? AND stage = ?", [worker, run_id, stage])
