"""Windows writer probe: is some process still holding the file open for writing?

Xcalibur keeps the .raw open for the whole acquisition and shares it for reading, so a plain
``open()`` (CRT default: deny none) succeeds mid-acquisition and proves nothing. Asking
``CreateFileW`` for ``GENERIC_READ`` with share mode ``FILE_SHARE_READ`` only (deny writers) fails
with ``ERROR_SHARING_VIOLATION`` while any handle with write access exists, and the check is
enforced server-side on SMB shares too. The handle is read-only and closed at once; nothing is
created (``OPEN_EXISTING``). See spec/platform.md section 3.2.

The module imports on every OS; :func:`default_share_probe` is None off Windows.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

ERROR_SHARING_VIOLATION = 32
ERROR_LOCK_VIOLATION = 33

GENERIC_READ = 0x80000000
FILE_SHARE_READ = 0x00000001
OPEN_EXISTING = 3
FILE_ATTRIBUTE_NORMAL = 0x80

def interpret(opened: bool, error: int) -> bool:
    """Decision for one ``CreateFileW`` attempt: True = no writer holds the file.

    A sharing/lock violation means a writer (or a reader that denies readers) has it open: not
    finished. Any other failure is raised as ``OSError`` so it is logged, not mistaken for "done".
    """
    if opened:
        return True
    if error in (ERROR_SHARING_VIOLATION, ERROR_LOCK_VIOLATION):
        return False
    raise OSError(f"CreateFileW failed with Windows error {error}")


def _extended(path: str) -> str:
    # Paths past MAX_PATH need the \\?\ prefix unless long paths are enabled system-wide.
    if len(path) < 248 or path.startswith("\\\\?\\"):
        return path
    if path.startswith("\\\\"):
        return "\\\\?\\UNC\\" + path[2:]
    return "\\\\?\\" + path


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import ctypes
    from ctypes import wintypes as wt

    _k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _k32.CreateFileW.argtypes = [
        wt.LPCWSTR, wt.DWORD, wt.DWORD, wt.LPVOID, wt.DWORD, wt.DWORD, wt.HANDLE,
    ]
    _k32.CreateFileW.restype = wt.HANDLE
    _k32.CloseHandle.argtypes = [wt.HANDLE]
    _k32.CloseHandle.restype = wt.BOOL
    _INVALID_HANDLE = wt.HANDLE(-1).value

    def no_writer(path: Path) -> bool:
        """True when ``path`` can be opened while denying writers, i.e. nobody is writing it."""
        h = _k32.CreateFileW(
            _extended(os.path.abspath(path)), GENERIC_READ, FILE_SHARE_READ, None,
            OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, None,
        )
        if h is None or h == _INVALID_HANDLE:
            return interpret(False, ctypes.get_last_error())
        _k32.CloseHandle(h)
        return True


def default_share_probe() -> Callable[[Path], bool] | None:
    """The probe to use on this OS: :func:`no_writer` on Windows, None elsewhere (Linux has no
    share modes; the settle window alone decides)."""
    if sys.platform == "win32":  # pragma: no cover
        return no_writer
    return None
