"""Run one external tool as a low-priority child that can always be stopped.

:func:`run_tool` is the only door to RawTools and MaxQuant.  It never uses a shell, sends the
tool's output to files (never pipes, which fill up and hang the tool), runs it at low priority
in its own process group, and makes sure the tool dies with the daemon:

* POSIX: a new session (so the group can be signalled as a whole), the nice value set in the
  child, and on Linux ``PR_SET_PDEATHSIG=SIGKILL`` so a SIGKILLed daemon takes its direct child
  with it.  No ``preexec_fn`` (unsafe in a threaded process): a tiny trampoline interpreter does
  the set-up and then execs the tool in place (see ``_TRAMPOLINE``).  Stopping = SIGTERM to the
  group, ``grace`` seconds, then SIGKILL to the group.
* Windows: ``BELOW_NORMAL_PRIORITY_CLASS`` and a kill-on-close Job Object (see ``winjob``).

A failed, timed-out or cancelled run is data (a :class:`ToolResult`), not an exception; only
task cancellation propagates (after the tool has been stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from qcdaemon.tools import orphans
from qcdaemon.tools.excerpt import EXCERPT_MAX_CHARS, excerpt_text, read_excerpt

log = structlog.get_logger(__name__)

__all__ = ["EXCERPT_MAX_CHARS", "ToolResult", "excerpt_text", "read_excerpt", "run_tool"]

IS_WINDOWS = os.name == "nt"
TERM_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class ToolResult:
    """What happened to one tool run; the log files stay on disk for the UI and for debugging."""

    argv: tuple[str, ...]
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    started_at: float
    ended_at: float
    stdout_path: Path
    stderr_path: Path
    error_excerpt: str | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at


def _failure_reason(exit_code: int, excerpt: str | None) -> str:
    if exit_code < 0 and not IS_WINDOWS:
        with contextlib.suppress(ValueError):
            head = f"killed by {signal.Signals(-exit_code).name} (exit code {exit_code})"
            return f"{head}: {excerpt}" if excerpt else head
    return f"exit code {exit_code}: {excerpt}" if excerpt else f"exit code {exit_code} (no output captured)"


# Spawning

# The child half of a POSIX spawn.  ``preexec_fn`` is unsafe in a process with threads (the daemon
# has several: the store's, asyncio's executor, watchdog's observers), so the child is a fresh
# interpreter instead: it has no inherited locks and may lower its priority, ask the kernel for
# SIGKILL when the daemon dies (Linux ``PR_SET_PDEATHSIG``; kept across exec) and then exec the
# tool in place, so the tool keeps this pid, its own session and process group.  Its nice value is
# set before exec, so nothing the tool starts ever runs at the daemon's priority.  An exec failure
# is reported as the errno on ``fd``, which closes on a successful exec.
_TRAMPOLINE = """\
import ctypes, os, sys
fd, parent, nice = (int(a) for a in sys.argv[1:4])
try:
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
except OSError:
    pass
if sys.platform.startswith("linux"):
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != parent:  # the daemon died before prctl took effect
        os.kill(os.getpid(), 9)
os.set_inheritable(fd, False)
try:
    os.execvp(sys.argv[4], sys.argv[4:])
except OSError as exc:
    os.write(fd, str(exc.errno).encode())
os._exit(127)
"""


def _exec_report(fd: int) -> str:
    """Blocking: what the trampoline wrote before exec (an errno), or "" when the tool runs."""
    chunks = []
    try:
        while chunk := os.read(fd, 64):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


async def _spawn(argv: tuple[str, ...], cwd: Path, out: IO[bytes] | int, err: IO[bytes], env: dict[str, str],
                 nice: int, stdin: int = asyncio.subprocess.DEVNULL,
                 ) -> tuple[asyncio.subprocess.Process, asyncio.Future[str] | None]:
    """Start the tool; POSIX: through the trampoline, with the future of its exec report (None on
    Windows).  ``out``/``stdin`` may be ``asyncio.subprocess.PIPE`` (a resident tool, tools/resident.py)."""
    io: dict[str, Any] = {"cwd": cwd, "stdin": stdin, "stdout": out, "stderr": err, "env": env}
    if IS_WINDOWS:
        from qcdaemon.tools import winjob

        flags = winjob.creation_flags(nice, has_console=winjob.has_console())
        return await asyncio.create_subprocess_exec(*argv, creationflags=flags, **io), None
    report, w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(w), str(os.getpid()), str(nice), *argv,
            start_new_session=True, pass_fds=(w,), **io,
        )
    except BaseException:
        os.close(report)
        raise
    finally:
        os.close(w)
    return proc, asyncio.ensure_future(asyncio.to_thread(_exec_report, report))


async def _exec_error(proc: asyncio.subprocess.Process, report: asyncio.Future[str] | None) -> OSError | None:
    """The trampoline's exec failure as the OSError a direct spawn would have raised, else None."""
    text = await report if report is not None else ""
    if not text:
        return None
    await proc.wait()
    code = int(text) if text.isdigit() else 0
    return OSError(code, os.strerror(code))  # OSError picks the subclass: FileNotFoundError, ...


