"""`qcdaemon snapshot`: a consistent copy of the database, with and without a running daemon."""

from __future__ import annotations

from pathlib import Path

import duckdb
from daemonproc import Daemon


def _users(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT email FROM users ORDER BY email").fetchall()]
    finally:
        con.close()


def test_snapshot_through_the_running_daemon_and_directly(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    d.setup_lab(mq=False)
    try:
        d.start()
        d.cli("user", "add", "late@lab.org", "--password-stdin", input="late-pass-123\n")  # through the daemon
        target = tmp_path / "backup" / "qc.duckdb"
        target.parent.mkdir()
        target.write_bytes(b"an older backup, world-readable")
        target.chmod(0o644)
        d.cli("snapshot", str(target))
        assert _users(target) == ["late@lab.org", "op@lab.org"]
        assert oct(target.stat().st_mode & 0o777) == "0o600"  # as private as the database it copies
        assert list((d.data / "snapshots").iterdir()) == []  # the daemon's copy was moved out
        assert d.stop() == 0
    finally:
        d.close()
    second = tmp_path / "offline.duckdb"
    d.cli("snapshot", str(second))  # no daemon: the CLI opens the store itself
    assert _users(second) == ["late@lab.org", "op@lab.org"]
    assert oct(second.stat().st_mode & 0o777) == "0o600"
