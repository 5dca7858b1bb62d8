"""The ID-free metrics, named like RawTools 2.0.7's ``QcDataTable.csv`` columns.

Each metric follows RawTools' definition (``docs/native-metrics.md`` lists formula and
quirks); where RawTools would crash or print a placeholder (no MS1 scans, SRM data, fewer
than 20 MS1 scans, ...) the native value is computed if the data allow it and None if not.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from qcdaemon.rawfile.peaks import (
    PeakShape,
    PrecursorPeak,
    isolation_interference,
    peak_shape,
    trace_peak,
)
from qcdaemon.rawfile.reader import RunData, Scan
from qcdaemon.rawfile.stats import (
    esi_instability_flags,
    finite_or_none,
    mean,
    median,
    moving_average,
    percentile,
)

CHROM_WINDOW = 20  # MS1 scans in RawTools' moving average of the summed intensity


def compute_values(run: RunData) -> dict[str, Any]:
    """All metric values of one run (JSON-able except ``DateAcquired``)."""
    ms = {level: run.by_level(level) for level in (1, 2, 3)}
    values: dict[str, Any] = {}
    values.update(_identity(run, ms))
    values.update(_counts_and_rates(run.scans, ms))
    values.update(_cycle(ms))
    values.update(_intensities(ms))
    values.update(_fill_times(ms))
    peaks = _precursor_peaks(run, ms[1], ms[2])
    values.update(_precursor_metrics(peaks))
    values.update(_peak_shape_metrics(run, peaks, values.get("MeanDutyCycle(s)")))
    values["ScanEventsDecoded"] = run.events_decoded
    values["MedianMs1IsolationInterference"] = _median_interference(run, ms)
    values.update(_chromatogram_metrics(ms[1]))
    return {k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in values.items()}


def _identity(run: RunData, ms: dict[int, list[Scan]]) -> dict[str, Any]:
    header = run.header
    order = max((s.level for s in run.scans), default=0)  # 0: no scan with an MS order
    return {
        "DateAcquired": header.created or run.created_guess,
        "RawFile": str(run.path),
        "Instrument": header.instrument_name or run.instrument_model_guess,
        "InstrumentModel": header.instrument_model or run.instrument_model_guess,
        "InstrumentSerial": header.serial_number,
        "InstrumentSoftwareVersion": header.software_version,
        "RawFileVersion": header.version,
        "ExperimentMsOrder": ("Ms" if order == 1 else f"Ms{order}") if order else None,
        "Ms1Analyzer": _analyzer(ms[1]),
        "Ms2Analyzer": _analyzer(ms[2]),
        "Ms3Analyzer": _analyzer(ms[3]),
        "FaimsVoltages": sorted({s.faims_cv for s in ms[1] if s.faims_cv is not None}) or None,
    }


def _analyzer(scans: Sequence[Scan]) -> str | None:
    """RawTools names the analyzer of the first scan of an MS order (``MassAnalyzerFTMS``)."""
    if not scans or not scans[0].analyzer:
        return None
    return f"MassAnalyzer{scans[0].analyzer}"


def _counts_and_rates(scans: Sequence[Scan], ms: dict[int, list[Scan]]) -> dict[str, Any]:
    total_time = scans[-1].rt - scans[0].rt if scans else None
    out: dict[str, Any] = {"TotalAnalysisTime(min)": total_time, "TotalScans": len(scans)}
    for level in (1, 2, 3):
        out[f"NumMs{level}Scans"] = len(ms[level])
        rate = len(ms[level]) / total_time / 60 if total_time else None
        out[f"Ms{level}ScanRate(/s)"] = rate
    # Scans that are not plain full/zoom/SIM scans, as the scan event names them.
    out["NumSrmScans"] = sum(1 for s in scans if s.kind in ("SRM", "CRM"))
    out["NumPrecursorIonScans"] = sum(1 for s in scans if s.kind == "precursor-ion")
    out["NumNeutralLossScans"] = sum(1 for s in scans if s.kind == "neutral-loss")
    out["NumNeutralGainScans"] = sum(1 for s in scans if s.kind == "neutral-gain")
    return out


def _cycle(ms: dict[int, list[Scan]]) -> dict[str, Any]:
    """Duty cycle (RawTools' convention), the plain MS1 cycle time, and MS2 scans per MS1 scan.

    ``MeanDutyCycle(s)`` is RawTools' column: the median with its trailing NaN, and 0 for a run
    without MS2 scans (RawTools skips its "meta data" for MS1-only runs and prints 0).
    ``MedianMs1CycleTime(s)`` is the native one: the median time between consecutive MS1 scans
    for every run with at least two MS1 scans, MS1-only runs included.
    """
    ms1 = ms[1]
    duty = [(b.rt - a.rt) * 60 for a, b in itertools.pairwise(ms1)]
    triggered: dict[int, int] = {s.number: 0 for s in ms1}
    for scan in ms[2]:
        if scan.master in triggered:
            triggered[scan.master] += 1
    if not duty:
        rawtools_duty = None
    elif not ms[2]:
        rawtools_duty = 0.0
    else:
        rawtools_duty = percentile([*duty, float("nan")], 50)
    return {
        "MeanDutyCycle(s)": rawtools_duty,
        "MedianMs1CycleTime(s)": median(duty),
        "MeanMs2TriggerRate(/Ms1Scan)": mean(list(triggered.values())),
    }


def _intensities(ms: dict[int, list[Scan]]) -> dict[str, Any]:
    top80 = [s.top80 for s in ms[2] if s.top80 is not None]
    return {
        "Ms1MedianSummedIntensity": median([s.summed for s in ms[1]]),
        "Ms2MedianSummedIntensity": median([s.summed for s in ms[2]]),
        "Ms3MedianSummedIntensity": median([s.summed for s in ms[3]]),
        "MedianMs2PeakFractionConsumingTop80PercentTotalIntensity": median(top80),
        "NumEsiInstabilityFlags": esi_instability_flags([s.summed for s in ms[1]]) if ms[1] else None,
    }


def _fill_times(ms: dict[int, list[Scan]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in (1, 2, 3):
        times = [s.fill_time for s in ms[level] if s.fill_time is not None]
        out[f"MedianMs{level}FillTime(ms)"] = median(times)
    return out


def _precursor_peaks(run: RunData, ms1: list[Scan], ms2: list[Scan]) -> list[PrecursorPeak]:
    """One traced precursor peak per MS2 scan whose master is an MS1 scan."""
    order = [s.number for s in ms1]
    position = {n: i for i, n in enumerate(order)}
    rt = {s.number: s.rt for s in ms1}
    peaks: list[PrecursorPeak] = []
    for scan in ms2:
        if scan.master not in position or scan.parent_mz is None:
            continue
        peaks.append(trace_peak(order, run.ms1_peaks, rt, position[scan.master], scan.parent_mz))
    return peaks


def _precursor_metrics(peaks: Sequence[PrecursorPeak]) -> dict[str, Any]:
    # RawTools includes the 0 of every MS2 scan whose precursor it could not find.
    return {"MedianPrecursorIntensity": median([p.parent_intensity for p in peaks])}


def _peak_shape_metrics(run: RunData, peaks: Sequence[PrecursorPeak], duty_cycle: float | None) -> dict[str, Any]:
    shapes = [s for s in (peak_shape(p) for p in peaks if p.has_shape) if s is not None]
    width10 = _median_of(shapes, "widths", 10)
    width50 = _median_of(shapes, "widths", 50)
    gradient = run.scans[-1].rt if run.scans else None  # RawTools: RT of the last scan
    return {
        "MedianPeakWidthAt10%H(s)": width10 * 60 if width10 is not None else None,
        "MedianPeakWidthAt50%H(s)": width50 * 60 if width50 is not None else None,
        "MedianAsymmetryAt10%H": _median_of(shapes, "asymmetries", 10),
        "MedianAsymmetryAt50%H": _median_of(shapes, "asymmetries", 50),
        "MeanCyclesPerAveragePeak": width10 * 60 / duty_cycle if width10 is not None and duty_cycle else None,
        "PeakCapacity": gradient / width50 if gradient is not None and width50 else None,
        "NumPrecursorPeaksWithShape": len(shapes),
    }


def _median_of(shapes: Sequence[PeakShape], attr: str, level: int) -> float | None:
    return median([getattr(s, attr)[level] for s in shapes])


def _median_interference(run: RunData, ms: dict[int, list[Scan]]) -> float | None:
    """Median over the scans of the deepest MS order, as RawTools computes it (NaN-first)."""
    by_number = {s.number: s for s in run.scans}
    deepest = 3 if ms[3] else 2
    values = []
    for scan in ms[deepest]:
        ms2 = (by_number.get(scan.master) if scan.master is not None else None) if deepest == 3 else scan
        ms1 = by_number.get(ms2.master) if ms2 is not None and ms2.master is not None else None
        if ms2 is None or ms1 is None or ms1.level != 1 or ms2.parent_mz is None or ms2.isolation_width is None:
            continue
        values.append(isolation_interference(
            run.ms1_peaks[ms1.number], ms2.parent_mz, ms2.isolation_width, ms2.mono_mz, scan.charge))
    return percentile(values, 50)


def _chromatogram_metrics(ms1: Sequence[Scan]) -> dict[str, Any]:
    """Where the 20-scan moving average of MS1 summed intensity exceeds 10 % of its maximum.

    As in RawTools the times are retention times (not offsets from the first scan) and the
    fraction is relative to the RT of the last MS1 scan.
    """
    if not ms1:
        return dict.fromkeys(_CHROM_KEYS)
    summed = [s.summed for s in ms1]
    threshold = max(summed) / 10
    above = [i for i in range(len(ms1)) if moving_average(summed, i, CHROM_WINDOW) > threshold]
    if not above:  # no MS1 signal at all (RawTools would report 0, RT(last MS1), 0)
        return dict(zip(_CHROM_KEYS, (None, None, 0.0)))
    first, last, end = ms1[above[0]].rt, ms1[above[-1]].rt, ms1[-1].rt
    return dict(zip(_CHROM_KEYS, (first, end - last, (last - first) / end if end else None)))


_CHROM_KEYS = (
    "TimeBeforeFirstExceedanceOf10%MaxIntensity",
    "TimeAfterLastExceedanceOf10%MaxIntensity",
    "FractionOfRunAbove10%MaxIntensity",
)

