"""MS2 spectra straight from the RAW file (opentfraw): centroid peaks, precursor m/z and charge, RT.

opentfraw returns the stored centroid list for centroid scans and for Orbitrap (FTMS) profile scans;
the search takes those peaks as they are.  The precursor is the trailer's monoisotopic m/z where the
instrument set one, else the reaction m/z of the scan filter; the charge is the trailer's charge
state (0 = unknown: Sage then tries the configured charge range).  Every decoding failure becomes
:class:`CorruptRawFile` with the reason, like the native reader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import opentfraw

from ..rawfile.reader import CorruptRawFile

REPORTER_WINDOW = (125.5, 135.5)  # m/z range that holds every TMT/TMTpro reporter ion
_FILTER_PRECURSOR = re.compile(r"\bms2\s+(\d+(?:\.\d+)?)@")


@dataclass(frozen=True)
class Ms2Spectrum:
    scan: int
    rt: float  # minutes
    precursor_mz: float
    charge: int  # 0 = unknown
    isolation_width: float | None
    analyzer: str | None  # FTMS, ITMS, ...
    injection_time: float  # ms (0 when unknown)
    mz: np.ndarray  # float32, ascending
    intensity: np.ndarray  # float32
    reporter_mz: np.ndarray  # the peaks inside REPORTER_WINDOW (float64), for TMT
    reporter_intensity: np.ndarray


@dataclass
class Ms2Summary:
    """Counts filled in while :func:`iter_ms2` runs."""

    scans: int = 0
    ms2: int = 0  # MS2 scans in the file
    usable: int = 0  # MS2 scans with a precursor m/z and at least one peak
    analyzers: set[str] | None = None


def iter_ms2(raw_path: Path | str, summary: Ms2Summary | None = None) -> Iterator[Ms2Spectrum]:
    """Yield the MS2 spectra of ``raw_path`` in scan order (MS1 and MS3+ are skipped)."""
    path = Path(raw_path)
    summary = summary if summary is not None else Ms2Summary()
    summary.analyzers = set()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = _call(path, "open", lambda: opentfraw.RawFile(str(path)))
    table = _call(path, "scan index", raw.scan_table)
    numbers = table.get("scan_number") or []
    summary.scans = len(numbers)
    for i, number in enumerate(numbers):
        if table["ms_level"][i] != 2:
            continue
        summary.ms2 += 1
        spectrum = _spectrum(path, raw, table, i, int(number))
        if spectrum is None:
            continue
        summary.usable += 1
        if spectrum.analyzer:
            summary.analyzers.add(spectrum.analyzer)
        yield spectrum


def _spectrum(path: Path, raw: Any, table: dict[str, list[Any]], i: int, number: int) -> Ms2Spectrum | None:
    mz, intensity = _call(path, f"scan {number}", lambda: raw.peaks(number))
    mz = np.asarray(mz, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    if mz.shape != intensity.shape:
        raise CorruptRawFile(f"{path.name}: scan {number}: inconsistent peak data")
    keep = np.isfinite(mz) & np.isfinite(intensity) & (intensity > 0)
    mz, intensity = mz[keep], intensity[keep]
    if mz.size > 1 and np.any(np.diff(mz) < 0):
        order = np.argsort(mz, kind="stable")
        mz, intensity = mz[order], intensity[order]
    precursor = _precursor_mz(raw, table, i, number)
    if precursor is None or mz.size == 0:
        return None
    lo, hi = np.searchsorted(mz, REPORTER_WINDOW)
    return Ms2Spectrum(
        scan=number,
        rt=float(table["retention_time"][i]),
        precursor_mz=precursor,
        charge=_int(table["charge"][i]),
        isolation_width=_float(table["isolation_width"][i]),
        analyzer=table["analyzer"][i],
        injection_time=_float(table["ion_injection_time_ms"][i]) or 0.0,
        mz=mz.astype(np.float32), intensity=intensity.astype(np.float32),
        reporter_mz=mz[lo:hi].copy(), reporter_intensity=intensity[lo:hi].copy(),
    )


def _precursor_mz(raw: Any, table: dict[str, list[Any]], i: int, number: int) -> float | None:
    """Trailer "Monoisotopic M/Z" when set (> 0), else the scan filter's reaction m/z."""
    try:
        params = raw.scan_parameters(number)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        params = {}
    mono = _float(params.get("Monoisotopic M/Z:")) if isinstance(params, dict) else None
    if mono and mono > 0:
        return mono
    match = _FILTER_PRECURSOR.search(table["filter_string"][i] or "")
    if match:
        return float(match.group(1))
    value = _float(table["precursor_mz"][i])
    return value if value and value > 0 else None


def _call(path: Path, what: str, fn: Any) -> Any:
    try:
        return fn()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise CorruptRawFile(f"{path.name}: truncated or corrupt RAW file ({what}: {reason})") from None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError, OverflowError):
        return 0
