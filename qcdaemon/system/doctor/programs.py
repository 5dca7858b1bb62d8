"""The engine's tools: each command's program and paths, the tool's version, the .NET runtimes."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from qcdaemon.config import EngineConfig
from qcdaemon.system.doctor.checks import FAIL, OK, WARN, Check, MiB

VERSION_TIMEOUT = 10.0  # seconds for `RawTools.exe -version` (mono starts in well under a second)
PE_READ_LIMIT = 64 * MiB  # how much of an .exe/.dll is searched for its version resource


def check_command(tool: str, argv: Sequence[str]) -> Check:
    """The program of an engine command is found, and every absolute path it names exists."""
    name = f"engine {tool}"
    if not argv:
        return Check(name, WARN, f"engine.{tool}.command not configured: the {tool} stage is skipped")
    exe = argv[0]
    found = exe if os.path.dirname(exe) else shutil.which(exe)
    if found is None:
        return Check(name, FAIL, f"{exe} not found on PATH")
    for path in (found, *(a for a in argv[1:] if os.path.isabs(a))):
        if not os.path.exists(path):
            return Check(name, FAIL, f"{path} does not exist")
    return Check(name, OK, " ".join(argv))


def _output(argv: Sequence[str], *, timeout: float = 20, cwd: str | None = None) -> str | None:
    """stdout + stderr of a command that exits 0, else None.

    No terminal and no input (stdin is /dev/null); on POSIX the command gets its own process
    group, so a timeout also ends whatever it started (a launcher script's mono, say).
    """
    posix = os.name != "nt"
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", cwd=cwd,
                                start_new_session=posix)
    except OSError:
        return None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL) if posix else proc.kill()
        except OSError:
            pass
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a grandchild holds the pipes (Windows)
            pass
        return None
    return out + "\n" + err if proc.returncode == 0 else None


def _first_line(argv: Sequence[str]) -> str | None:
    lines = [ln.strip() for ln in (_output(argv) or "").splitlines() if ln.strip()]
    return lines[0] if lines else None


_VERSION = re.compile(r"v?(\d+(?:\.\d+){1,3})")
_PRODUCT_VERSION = "ProductVersion\0".encode("utf-16-le")
_FIXED_INFO = b"\xbd\x04\xef\xfe"  # VS_FIXEDFILEINFO.dwSignature


def pe_product_version(path: str | os.PathLike[str]) -> str | None:
    """The product version in the version resource of a Windows .exe/.dll (read as bytes; no
    Windows API, no tool): the ``ProductVersion`` string, else VS_FIXEDFILEINFO's product version.

    .NET assemblies carry it too: RawTools.exe says 2.0.7 there (its *file* version is another
    number), MaxQuantCmd its MaxQuant version.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(PE_READ_LIMIT)
    except OSError:
        return None
    if data[:2] != b"MZ":
        return None
    at = 0
    while (key := data.find(_PRODUCT_VERSION, at)) >= 0:
        at = key + 2
        head = key - 6  # a String block: wLength, wValueLength, wType, then the key
        if key % 2 or head < 0:
            continue
        _, value_len, kind = struct.unpack_from("<3H", data, head)
        if kind != 1 or not value_len:  # 1: text
            continue
        value_at = head + ((key + len(_PRODUCT_VERSION) - head + 3) & ~3)  # DWORD-aligned value
        value = data[value_at:value_at + 2 * value_len].decode("utf-16-le", "replace").split("\0")[0]
        if m := _VERSION.match(value.strip()):
            return m.group(1)
    fixed = data.find(_FIXED_INFO)
    if fixed >= 0 and fixed + 24 <= len(data):
        ms, ls = struct.unpack_from("<2I", data, fixed + 16)  # dwProductVersionMS, dwProductVersionLS
        if ms or ls:
            return f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"
    return None


def _assemblies(argv: Sequence[str]) -> list[Path]:
    return [Path(a) for a in argv if Path(a).suffix.lower() in (".exe", ".dll") and Path(a).is_file()]


def rawtools_version(argv: Sequence[str]) -> str:
    """``RawTools 2.0.7 (pyRawTools 0.2.3)`` or ``RawTools version unknown``.

    Asks the command itself (``-version``: never ``-help``, which crashes without a terminal),
    in a scratch working directory because RawTools drops ``rawtools_log.txt`` there; else reads
    the version resource of the RawTools.exe the command names.
    """
    from qcdaemon.tools.rawtools import find_rawtools_exe

    with tempfile.TemporaryDirectory(prefix="qcdaemon-doctor-") as scratch:
        text = _output([*argv, "-version"], timeout=VERSION_TIMEOUT, cwd=scratch) or ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    version = m.group(1) if lines and (m := _VERSION.fullmatch(lines[0])) else None
    exes = _assemblies(argv)
    for exe in exes if version is None else ():
        if version := pe_product_version(exe):
            break
    shown = f"RawTools {version}" if version else "RawTools version unknown"
    bundled = find_rawtools_exe()
    if bundled is not None and any(e.resolve().parent == bundled.resolve().parent for e in exes):
        shown += f" (pyRawTools {importlib.metadata.version('pyRawTools')})"
    return shown


def maxquant_version_text(argv: Sequence[str]) -> str:
    """``MaxQuant 2.4.12.0`` (from the install folder's name, else the assembly's version
    resource) or ``MaxQuant version unknown``."""
    from qcdaemon.tools.maxquant import maxquant_version

    candidates = [a for a in argv if "maxquant" in a.lower() or Path(a).suffix.lower() in (".exe", ".dll")]
    for a in reversed(candidates):
        if (parts := maxquant_version(Path(a))) is not None:
            return "MaxQuant " + ".".join(map(str, parts))
    for exe in reversed(_assemblies(candidates)):
        if product := pe_product_version(exe):
            return f"MaxQuant {product}"
    return "MaxQuant version unknown"


def _runtime_version(runtime: str, path: str) -> tuple[str | None, bool]:
    """(the version to show, whether it can run anything).  dotnet: the installed .NET runtimes
    (MaxQuant needs a runtime, not an SDK), else ``dotnet --version``."""
    if runtime == "dotnet":
        listed = _output([path, "--list-runtimes"])
        runtimes = re.findall(r"^Microsoft\.NETCore\.App (\S+)", listed or "", re.MULTILINE)
        if runtimes:
            return ".NET runtime " + ", ".join(runtimes), True
        version = _first_line([path, "--version"])
        return version, listed is None or version is not None
    return _first_line([path, "--version"]), True


def check_engine(engine: EngineConfig) -> list[Check]:
    """Each tool's command as the engine will run it, with the tool's version, then the .NET
    runtimes (shown if found; FAIL if a command needs one that is missing)."""
    from qcdaemon.tools.maxquant import maxquant_argv
    from qcdaemon.tools.rawtools import default_rawtools_command, rawtools_missing_reason

    mq = engine.maxquant
    tools = {  # MaxQuant: the engine picks mono/dotnet for a bare .exe/.dll; drop the mqpar argument
        "rawtools": tuple(engine.rawtools.command),
        "maxquant": tuple(maxquant_argv(mq.command, Path("mqpar.xml"), mq.runtime)[:-1]) if mq.command else (),
    }
    versions = {"rawtools": rawtools_version, "maxquant": maxquant_version_text}
    rows = []
    for tool, argv in tools.items():
        row = check_command(tool, argv)
        if row.status == OK:
            row = Check(row.name, OK, f"{row.detail}: {versions[tool](argv)}")
        rows.append(row)
    if not tools["rawtools"] and (bundled := default_rawtools_command()):
        rows[0] = Check(rows[0].name, WARN, f"{rows[0].detail}; to use the bundled RawTools set "
                                            f"command = {json.dumps(list(bundled))}")
    elif not tools["rawtools"]:
        rows[0] = Check(rows[0].name, WARN, f"{rows[0].detail}: {rawtools_missing_reason()}")
    for runtime in ("mono", "dotnet"):
        users = [tool for tool, argv in tools.items() if argv and Path(argv[0]).stem == runtime]
        path = shutil.which(runtime)
        if path is None:
            if users:
                rows.append(Check(runtime, FAIL, f"not found on PATH (needed by {', '.join(users)})"))
            continue
        version, usable = _runtime_version(runtime, path)
        if not usable and users:
            rows.append(Check(runtime, FAIL, f"{path}: no .NET runtime installed (needed by {', '.join(users)}; "
                                             "dotnet --list-runtimes lists none)"))
            continue
        rows.append(Check(runtime, OK, f"{path}: {version or 'version unknown'}"))
    return rows
