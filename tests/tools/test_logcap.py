"""Tool logs are capped: head and tail kept, the middle cut, said in the file (issue 12)."""

from __future__ import annotations

from pathlib import Path

from qcdaemon.tools.logcap import cap_log


def test_a_long_log_keeps_its_head_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "maxquant.stdout.log"
    lines = [f"line {i:07d}\n".encode() for i in range(200_000)]  # 2.6 MB
    log.write_bytes(b"".join(lines))
    cut = cap_log(log, max_bytes=100_000, head=20_000, tail=30_000)
    data = log.read_bytes()
    assert cut == len(b"".join(lines)) - 50_000
    assert data.startswith(b"line 0000000\n") and data.endswith(b"line 0199999\n")
    assert b"bytes of this log cut by qcdaemon" in data and len(data) < 50_000 + 200
    assert not list(tmp_path.glob(".*.cap"))


def test_a_short_log_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"ok\n")
    assert cap_log(log, max_bytes=10) == 0 and log.read_bytes() == b"ok\n"
    assert cap_log(tmp_path / "missing.log") == 0
