"""Native ID-free QC metrics straight from a Thermo RAW file (no .NET, no RawTools).

:func:`compute_native_metrics` reads the file with opentfraw and computes the RawTools 2.0.7
scan-level metrics under the names of RawTools' ``QcDataTable.csv`` columns, plus TIC and
base-peak chromatograms per MS order.  See ``docs/native-metrics.md`` for every formula and
how it compares with RawTools.

It is blocking and pure: it only reads ``raw_path``.  Run it in a worker thread or process;
for a 2 MB file it takes tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcdaemon.rawfile.metrics import compute_values
from qcdaemon.rawfile.reader import CorruptRawFile, RawFileInAcquisition, RunData, Scan, read_run

__all__ = ["CHROMATOGRAM_KEYS", "CorruptRawFile", "NativeResult", "RawFileInAcquisition", "compute_native_metrics"]

Chromatogram = list[tuple[float, float]]

#: Chromatogram names: ``MS{level}_TIC`` (summed intensity per scan) and ``MS{level}_BPC``
#: (largest intensity per scan), as RawTools' ``-chro 12TB`` files ``_Ms_TIC_chromatogram.txt``
#: and so on.  MS3 chromatograms appear only for runs with MS3 scans.
CHROMATOGRAM_KEYS = ("MS1_TIC", "MS1_BPC", "MS2_TIC", "MS2_BPC", "MS3_TIC", "MS3_BPC")


@dataclass
class NativeResult:
    """Metric values keyed by QcDataTable.csv column name, and the chromatograms."""

    values: dict[str, Any] = field(default_factory=dict)
    chromatograms: dict[str, Chromatogram] = field(default_factory=dict)


def compute_native_metrics(raw_path: Path) -> NativeResult:
    """Compute the native metrics of one RAW file.

    Raises :class:`CorruptRawFile` (a :class:`~qcdaemon.errors.ParseError`) with the reason
    when the file is not a RAW file, is truncated or cannot be decoded, and
    :class:`RawFileInAcquisition` (also a ParseError, not a CorruptRawFile) when its header says
    the instrument is still acquiring into it.
    """
    path = Path(raw_path)
    try:
        run = read_run(path)
        return NativeResult(values=compute_values(run), chromatograms=chromatograms(run))
    except (ArithmeticError, IndexError, KeyError, TypeError, ValueError) as exc:  # decoded, but inconsistent
        raise CorruptRawFile(f"{path.name}: inconsistent scan data ({type(exc).__name__}: {exc})") from None


def chromatograms(run: RunData) -> dict[str, Chromatogram]:
    """TIC and base-peak chromatograms per MS order present in the run."""
    out: dict[str, Chromatogram] = {}
    for level in (1, 2, 3):
        scans: list[Scan] = run.by_level(level)
        if not scans and level == 3:
            continue
        out[f"MS{level}_TIC"] = [(s.rt, s.summed) for s in scans]
        out[f"MS{level}_BPC"] = [(s.rt, s.base_peak) for s in scans]
    return out
