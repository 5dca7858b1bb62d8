"""RawTools adapter: where the executable is, its two command lines, staging, output checks.

Behaviour of the real RawTools 2.0.7 (pyRawTools 0.2.3, mono 6.8) that shapes this module,
found by running it:

* It writes ``rawtools_log.txt`` into its **working directory**, and its outputs into ``-o`` /
  ``-qc``; a relative ``-o`` is resolved against the raw file's folder.  So every path we pass
  is absolute and each job runs with ``cwd`` = its own output dir (:func:`job_dir`).  Nothing
  is written next to the input (checked by the tests on a real run).
* It **fails on a symlinked raw file** ("Instrument index not available for requested device",
  exit 1): mono reports the link's own size.  So :func:`stage_raw` copies (a reflink where offered).
* ``-qc`` keeps ``QC.xml`` in its output dir and skips raw files it already lists there: a
  rerun into an old ``rawtools_qc`` exits 0 ("No new files in the directory to QC!") and writes
  no ``QcDataTable.csv``.  Call :func:`clear_outputs` before a rerun; :func:`rawtools_outputs_ok`
  catches it anyway.
* A crash is ``Unhandled Exception: ...`` on stderr with exit code 1 (e.g. small.RAW).
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from qcdaemon.errors import ToolError

if sys.platform.startswith("linux"):
    import fcntl

log = structlog.get_logger(__name__)

DEFAULT_ARGS = "-p -q -x -u -l -m -r TMT11 -chro 12TB"
STAGE_DIR = "stage"
JOB_DIRS = {"rawtools_metrics": "rawtools", "rawtools_qc": "rawtools_qc"}


def find_rawtools_exe() -> Path | None:
    """``RawTools.exe`` from the installed pyRawTools distribution (never imported: its loader
    needs undeclared dependencies), or None when pyRawTools is not installed."""
    try:
        dist = importlib.metadata.distribution("pyRawTools")
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == "RawTools.exe":
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    return None


def default_rawtools_command() -> tuple[str, ...] | None:
    """The command prefix to run RawTools: ``("mono", exe)`` on POSIX, ``(exe,)`` on Windows.

    None when RawTools (or mono, on POSIX) is missing.
    """
    exe = find_rawtools_exe()
    if exe is None:
        return None
    if os.name == "nt":
        return (str(exe),)
    if shutil.which("mono") is None:
        return None
    return ("mono", str(exe))


def rawtools_missing_reason() -> str:
    """Why the RawTools stage is skipped when ``[engine.rawtools] command`` is empty, naming what to do."""
    exe = find_rawtools_exe()
    if exe is not None and (os.name == "nt" or shutil.which("mono")):
        return ("RawTools is not configured: set [engine.rawtools] command = "
                f"[{', '.join(json.dumps(a) for a in default_rawtools_command() or ())}] (the bundled RawTools)")
    if exe is not None:
        return ("RawTools needs mono, which is not installed: install it (Debian/Ubuntu: apt-get install "
                "mono-runtime; others: https://www.mono-project.com) and restart qcdaemon")
    missing_mono = os.name != "nt" and shutil.which("mono") is None
    return ("RawTools is not installed: pip install 'qcdaemon[rawtools]' (the bundled pyRawTools)"
            + (" and install mono (apt-get install mono-runtime)" if missing_mono else "")
            + ", or set [engine.rawtools] command")


def job_dir(work_dir: Path, name: str) -> Path:
    """Output dir of one job (``rawtools`` or ``rawtools_qc``); also its cwd and log dir."""
    return Path(work_dir).absolute() / JOB_DIRS[name]


def rawtools_jobs(
    command: Sequence[str], raw: Path, work_dir: Path, args: str = DEFAULT_ARGS
) -> list[tuple[str, list[str]]]:
    """The two RawTools invocations of one run, as ``(name, argv)``.

    Both read the staged copy ``<work_dir>/stage/<raw name>`` (``raw`` may be the original or
    the staged path; only its name is used), so call :func:`stage_raw` with
    ``work_dir / STAGE_DIR`` first.  Run each with ``cwd=job_dir(work_dir, name)``: RawTools
    drops its ``rawtools_log.txt`` into the working directory.
    """
    work = Path(work_dir).absolute()
    stage = work / STAGE_DIR
    return [
        ("rawtools_metrics", [*command, "-f", str(stage / Path(raw).name),
                              "-o", str(job_dir(work, "rawtools_metrics")), *shlex.split(args)]),
        ("rawtools_qc", [*command, "-d", str(stage), "-qc", str(job_dir(work, "rawtools_qc"))]),
    ]


def stage_raw(raw: Path, stage_dir: Path) -> Path:
    """Make ``stage_dir/<raw name>`` the only raw file in ``stage_dir`` and return its path.

    A **copy**, read-only, never a second name for the instrument's file (no hard link: a tool
    that writes to its input would change the instrument's file).  Where the file system offers
    it (Btrfs, XFS, ...), the copy is a reflink (``FICLONE``: shares the blocks until written,
    instant); else a plain copy, written under a temporary name and renamed, so an interrupted
    copy never looks complete.  Not a symlink: RawTools under mono cannot read a raw file through
    one.  Nothing is written into the raw file's folder.  Blocking (a copy can take minutes):
    call it via ``asyncio.to_thread``.

    Raises:
        ToolError: the raw file is missing, or ``stage_dir`` is the raw file's own folder.
    """
    raw, stage_dir = Path(raw).absolute(), Path(stage_dir).absolute()
    if not raw.is_file():
        raise ToolError(f"raw file {raw} does not exist")
    stage_dir.mkdir(parents=True, exist_ok=True)
    if stage_dir.samefile(raw.parent):
        raise ToolError(f"refusing to stage {raw.name} in its own folder {stage_dir}")
    target = stage_dir / raw.name
    for other in stage_dir.iterdir():  # RawTools -d must see exactly this one file
        if other.name != raw.name and other.suffix.lower() in (".raw", ".partial") and other.is_file():
            other.unlink()
    if target.exists():
        if not target.samefile(raw) and _same_content_guess(target, raw):
            return target
        target.unlink()  # (a hard link left by an older version is replaced by a copy)
    partial = stage_dir / f".{raw.name}.partial"
    how = copy_file(raw, partial)
    if os.name != "nt":  # (on Windows a read-only file would block the work folder's removal)
        os.chmod(partial, 0o444)
    os.replace(partial, target)
    log.debug("raw_staged", path=str(raw), how=how)
    return target


FICLONE = 0x40049409  # Linux ioctl: make dst a reflink (copy-on-write clone) of src


def copy_file(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` (a new inode): a reflink where the file system can, else bytes; returns which."""
    if sys.platform.startswith("linux"):
        with open(src, "rb") as fs, open(dst, "wb") as fd:
            try:
                fcntl.ioctl(fd.fileno(), FICLONE, fs.fileno())
                return "reflink"
            except OSError:
                pass  # not offered here (ext4, tmpfs, another volume): copy the bytes
    shutil.copyfile(src, dst)
    return "copy"


