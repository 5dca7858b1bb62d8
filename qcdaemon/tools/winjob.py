"""Windows Job Objects and priority classes for external tools, through ctypes.

On Windows every tool runs in its own Job Object with ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE``:
when the daemon dies, Windows closes its handles, the job closes and every process in it
(MaxQuant and whatever it started) is killed, so a crashed service never leaves a search
running next to the acquisition.  The job also pins the priority class of all its processes
(``JOB_OBJECT_LIMIT_PRIORITY_CLASS``), so grandchildren cannot climb back to normal priority.

This module imports on every platform (the runner imports it lazily, and the tests check the
pure parts on Linux); only :class:`WindowsJob` and :func:`has_console` touch ``kernel32``.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

# Process creation flags (WinBase.h)
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
NORMAL_PRIORITY_CLASS = 0x00000020
IDLE_PRIORITY_CLASS = 0x00000040
BELOW_NORMAL_PRIORITY_CLASS = 0x00004000

# Job object limits (WinNT.h)
JOB_OBJECT_LIMIT_PRIORITY_CLASS = 0x00000020
JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION = 0x00000400
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9  # JobObjectExtendedLimitInformation

PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100


class IO_COUNTERS(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
            "ReadTransferCount", "WriteTransferCount", "OtherTransferCount",
        )
    ]


class JOBOBJECT_BASIC_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", ctypes.c_uint32),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", ctypes.c_uint32),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", ctypes.c_uint32),
        ("SchedulingClass", ctypes.c_uint32),
    ]


class JOBOBJECT_EXTENDED_LIMIT_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", JOBOBJECT_BASIC_LIMIT_INFORMATION),
        ("IoInfo", IO_COUNTERS),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


def priority_class(nice: int) -> int:
    """Map a POSIX nice value to a Windows priority class; never above normal.

    1..14 -> BELOW_NORMAL (the default nice 10 lands here), 15..19 -> IDLE, <= 0 -> NORMAL.
    A tool next to the acquisition software is never given a higher class than normal.
    """
    if nice >= 15:
        return IDLE_PRIORITY_CLASS
    if nice >= 1:
        return BELOW_NORMAL_PRIORITY_CLASS
    return NORMAL_PRIORITY_CLASS


def creation_flags(nice: int, *, has_console: bool) -> int:
    """``creationflags`` for ``CreateProcess``: own process group, low priority, no window.

    With a console (foreground run) the child shares it, so CTRL_BREAK can ask it to stop
    gracefully.  Without one (service, pythonw) ``CREATE_NO_WINDOW`` keeps a console tool from
    opening a window of its own.
    """
    flags = CREATE_NEW_PROCESS_GROUP | priority_class(nice)
    if not has_console:
        flags |= CREATE_NO_WINDOW
    return flags


def limit_info(priority: int | None) -> JOBOBJECT_EXTENDED_LIMIT_INFORMATION:
    """The job limits: kill on close, no WER dialog on a crash, optionally a pinned priority."""
    info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION()
    flags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION
    if priority is not None:
        flags |= JOB_OBJECT_LIMIT_PRIORITY_CLASS
        info.BasicLimitInformation.PriorityClass = priority
    info.BasicLimitInformation.LimitFlags = flags
    return info


def _kernel32() -> Any:
    if os.name != "nt":
        raise OSError("Windows Job Objects are only available on Windows")
    k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    h = ctypes.c_void_p
    k32.CreateJobObjectW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p]
    k32.CreateJobObjectW.restype = h
    k32.SetInformationJobObject.argtypes = [h, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
    k32.SetInformationJobObject.restype = ctypes.c_int
    k32.OpenProcess.argtypes = [ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32]
    k32.OpenProcess.restype = h
    k32.AssignProcessToJobObject.argtypes = [h, h]
    k32.AssignProcessToJobObject.restype = ctypes.c_int
    k32.TerminateJobObject.argtypes = [h, ctypes.c_uint32]
    k32.TerminateJobObject.restype = ctypes.c_int
    k32.CloseHandle.argtypes = [h]
    k32.CloseHandle.restype = ctypes.c_int
    k32.GetConsoleWindow.restype = h
    return k32


def _last_error(what: str) -> OSError:
    code = ctypes.get_last_error()  # type: ignore[attr-defined]
    return OSError(code, f"{what} failed (Windows error {code})")


def has_console() -> bool:
    """True when this process has a console window (foreground run, not a service)."""
    try:
        return bool(_kernel32().GetConsoleWindow())
    except OSError:
        return False


class WindowsJob:
    """One kill-on-close Job Object holding one tool and its descendants.

    Raises:
        OSError: not on Windows, or a Win32 call failed.
    """

    def __init__(self, priority: int | None = BELOW_NORMAL_PRIORITY_CLASS) -> None:
        self._k32 = _kernel32()
        self._handle = self._k32.CreateJobObjectW(None, None)
        if not self._handle:
            raise _last_error("CreateJobObjectW")
        info = limit_info(priority)
        if not self._k32.SetInformationJobObject(
            self._handle, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
            ctypes.byref(info), ctypes.sizeof(info),
        ):
            err = _last_error("SetInformationJobObject")
            self.close()
            raise err

    def assign(self, pid: int) -> None:
        """Put process ``pid`` into the job; processes it starts later join automatically."""
        hproc = self._k32.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, 0, pid)
        if not hproc:
            raise _last_error("OpenProcess")
        try:
            if not self._k32.AssignProcessToJobObject(self._handle, hproc):
                raise _last_error("AssignProcessToJobObject")
        finally:
            self._k32.CloseHandle(hproc)

    def terminate(self, exit_code: int = 1) -> None:
        """Kill every process in the job at once (the Windows equivalent of SIGKILL to a group)."""
        if self._handle:
            self._k32.TerminateJobObject(self._handle, exit_code)

    def close(self) -> None:
        """Close the handle; with kill-on-close this also kills any process still in the job."""
        if self._handle:
            self._k32.CloseHandle(self._handle)
            self._handle = None
