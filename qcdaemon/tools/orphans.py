"""Tool process groups that outlived a killed daemon (Linux, foreground).

Each tool runs in its own process group; its direct child dies with the daemon (death signal),
but grandchildren (MaxQuant's workers, a shell's children) can survive a ``kill -9``. A stale
group would keep writing into a work folder the restarted daemon re-uses, so every running tool
runs with a random mark in its environment (inherited by everything it starts) and leaves a small
record (group id and mark) while it runs; the next start kills the processes of recorded groups
that carry the mark, so a recycled process or group id is never hit.  Under systemd the cgroup already takes care of this; on
Windows the kill-on-close Job Object does.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

import structlog

log = structlog.get_logger("qcdaemon.engine")


ENV_KEY = "QCDAEMON_TOOL_ID"


def new_id() -> str:
    """A random mark put in a tool's environment; its children and grandchildren inherit it."""
    return secrets.token_hex(12)


def record(pid_dir: Path | None, name: str, pid: int, tool_id: str) -> Path | None:
    """Note a running tool's group and mark; returns the record to ``forget`` when it ends."""
    if pid_dir is None or not Path("/proc").is_dir():
        return None
    pid_dir.mkdir(parents=True, exist_ok=True)
    path = pid_dir / f"{name}-{pid}.pid"
    path.write_text(f"{pid} {tool_id}\n")
    return path


def forget(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def _members(pgid: int, tool_id: str) -> list[int]:
    """Processes of group ``pgid`` that carry the mark (so a recycled group id is never hit)."""
    mark = f"{ENV_KEY}={tool_id}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def kill_stale(pid_dir: Path) -> list[int]:
    """Kill what remains of tools a dead daemon left running; call before any tool starts."""
    killed: list[int] = []
    for path in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else ():
        try:
            pgid, tool_id = path.read_text().split()
            members = _members(int(pgid), tool_id)
        except (OSError, ValueError):
            members = []
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        if members:
            log.warning("stale_tool_killed", pgid=int(pgid), pids=members, record=path.name)
        path.unlink(missing_ok=True)
    return killed
