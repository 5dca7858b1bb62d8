"""Tool process groups that outlived a killed daemon (Linux, foreground).

Each tool runs in its own process group; its direct child dies with the daemon (death signal),
but grandchildren (MaxQuant's workers, a shell's children) can survive a ``kill -9``. A stale
group would keep writing into a work folder the restarted daemon re-uses, so every running tool
leaves a small record (group id and the kernel's start time of its leader) while it runs, and
the next start kills the groups whose records are left, after checking the start time so that a
recycled process id is never hit.  Under systemd the cgroup already takes care of this; on
Windows the kill-on-close Job Object does.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import structlog

log = structlog.get_logger("qcdaemon.engine")


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot


def record(pid_dir: Path | None, name: str, pid: int) -> Path | None:
    """Note a running tool's group; returns the record to ``forget`` when it ends."""
    if pid_dir is None or os.name != "posix":
        return None
    started = _start_time(pid)
    if started is None:
        return None
    pid_dir.mkdir(parents=True, exist_ok=True)
    path = pid_dir / f"{name}-{pid}.pid"
    path.write_text(f"{pid} {started}\n")
    return path


def forget(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def kill_stale(pid_dir: Path) -> list[int]:
    """Kill the groups of tools left running by a daemon that died; call before any tool starts."""
    killed: list[int] = []
    for path in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else ():
        try:
            pgid, started = path.read_text().split()
            pgid_int = int(pgid)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _start_time(pgid_int) == started:
            try:
                os.killpg(pgid_int, signal.SIGKILL)
                killed.append(pgid_int)
                log.warning("stale_tool_killed", pgid=pgid_int, record=path.name)
            except ProcessLookupError:
                pass
        path.unlink(missing_ok=True)
    return killed
