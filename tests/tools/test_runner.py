"""engine/runner.py and engine/winjob.py: real child processes, no mocks."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qcdaemon.tools import winjob
from qcdaemon.tools.runner import (
    EXCERPT_MAX_CHARS,
    ToolResult,
    excerpt_text,
    read_excerpt,
    run_tool,
)

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and prctl")
REPO = Path(__file__).resolve().parents[2]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def gone(pid: int) -> bool:
    """Dead, or a zombie waiting for an init that does not reap (both count as gone)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and sys.platform.startswith("linux"):
        try:
            return stat.read_text().rpartition(")")[2].split()[0] in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def wait_until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


def pids_in(path: Path, n: int) -> list[int] | None:
    try:
        pids = [int(x) for x in path.read_text().split()]
    except (FileNotFoundError, ValueError):
        return None
    return pids if len(pids) >= n else None


def own_zombies() -> list[int]:
    if not sys.platform.startswith("linux"):
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.append(int(entry.name))
    return found


# A tool that starts a grandchild in its own process group, records both pids, then waits.
FAMILY = """
    import os, signal, subprocess, sys, time
    if {ignore_term}:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time\\n"
        "if {ignore_term}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "time.sleep(600)"])
    with open("pids.tmp", "w") as f:
        f.write(f"{{os.getpid()}} {{child.pid}}")
    os.replace("pids.tmp", "pids")
    time.sleep(600)
"""


def family(ignore_term: bool = False) -> list[str]:
    return py(FAMILY.format(ignore_term=ignore_term))


# --------------------------------------------------------------------------------------------
# Success, failures, excerpts


async def test_success_writes_logs_to_files(tmp_path: Path) -> None:
    res = await run_tool(py("import sys; print('hello'); print('warn', file=sys.stderr)"),
                         cwd=tmp_path / "cwd", log_dir=tmp_path / "logs", name="t", timeout=30)
    assert isinstance(res, ToolResult)
    assert res.ok and res.exit_code == 0 and res.error_excerpt is None
    assert not res.timed_out and not res.cancelled
    assert res.stdout_path == tmp_path / "logs" / "t.out"
    assert res.stdout_path.read_text().strip() == "hello"
    assert res.stderr_path.read_text().strip() == "warn"
    assert res.argv[0] == sys.executable
    assert res.started_at <= res.ended_at and res.duration >= 0


async def test_large_output_never_blocks(tmp_path: Path) -> None:
    res = await run_tool(py("import sys; sys.stdout.write('x' * 5_000_000); sys.stderr.write('y' * 500_000)"),
                         cwd=tmp_path, log_dir=tmp_path, name="big", timeout=30)
    assert res.ok
    assert res.stdout_path.stat().st_size == 5_000_000


async def test_stdin_is_devnull_and_env_is_added(tmp_path: Path) -> None:
    code = "import os, sys; print(repr(sys.stdin.read())); print(os.environ['QCD_X'], 'PATH' in os.environ)"
    res = await run_tool(py(code), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=30, env={"QCD_X": "42"})
    assert res.ok
    assert res.stdout_path.read_text().split() == ["''", "42", "True"]


async def test_exit_code_and_stderr_excerpt(tmp_path: Path) -> None:
    code = "import sys; print('progress 1'); print('bad input file', file=sys.stderr); sys.exit(4)"
    res = await run_tool(py(code), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=30)
    assert not res.ok and res.exit_code == 4
    assert res.error_excerpt == "exit code 4: bad input file"


async def test_dotnet_exception_excerpt(tmp_path: Path) -> None:
    code = """
        import sys
        for i in range(40):
            print(f'noise {i}', file=sys.stderr)
        print('', file=sys.stderr)
        print('Unhandled Exception:', file=sys.stderr)
        print('System.Exception: File x.raw does not exist.', file=sys.stderr)
        for i in range(30):
            print(f'   at Frame{i}()', file=sys.stderr)
        sys.exit(1)
    """
    res = await run_tool(py(code), cwd=tmp_path, log_dir=tmp_path, name="mq", timeout=30)
    lines = res.error_excerpt.splitlines()
    assert lines[0] == "exit code 1: noise 39"
    assert lines[1] == "Unhandled Exception:"
    assert lines[2] == "System.Exception: File x.raw does not exist."
    assert len(lines) == 17 and lines[-1] == "   at Frame13()"


