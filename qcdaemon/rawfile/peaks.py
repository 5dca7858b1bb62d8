"""Precursor chromatographic peaks and MS1 isolation interference, as RawTools 2.0.7 does them.

Re-implemented from RawTools' ``AnalyzePeaks`` (``PrecursorPeaks.cs``) and ``Ms1Interference``
as compiled into RawTools.exe 2.0.7 (which differs from some source revisions: the peak
tolerance is 10 ppm and the peak is traced at the reaction's precursor m/z).

Peak tracing, for each MS2 scan: starting at its MS1 master scan, follow the precursor m/z
(closest centroid within 10 ppm) backwards and forwards over consecutive MS1 scans until a
scan lacks it.  RawTools then adds a zero-intensity point one scan *beyond* the first scan
lacking the ion on either side (a quirk we keep: it sets the peak's baseline).  Peaks with
fewer than 5 points or touching the first/last MS1 scan get no shape.  The shape is the
width ``a + b`` and asymmetry ``b / a`` at 10/25/50/75 % of the apex, from linear
interpolation between the points either side of each crossing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PEAK_PPM = 10.0
INTERFERENCE_PPM = 10.0
ISOTOPE_SPACING = 1.003356
SHAPE_LEVELS = (10, 25, 50, 75)

Peaks = dict[int, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PrecursorPeak:
    found: bool
    parent_intensity: float = 0.0
    scans: tuple[int, ...] = ()
    rts: tuple[float, ...] = ()
    intensities: tuple[float, ...] = ()
    touches_edge: bool = False

    @property
    def has_shape(self) -> bool:
        return self.found and len(self.scans) >= 5 and not self.touches_edge


@dataclass(frozen=True)
class PeakShape:
    widths: dict[int, float]  # minutes, keyed by % of apex height
    asymmetries: dict[int, float]


def closest_within(peaks: tuple[np.ndarray, np.ndarray], target: float, ppm: float) -> float | None:
    """Intensity of the centroid closest to ``target`` if it lies within ``ppm``, else None."""
    mz, intensity = peaks
    if mz.size == 0 or target <= 0:
        return None
    i = int(np.searchsorted(mz, target))
    best, best_diff = None, math.inf
    for j in (i - 1, i):
        if 0 <= j < mz.size and abs(float(mz[j]) - target) < best_diff:
            best, best_diff = j, abs(float(mz[j]) - target)
    if best is None or not best_diff / target * 1e6 < ppm:
        return None
    return float(intensity[best])


def trace_peak(ms1: Sequence[int], ms1_peaks: Peaks, rt: dict[int, float], start: int, target: float) -> PrecursorPeak:
    """``AnalyzePeaks.OnePeak``: the XIC of ``target`` around the MS1 scan ``ms1[start]``."""
    parent = ms1[start]
    if closest_within(ms1_peaks[parent], target, PEAK_PPM) is None:
        return PrecursorPeak(found=False)
    points: dict[int, float] = {}
    before = _walk(ms1, ms1_peaks, target, start, -1, points)
    after = _walk(ms1, ms1_peaks, target, start + 1, +1, points)
    touches_edge = False
    for bound, edge in ((before, min(points)), (after, max(points))):
        if bound == edge:
            touches_edge = True
        else:
            points[bound] = 0.0
    scans = tuple(sorted(points))
    return PrecursorPeak(
        found=True,
        parent_intensity=points[parent],
        scans=scans,
        rts=tuple(rt[s] for s in scans),
        intensities=tuple(points[s] for s in scans),
        touches_edge=touches_edge,
    )


def _walk(ms1: Sequence[int], ms1_peaks: Peaks, target: float, index: int, step: int, points: dict[int, float]) -> int:
    """Collect consecutive MS1 scans holding ``target``; return RawTools' zero-point scan."""
    last = len(ms1) - 1
    if index > last:  # forward walk starting past the end
        return ms1[last]
    while True:
        scan = ms1[index]
        hit = closest_within(ms1_peaks[scan], target, PEAK_PPM)
        if hit is None:
            beyond = index + step
            return scan if beyond < 0 or beyond > last else ms1[beyond]
        points[scan] = hit
        index += step
        if index < 0 or index > last:
            return scan


def peak_shape(peak: PrecursorPeak) -> PeakShape | None:
    """``AnalyzePeaks.GetPeakShape`` for a peak with ``has_shape`` (None if it has no apex)."""
    rts, ints = peak.rts, peak.intensities
    top = max(range(len(ints)), key=lambda i: (ints[i], -i))
    if not ints[top] > 0:
        return None
    widths: dict[int, float] = {}
    asym: dict[int, float] = {}
    for level in SHAPE_LEVELS:
        height = ints[top] * level / 100
        left, right = _crossing(ints, top, height, -1), _crossing(ints, top, height, +1)
        if left is None or right is None:
            return None
        a = rts[top] - _interpolate(rts[left], ints[left], rts[left + 1], ints[left + 1], height)
        b = _interpolate(rts[right - 1], ints[right - 1], rts[right], ints[right], height) - rts[top]
        widths[level] = a + b
        asym[level] = _divide(b, a)
    return PeakShape(widths, asym)


def _crossing(ints: Sequence[float], top: int, height: float, step: int) -> int | None:
    """First index from the apex (walking by ``step``) whose intensity is below ``height``."""
    i = top
    while 0 <= i < len(ints) and ints[i] >= height:
        i += step
    return i if 0 <= i < len(ints) else None


def _divide(b: float, a: float) -> float:
    """IEEE division as in C# (x/0 is +-inf, 0/0 is NaN)."""
    if a != 0:
        return b / a
    return math.copysign(math.inf, b) if b else math.nan


def _interpolate(x0: float, y0: float, x1: float, y1: float, y: float) -> float:
    return x0 + (y - y0) * (x1 - x0) / (y1 - y0)


def isolation_interference(ms1: tuple[np.ndarray, np.ndarray], parent_mz: float, width: float, mono_mz: float, charge: int) -> float:
    """``Ms1Interference.CalculateForOneScan``: non-isotope share of the isolation window.

    Window: ``parent_mz ± width/2`` (exclusive).  Isotopes: ``mono + k * 1.003356 / z`` below
    ``mono + width/2``; a centroid within 10 ppm of one of them is precursor signal.
    NaN when the window is empty (RawTools divides 0 by 0).
    """
    mz, intensity = ms1
    lo, hi = parent_mz - 0.5 * width, parent_mz + 0.5 * width
    i0, i1 = int(np.searchsorted(mz, lo, side="right")), int(np.searchsorted(mz, hi, side="left"))
    window_mz, window_int = mz[i0:i1], intensity[i0:i1]
    isotopes = _isotopes(mono_mz, width, charge)
    if isotopes.size:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ppm = np.abs(window_mz[:, None] - isotopes[None, :]) / isotopes[None, :] * 1e6
        is_precursor = np.min(ppm, axis=1) < INTERFERENCE_PPM
    else:
        is_precursor = np.zeros(window_mz.shape, dtype=bool)
    total = float(np.sum(window_int))
    if total == 0:
        return float("nan")
    return float(np.sum(window_int[~is_precursor])) / total


def _isotopes(mono_mz: float, width: float, charge: int) -> np.ndarray:
    limit = mono_mz + 0.5 * width
    step = ISOTOPE_SPACING / charge if charge else float("inf")
    out: list[float] = []
    current = mono_mz
    while current < limit and len(out) < 1000:
        out.append(current)
        current += step
    return np.asarray(out, dtype=np.float64)
