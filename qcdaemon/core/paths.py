"""Every file and folder under the data directory, named once.

``Config.files`` gives the map for the configured ``[paths] data_dir``; nothing else in qcdaemon
spells one of these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def db(self) -> Path:
        """The DuckDB file (its ``.wal`` sits beside it)."""
        return self.root / "qcdaemon.duckdb"

    @property
    def secret_key(self) -> Path:
        """The key that seals stored API tokens and signs sign-in tokens (0600; back it up)."""
        return self.root / "secret.key"

    @property
    def admin_secret(self) -> Path:
        """The running daemon's admin-channel secret (0600; exists only while it runs)."""
        return self.root / "admin.secret"

    @property
    def daemon_info(self) -> Path:
        """The running daemon's pid and URLs (0600; exists only while it runs)."""
        return self.root / "daemon.json"

    @property
    def demo_password(self) -> Path:
        """The demo user's generated sign-in (0600)."""
        return self.root / "demo-password.txt"

    @property
    def work(self) -> Path:
        """Per-run work folders: tool inputs, outputs and logs."""
        return self.root / "work"

    def work_of(self, run_key: str) -> Path:
        return self.work / run_key

    @property
    def pids(self) -> Path:
        """Marks of running tool process groups (found and killed after a crash)."""
        return self.root / "pids"

    @property
    def incoming(self) -> Path:
        """Uploads while they arrive (``.part`` files; emptied at start)."""
        return self.root / "incoming"

    @property
    def pipelines(self) -> Path:
        """One folder per pipeline (``<project>/<pipeline>``), holding uploaded inputs."""
        return self.root / "pipelines"

    @property
    def snapshots(self) -> Path:
        """Where ``qcdaemon snapshot`` writes when given a bare file name."""
        return self.root / "snapshots"

    @property
    def running_marker(self) -> Path:
        """Exists while the daemon runs; found at start-up, the last run did not stop cleanly (alerts)."""
        return self.root / "running.marker"


def pipeline_inputs(pipeline_path: Path) -> Path:
    """Uploaded RAW files of a pipeline: ``<pipeline>/inputs/<uuid>/<name>``."""
    return pipeline_path / "inputs"