async def test_empty_stderr_falls_back_to_stdout_tail(tmp_path: Path) -> None:
    code = "import sys; [print(f'line {i}') for i in range(50)]; print('dir contains no raw files!'); sys.exit(1)"
    res = await run_tool(py(code), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=30)
    assert res.error_excerpt.startswith("exit code 1: line 31\n")
    assert res.error_excerpt.endswith("dir contains no raw files!")


async def test_no_output_at_all(tmp_path: Path) -> None:
    res = await run_tool(py("raise SystemExit(2)"), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=30)
    assert res.error_excerpt == "exit code 2 (no output captured)"


def test_excerpt_rules() -> None:
    assert excerpt_text("  \n\n") is None
    assert excerpt_text("\n".join(f"l{i}" for i in range(30))) == "\n".join(f"l{i}" for i in range(20))
    assert excerpt_text("a\n\nb\nSystem.Exception: x\nc") == "b\nSystem.Exception: x\nc"
    assert excerpt_text("Unhandled Exception: y\nz") == "Unhandled Exception: y\nz"


def test_excerpt_reads_at_most_16000_chars(tmp_path: Path) -> None:
    err, out = tmp_path / "e", tmp_path / "o"
    err.write_text("x" * (EXCERPT_MAX_CHARS + 10) + "\nUnhandled Exception: late\n")
    out.write_text("")
    assert read_excerpt(out, err) == "x" * EXCERPT_MAX_CHARS


async def test_missing_executable_is_a_result(tmp_path: Path) -> None:
    res = await run_tool([str(tmp_path / "nope" / "MaxQuantCmd"), "x"], cwd=tmp_path, log_dir=tmp_path,
                         name="t", timeout=5)
    assert not res.ok and res.exit_code is None
    assert res.error_excerpt == f"executable not found: {tmp_path / 'nope' / 'MaxQuantCmd'}"
    res = await run_tool(["qcd-no-such-program"], cwd=tmp_path, log_dir=tmp_path, name="t", timeout=5)
    assert res.error_excerpt == "executable not found: qcd-no-such-program"


