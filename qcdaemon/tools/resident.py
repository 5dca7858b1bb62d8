"""A long-lived low-priority tool process that talks over its stdin and stdout (the warm search worker).

The same set-up as :func:`qcdaemon.tools.runner.run_tool` (the POSIX trampoline: own session and
process group, nice value, ``PR_SET_PDEATHSIG``; on Windows the priority class and a kill-on-close
Job Object) and the same record in ``pid_dir`` while it lives, so a restarted daemon kills one a
``kill -9`` left behind (``orphans.kill_stale``).  Unlike ``run_tool`` its stdin and stdout are
pipes: the caller writes requests and reads short answers; everything else the tool prints goes to
the ``stderr`` file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from qcdaemon.tools import orphans
from qcdaemon.tools.runner import (
    TERM_GRACE_SECONDS,
    _exec_error,
    _reap_group,
    _spawn,
    _stop,
    _windows_job,
)


@dataclass
class Resident:
    """A started resident tool; :func:`stop_resident` (or its own exit and :func:`reap_resident`) ends it."""

    name: str
    proc: asyncio.subprocess.Process
    job: Any = None
    record: Path | None = None
    closed: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.proc.pid


async def start_resident(argv: Sequence[str], *, cwd: Path, name: str, nice: int, stderr: IO[bytes],
                         env: Mapping[str, str] | None = None, pid_dir: Path | None = None) -> Resident:
    """Start ``argv`` in the existing folder ``cwd`` with piped stdin/stdout; OSError when it cannot start."""
    argv = tuple(str(a) for a in argv)
    tool_id = orphans.new_id()
    env_all = {**os.environ, **(env or {}), orphans.ENV_KEY: tool_id}
    pipe = asyncio.subprocess.PIPE
    proc, report = await _spawn(argv, cwd, pipe, stderr, env_all, nice, stdin=pipe)
    if report is None:  # Windows: no trampoline; the priority class and a kill-on-close Job Object
        return Resident(name, proc, job=_windows_job(proc.pid, nice))
    resident = Resident(name, proc, record=orphans.record(pid_dir, name, proc.pid, tool_id))
    try:
        failed = await _exec_error(proc, report)
    except BaseException:
        await stop_resident(resident, grace=0)
        raise
    if failed is not None:
        await reap_resident(resident)
        raise failed
    return resident


async def stop_resident(resident: Resident, *, grace: float = TERM_GRACE_SECONDS) -> None:
    """Close its stdin (a polite stop), then terminate, ``grace`` seconds, kill; the group goes too."""
    if resident.proc.stdin is not None:
        with contextlib.suppress(OSError, RuntimeError):
            resident.proc.stdin.close()
    if resident.proc.returncode is None and grace > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(resident.proc.wait(), min(grace, 2.0))
    await _stop(resident.proc, resident.job, grace, resident.name)
    await reap_resident(resident, grace=grace)


async def reap_resident(resident: Resident, *, grace: float = TERM_GRACE_SECONDS) -> None:
    """After it exited: stop what is left of its group, forget its record, close its job object."""
    if resident.closed:
        return
    await resident.proc.wait()
    await _reap_group(resident.proc.pid, grace, resident.name)
    resident.closed = True
    orphans.forget(resident.record)
    if resident.job is not None:
        resident.job.close()
