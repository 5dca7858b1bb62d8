"""Small statistics helpers that reproduce RawTools 2.0.7's arithmetic exactly.

RawTools (``RawTools/Utilities/Utilities.cs``, ``AdditionalMath``) uses its own percentile,
moving average and "top-80 %" helpers, with a few quirks that change results by more than
1 % on short runs.  They are reproduced here on purpose and documented in
``docs/native-metrics.md``:

* :func:`percentile` sorts like .NET's ``Array.Sort<double>``: NaN first.  RawTools feeds a
  NaN into the duty-cycle median (the last MS1 scan has no successor), which shifts it.
* :func:`moving_average` returns 0 at exactly ``index == window/2`` and
  ``index == n - window/2`` (the C# branches leave those two indices out).
* :func:`fraction_consuming` counts the peaks *before* the one that crosses 80 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: int) -> float | None:
    """``AdditionalMath.Percentile``: NaN-first sort, midpoint of two ranks when not exact.

    None for an empty input (RawTools would throw).
    """
    n = len(values)
    if n == 0:
        return None
    ordered = sorted(values, key=_nan_first)
    end = n - 1
    if (end * pct / 100) % 1 == 0:
        return float(ordered[end * pct // 100])
    k = end * pct // 100
    return float((ordered[k] + ordered[k + 1]) / 2)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def _nan_first(x: float) -> tuple[int, float]:
    return (0, 0.0) if math.isnan(x) else (1, x)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def moving_average(values: Sequence[float], index: int, window: int) -> float:
    """``AdditionalMath.MovingAverage`` (window-sized mean, clamped at both ends).

    Runs shorter than ``window`` (where RawTools would throw) average the whole run.
    """
    n = len(values)
    half = window // 2
    if n < window:
        return sum(values) / n
    if 0 <= index < half:
        return sum(values[:window]) / window
    if half < index < n - (window - half):
        return sum(values[index - half : index + (window - half)]) / window
    if n - (window - half) < index < n:
        return sum(values[n - window :]) / window
    return 0.0


def fraction_consuming(intensities: Sequence[float], pct: float = 80.0) -> float:
    """``FractionOfScansConsumingTotalIntensity``: share of peaks holding ``pct`` % of the signal."""
    total = sum(intensities)
    ordered = sorted(intensities, reverse=True)
    running = 0.0
    for i, value in enumerate(ordered):
        running += value
        if running > total * pct / 100:
            return i / len(ordered)
    return 1.0


def esi_instability_flags(summed: Sequence[float]) -> int:
    """``NumberOfEsiFlags``: MS1-to-MS1 summed-intensity jumps below 0.1x or above 10x.

    Like RawTools the comparison starts at the pair (2nd, 3rd) MS1 scan.
    """
    flags = 0
    for i in range(2, len(summed)):
        ratio = _ratio(summed[i], summed[i - 1])
        flags += int(ratio < 0.1) + int(ratio > 10)
    return flags


def _ratio(a: float, b: float) -> float:
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a)


def finite_or_none(value: float | None) -> float | None:
    """Non-finite results (0/0, x/0) become None so that the metrics stay JSON-able."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