@posix_only
async def test_not_executable_is_a_result(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\nexit 0\n")
    res = await run_tool([str(script)], cwd=tmp_path, log_dir=tmp_path, name="t", timeout=5)
    assert res.exit_code is None and "permission denied" in res.error_excerpt


async def test_empty_command(tmp_path: Path) -> None:
    res = await run_tool([], cwd=tmp_path, log_dir=tmp_path, name="t", timeout=5)
    assert not res.ok and res.error_excerpt == "no command configured"


# --------------------------------------------------------------------------------------------
# Priority and the child's life


@posix_only
async def test_child_and_grandchild_get_the_nice_value(tmp_path: Path) -> None:
    target = max(os.getpriority(os.PRIO_PROCESS, 0), 7) + 1
    code = """
        import os, subprocess, sys
        print(os.getpriority(os.PRIO_PROCESS, 0))
        sys.stdout.flush()
        subprocess.run([sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"])
    """
    res = await run_tool(py(code), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=30, nice=target)
    assert res.stdout_path.read_text().split() == [str(target), str(target)]


@linux_only
async def test_child_has_pdeathsig_and_own_session(tmp_path: Path) -> None:
    code = """
        import ctypes, os
        sig = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
        print(sig.value, os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())
    """
    res = await run_tool(py(code), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=30)
    assert res.stdout_path.read_text().split() == [str(int(signal.SIGKILL)), "True", "True"]


@linux_only
def test_tool_dies_with_a_killed_daemon(tmp_path: Path) -> None:
    daemon = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from qcdaemon.tools.runner import run_tool
        asyncio.run(run_tool([sys.executable, "-c", "import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(600)"],
                             cwd=Path({str(tmp_path)!r}), log_dir=Path({str(tmp_path)!r}), name="t", timeout=600))
    """)
    proc = subprocess.Popen([sys.executable, "-c", daemon], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        tool = int((tmp_path / "pid").read_text())
        assert not gone(tool)
        proc.kill()  # SIGKILL: the daemon gets no chance to clean up
        proc.wait()
        deadline = time.monotonic() + 10
        while not gone(tool):
            assert time.monotonic() < deadline, "the tool outlived the daemon"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------------
# Stopping: timeout, cancel event, task cancellation


@posix_only
async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = await run_tool(family(), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=1.5)
    assert res.timed_out and not res.ok and not res.cancelled
    assert res.error_excerpt == "timed out after 1.5 s"
    assert res.exit_code == -signal.SIGTERM
    assert time.monotonic() - t0 < 5
    pids = pids_in(tmp_path / "pids", 2)
    assert pids and all(gone(p) for p in pids)
    assert own_zombies() == []


@posix_only
async def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    res = await run_tool(family(ignore_term=True), cwd=tmp_path, log_dir=tmp_path, name="t",
                         timeout=1.5, grace=0.5)
    assert res.timed_out and res.exit_code == -signal.SIGKILL
    pids = pids_in(tmp_path / "pids", 2)
    assert pids and all(gone(p) for p in pids)


@posix_only
async def test_cancel_event_stops_the_tool(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    task = asyncio.create_task(run_tool(family(), cwd=tmp_path, log_dir=tmp_path, name="t",
                                        timeout=600, cancel=cancel))
    await wait_until(lambda: pids_in(tmp_path / "pids", 2) is not None)
    t0 = time.monotonic()
    cancel.set()
    res = await task
    assert res.cancelled and not res.timed_out and not res.ok
    assert res.error_excerpt == "cancelled"
    assert time.monotonic() - t0 < 5
    assert all(gone(p) for p in pids_in(tmp_path / "pids", 2))


async def test_cancel_event_set_before_start(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    cancel.set()
    res = await run_tool(py("open('ran', 'w')"), cwd=tmp_path, log_dir=tmp_path, name="t",
                         timeout=5, cancel=cancel)
    assert res.cancelled and res.exit_code is None and not (tmp_path / "ran").exists()


@posix_only
async def test_task_cancellation_stops_the_tool_and_propagates(tmp_path: Path) -> None:
    task = asyncio.create_task(run_tool(family(), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=600))
    await wait_until(lambda: pids_in(tmp_path / "pids", 2) is not None)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(gone(p) for p in pids_in(tmp_path / "pids", 2))
    assert own_zombies() == []


@posix_only
async def test_leftover_grandchild_is_stopped_after_a_normal_exit(tmp_path: Path) -> None:
    code = """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open("pids", "w").write(str(child.pid))
    """
    res = await run_tool(py(code), cwd=tmp_path, log_dir=tmp_path, name="t", timeout=30, grace=1)
    assert res.ok
    await wait_until(lambda: gone(int((tmp_path / "pids").read_text())), timeout=3)


# --------------------------------------------------------------------------------------------
# winjob: the pure parts (the Win32 calls only run on Windows)


def test_winjob_priority_mapping() -> None:
    assert winjob.priority_class(10) == winjob.BELOW_NORMAL_PRIORITY_CLASS == 0x4000
    assert winjob.priority_class(1) == winjob.BELOW_NORMAL_PRIORITY_CLASS
    assert winjob.priority_class(19) == winjob.IDLE_PRIORITY_CLASS
    assert winjob.priority_class(0) == winjob.priority_class(-5) == winjob.NORMAL_PRIORITY_CLASS


def test_winjob_creation_flags() -> None:
    with_console = winjob.creation_flags(10, has_console=True)
    assert with_console == winjob.CREATE_NEW_PROCESS_GROUP | winjob.BELOW_NORMAL_PRIORITY_CLASS
    assert winjob.creation_flags(10, has_console=False) == with_console | winjob.CREATE_NO_WINDOW


def test_winjob_limit_info() -> None:
    info = winjob.limit_info(winjob.BELOW_NORMAL_PRIORITY_CLASS)
    basic = info.BasicLimitInformation
    assert basic.LimitFlags & winjob.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert basic.LimitFlags & winjob.JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION
    assert basic.LimitFlags & winjob.JOB_OBJECT_LIMIT_PRIORITY_CLASS
    assert basic.PriorityClass == 0x4000
    assert not winjob.limit_info(None).BasicLimitInformation.LimitFlags & winjob.JOB_OBJECT_LIMIT_PRIORITY_CLASS
    # Layout of the Win32 structures (WinNT.h): 64-bit 64/48/144 bytes, 32-bit 48/48/112.
    wide = ctypes.sizeof(ctypes.c_void_p) == 8
    assert ctypes.sizeof(winjob.JOBOBJECT_BASIC_LIMIT_INFORMATION) == (64 if wide else 48)
    assert ctypes.sizeof(winjob.IO_COUNTERS) == 48
    assert ctypes.sizeof(winjob.JOBOBJECT_EXTENDED_LIMIT_INFORMATION) == (144 if wide else 112)


@pytest.mark.skipif(os.name == "nt", reason="checks the non-Windows refusal")
def test_winjob_refuses_off_windows() -> None:
    with pytest.raises(OSError):
        winjob.WindowsJob()
    assert winjob.has_console() is False