def _same_content_guess(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return sa.st_size == sb.st_size and int(sa.st_mtime) >= int(sb.st_mtime)


def clear_outputs(work_dir: Path) -> None:
    """Remove the RawTools output dirs (and their stale ``QC.xml``) before a rerun."""
    for sub in JOB_DIRS.values():
        shutil.rmtree(Path(work_dir) / sub, ignore_errors=True)


def outputs_summary(work_dir: Path, job: str) -> str:
    """What one job left behind, for the note of a job that exited non-zero after writing it."""
    out = job_dir(work_dir, job)
    if job == "rawtools_qc":
        table = out / "QcDataTable.csv"
        try:
            lines = [ln for ln in table.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no QcDataTable.csv"
        rows = list(csv.reader(lines[:2]))
        header = len(rows[0]) if rows else 0
        # RawTools ends every cell with a comma; a row it stopped writing ends with an empty cell
        cells = len(rows[1]) - (1 if rows[1] and rows[1][-1] == "" else 0) if len(rows) > 1 else 0
        if cells < header:
            return f"QcDataTable.csv with its row cut after column {cells} of {header}"
        return "a complete QcDataTable.csv"
    names = sorted(p.name for p in out.iterdir() if p.is_file() and p.suffix == ".txt"
                   and not p.name.startswith(("rawtools_", "stdout", "stderr"))) if out.is_dir() else []
    return ", ".join(names) or "no files"


def rawtools_outputs_ok(work_dir: Path, jobs: Iterable[str] = tuple(JOB_DIRS)) -> str | None:
    """None when the expected outputs exist and are non-empty, else the reason.

    Checks ``rawtools/*_Metrics.txt`` (metrics job) and ``rawtools_qc/QcDataTable.csv`` with
    at least one data row (QC job).  RawTools can exit 0 without them, so the exit code alone
    does not prove success.
    """
    jobs = tuple(jobs)
    if "rawtools_metrics" in jobs:
        out = job_dir(work_dir, "rawtools_metrics")
        metrics = [p for p in out.glob("*_Metrics.txt") if p.stat().st_size > 0] if out.is_dir() else []
        if not metrics:
            return f"RawTools wrote no _Metrics.txt in {out} (is -x among the arguments?)"
    if "rawtools_qc" in jobs:
        qc = job_dir(work_dir, "rawtools_qc")
        table = qc / "QcDataTable.csv"
        if not table.is_file():
            hint = (" (QC.xml there already lists the file: clear the folder before a rerun)"
                    if (qc / "QC.xml").is_file() else "")
            return f"RawTools wrote no QcDataTable.csv in {qc}{hint}"
        with open(table, encoding="utf-8", errors="replace") as f:
            rows = sum(1 for line in f if line.strip())
        if rows < 2:
            return f"{table} has no data row"
    return None