def _windows_job(pid: int, nice: int) -> Any:
    from qcdaemon.tools import winjob

    try:
        job = winjob.WindowsJob(priority=winjob.priority_class(nice))
        job.assign(pid)
        return job
    except OSError as exc:  # e.g. a nested job not allowed on an old Windows
        log.warning("tool_job_object_failed", pid=pid, error=str(exc))
        return None


def _start_error(argv0: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"executable not found: {argv0}"
    if isinstance(exc, PermissionError):
        return f"executable not runnable: {argv0} (permission denied)"
    return f"could not start {argv0}: {exc.strerror or exc}"


# Stopping

def _group_alive(pgid: int) -> bool:
    """Is any live (non-zombie) process left in process group ``pgid``?"""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(proc: asyncio.subprocess.Process, job: Any, *, kill: bool) -> bool:
    """Send the graceful (SIGTERM / CTRL_BREAK) or the final (SIGKILL / job kill) stop."""
    if IS_WINDOWS:
        if kill:
            if job is not None:
                job.terminate(1)
            with contextlib.suppress(ProcessLookupError, OSError):
                proc.kill()
            return True
        from qcdaemon.tools import winjob

        if not winjob.has_console():
            return False  # nothing can ask a console-less child to stop gracefully
        with contextlib.suppress(ProcessLookupError, OSError):
            proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
    return True


async def _stop(proc: asyncio.subprocess.Process, job: Any, grace: float, name: str) -> None:
    """Terminate, wait ``grace`` seconds, then kill; logs each step."""
    if proc.returncode is None:
        log.info("tool_terminating", tool=name, pid=proc.pid)
        if _signal_group(proc, job, kill=False):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
    if proc.returncode is None:
        log.warning("tool_killing", tool=name, pid=proc.pid)
        _signal_group(proc, job, kill=True)
        await proc.wait()


async def _group_gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while await asyncio.to_thread(_group_alive, pgid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _reap_group(pgid: int, grace: float, name: str) -> None:
    """After the tool exited: stop anything still running in its process group (POSIX).

    Members already signalled get a moment to die before they count as left over.
    """
    if IS_WINDOWS or await _group_gone_within(pgid, 0.5):
        return
    log.warning("tool_left_processes", tool=name, pgid=pgid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    if not await _group_gone_within(pgid, grace):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        await _group_gone_within(pgid, grace)


async def _wait(proc: asyncio.subprocess.Process, timeout: float, cancel: asyncio.Event | None) -> str:
    """Wait for exit, timeout or the cancel event: returns "exited", "timeout" or "cancel"."""
    try:
        async with asyncio.timeout(timeout):
            if cancel is None:
                await proc.wait()
                return "exited"
            waiter = asyncio.ensure_future(proc.wait())
            stopper = asyncio.ensure_future(cancel.wait())
            try:
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()
            return "exited" if proc.returncode is not None else "cancel"
    except TimeoutError:
        return "timeout"


async def _supervise(proc: asyncio.subprocess.Process, job: Any, name: str, timeout: float,
                     cancel: asyncio.Event | None, grace: float) -> str:
    """Wait for the tool's end (see :func:`_wait`), stopping it and its group as needed."""
    try:
        outcome = await _wait(proc, timeout, cancel)
        if outcome != "exited":
            log.warning("tool_stopping", tool=name, pid=proc.pid, reason=outcome)
            await _stop(proc, job, grace, name)
        await _reap_group(proc.pid, grace, name)
        return outcome
    except asyncio.CancelledError:
        log.warning("tool_stopping", tool=name, pid=proc.pid, reason="task cancelled")
        try:
            await _stop(proc, job, grace, name)
            await _reap_group(proc.pid, grace, name)
        finally:
            if proc.returncode is None:  # cancelled again while stopping: no mercy
                _signal_group(proc, job, kill=True)
        raise


@contextlib.asynccontextmanager
async def _tracked(proc: asyncio.subprocess.Process, nice: int, pid_dir: Path | None, name: str,
                   tool_id: str) -> AsyncIterator[Any]:
    """While the tool runs: its record for ``orphans`` and (Windows) its job object, yielded."""
    job = _windows_job(proc.pid, nice) if IS_WINDOWS else None
    record = orphans.record(pid_dir, name, proc.pid, tool_id)
    try:
        yield job
    finally:
        orphans.forget(record)
        if job is not None:
            job.close()


async def _exec_error_or_kill(proc: asyncio.subprocess.Process, report: asyncio.Future[str] | None,
                             job: Any) -> OSError | None:
    """:func:`_exec_error`; cancelled meanwhile: the trampoline, or the tool it just became, is killed."""
    try:
        return await _exec_error(proc, report)
    except asyncio.CancelledError:
        _signal_group(proc, job, kill=True)
        raise


async def run_tool(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_dir: Path,
    name: str,
    timeout: float,
    nice: int = 10,
    env: Mapping[str, str] | None = None,
    cancel: asyncio.Event | None = None,
    grace: float = TERM_GRACE_SECONDS,
    pid_dir: Path | None = None,
) -> ToolResult:
    """Run ``argv`` to completion, timeout or cancellation and describe what happened.

    Args:
        argv: program and arguments (no shell).
        cwd: working directory; created if missing.
        log_dir: where ``<name>.out`` and ``<name>.err`` go; created if missing.
        name: stage name, used for the log files and log events.
        timeout: seconds before the tool is stopped and the result marked ``timed_out``.
        nice: POSIX nice value for the tool (Windows: mapped to a priority class).
        env: extra variables added to the daemon's environment (not a replacement).
        cancel: when set, the tool is stopped and the result marked ``cancelled``.
        grace: seconds between the graceful stop and the kill.
        pid_dir: where a record of the running tool's process group is kept (see ``orphans``).

    Raises:
        asyncio.CancelledError: the calling task was cancelled; the tool is stopped first.
    """
    argv = tuple(str(a) for a in argv)
    cwd, log_dir = Path(cwd), Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    started = time.time()

    def result(code: int | None, error: str | None, *, timed_out: bool = False, cancelled: bool = False) -> ToolResult:
        return ToolResult(argv, code, timed_out, cancelled, started, time.time(), out_path, err_path, error)

    with open(out_path, "wb") as out, open(err_path, "wb") as err:  # noqa: ASYNC230 (local files, opened in no time)
        if not argv:
            return result(None, "no command configured")
        if cancel is not None and cancel.is_set():
            return result(None, "cancelled before start", cancelled=True)
        tool_id = orphans.new_id()
        try:
            proc, report = await _spawn(argv, cwd, out, err, {**os.environ, **(env or {}), orphans.ENV_KEY: tool_id},
                                        nice)
        except OSError as exc:
            return _not_started(result, name, argv, exc)
        async with _tracked(proc, nice, pid_dir, name, tool_id) as job:
            if (failed := await _exec_error_or_kill(proc, report, job)) is not None:
                return _not_started(result, name, argv, failed)
            log.info("tool_started", tool=name, pid=proc.pid, argv=argv, cwd=str(cwd))
            outcome = await _supervise(proc, job, name, timeout, cancel, grace)
    log.info("tool_exited", tool=name, pid=proc.pid, exit_code=proc.returncode, outcome=outcome,
             seconds=round(time.time() - started, 3))
    return await _described(result, outcome, proc.returncode, timeout, out_path, err_path)


async def _described(result: Callable[..., ToolResult], outcome: str, exit_code: int | None, timeout: float,
                     out_path: Path, err_path: Path) -> ToolResult:
    """The result of a tool that ran: timed out, cancelled, succeeded, or failed (with an excerpt)."""
    if outcome == "timeout":
        return result(exit_code, f"timed out after {timeout:g} s", timed_out=True)
    if outcome == "cancel":
        return result(exit_code, "cancelled", cancelled=True)
    if exit_code == 0:
        return result(0, None)
    excerpt = await asyncio.to_thread(read_excerpt, out_path, err_path)
    assert exit_code is not None
    return result(exit_code, _failure_reason(exit_code, excerpt))


def _not_started(result: Callable[[int | None, str | None], ToolResult], name: str, argv: tuple[str, ...],
                 exc: OSError) -> ToolResult:
    log.error("tool_start_failed", tool=name, argv=argv, error=str(exc))
    return result(None, _start_error(argv[0], exc))
