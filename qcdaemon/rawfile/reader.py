"""Read one RAW file into plain per-scan records (the input of the native metrics).

All decoding goes through opentfraw; every failure it can report (truncation, bad offsets,
undecodable scans, a Rust panic) becomes :class:`CorruptRawFile` with the reason.  MS2/MS3
peak lists are reduced to the few numbers the metrics need while reading, so memory stays
proportional to the MS1 data only (which the precursor-peak and interference metrics need).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import opentfraw

from qcdaemon.errors import ParseError
from qcdaemon.rawfile.events import MS_ORDER_NAMES, ScanEvent, read_scan_events
from qcdaemon.rawfile.header import HeaderError, RawHeader, read_header


class CorruptRawFile(ParseError):
    """The file is not a readable Thermo RAW file (not RAW, truncated, or corrupt)."""


class RawFileInAcquisition(ParseError):
    """The file's header says the instrument is still acquiring into it: it is not finished."""


#: Centroid descriptor bits of the peaks Thermo's ``GetCentroidStream(scan, false)`` leaves out,
#: as RawTools reads it: bit 20 = exception peak, bit 21 = reference (lock-mass) peak.  Checked
#: against Thermo's reader on every FTMS scan of the files in tests/data: the kept peaks and
#: their summed intensity are identical.
EXCLUDED_PEAK_BITS = (1 << 20) | (1 << 21)


@dataclass(frozen=True)
class Scan:
    number: int
    level: int  # 1 = MS1 (survey), 2 = MS2, ...; 0 for scans without an MS order (see ``kind``)
    kind: str  # scan type ("Full", "SRM", "Q1MS", ...) or "precursor-ion" / "neutral-loss" / "neutral-gain"
    analyzer: str | None  # "FTMS", "ITMS", ... as in the scan event
    rt: float  # minutes
    fill_time: float | None  # trailer "Ion Injection Time (ms)"
    master: int | None  # scan that triggered this one (trailer or nearest preceding survey scan)
    parent_mz: float | None  # first reaction's precursor m/z (isolation-window centre)
    mono_mz: float  # trailer "Monoisotopic M/Z" (0 when the instrument did not set it)
    charge: int  # trailer "Charge State" (0 when unknown)
    isolation_width: float | None  # first reaction's isolation width (None when the events do not decode)
    faims_cv: float | None
    summed: float  # sum of centroid (FTMS, without exception/reference peaks) / segment intensities
    base_peak: float  # largest of those intensities (0 for an empty scan)
    top80: float | None  # fraction of peaks holding 80 % of the intensity (MS2+ only)


@dataclass
class RunData:
    path: Path
    header: RawHeader
    instrument_model_guess: str | None  # opentfraw's family-based model name (fallback)
    created_guess: dt.datetime | None  # opentfraw's acquisition start (fallback)
    scans: list[Scan]
    ms1_peaks: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    events_decoded: bool = True  # False: MS order from opentfraw, no reaction widths

    def by_level(self, level: int) -> list[Scan]:
        return [s for s in self.scans if s.level == level]


def read_run(raw_path: Path) -> RunData:
    """Decode ``raw_path``; raises :class:`CorruptRawFile` with a reason when it cannot."""
    path = Path(raw_path)
    header, events = _read_header(path)
    raw = _call(path, "open", lambda: opentfraw.RawFile(str(path)))
    if raw.num_scans <= 0:
        raise CorruptRawFile(f"{path.name}: the file holds no scans")
    table = _call(path, "scan index", raw.scan_table)
    first = header.streams.first_scan if header.streams is not None else 1
    scans, ms1_peaks = _read_scans(path, raw, table, events, first)
    return RunData(path, header, raw.instrument_model, _naive_utc(raw.created), scans, ms1_peaks,
                   events_decoded=events is not None)


def _naive_utc(timestamp: float | None) -> dt.datetime | None:
    """opentfraw stores the instrument's wall clock as if it were UTC."""
    if timestamp is None:
        return None
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def _read_header(path: Path) -> tuple[RawHeader, list[ScanEvent] | None]:
    """File header checks and the scan events; OSError (missing file, no permission) propagates."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        try:
            header = read_header(fh, size)
        except HeaderError as exc:
            raise CorruptRawFile(f"{path.name}: {exc}") from None
        if header.in_acquisition:
            raise RawFileInAcquisition(
                f"{path.name}: still being acquired (its header says acquisition in progress); "
                "it can be read once the instrument has finished the run")
        streams = header.streams
        if streams is not None and streams.last_scan < max(streams.first_scan, 1):
            raise CorruptRawFile(f"{path.name}: the file holds no scans (its run header lists none)")
        events = read_scan_events(fh, header.version, streams)
    if events is not None and len(events) != streams.last_scan - streams.first_scan + 1:  # type: ignore[union-attr]
        events = None
    return header, events


def _call(path: Path, what: str, fn: Any) -> Any:
    """Run one opentfraw call, turning any decoding failure (even a Rust panic) into CorruptRawFile."""
    try:
        return fn()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise CorruptRawFile(f"{path.name}: truncated or corrupt RAW file ({what}: {reason})") from None


def _read_scans(
    path: Path, raw: Any, table: dict[str, list[Any]], events: list[ScanEvent] | None, first: int,
) -> tuple[list[Scan], dict[int, Any]]:
    numbers = [int(n) for n in table["scan_number"]]
    masters = _MasterTracker()
    scans: list[Scan] = []
    ms1_peaks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, number in enumerate(numbers):
        event = _event_of(events, number - first)
        level = _level(table, i, event)
        ftms = (event.analyzer if event is not None else table["analyzer"][i]) == "FTMS"
        mz, intensity = _peaks(path, raw, number, ftms)
        if level == 1:
            ms1_peaks[number] = _sorted_by_mz(mz, intensity)
        trailer = _trailer(raw, number) if level >= 2 else {}
        master = masters.add(number, level, _int(trailer.get("Master Scan Number:")))
        scans.append(_scan(table, i, number, level, event, master, trailer, intensity))
    return scans, ms1_peaks


def _event_of(events: list[ScanEvent] | None, index: int) -> ScanEvent | None:
    if events is None or not 0 <= index < len(events):
        return None
    return events[index]


def _level(table: dict[str, list[Any]], i: int, event: ScanEvent | None) -> int:
    """MS order from the scan event (opentfraw's guess only where the events do not decode)."""
    if event is not None:
        return max(event.ms_order, 0)
    level = table["ms_level"][i]
    return int(level) if level is not None else 0


def _peaks(path: Path, raw: Any, number: int, ftms: bool) -> tuple[np.ndarray, np.ndarray]:
    """The scan's peaks as RawTools sees them: FTMS centroids without exception/reference peaks
    (RawTools reads the other analyzers' segmented scans, which carry no such flags)."""
    mz, intensity = _call(path, f"scan {number}", lambda: raw.peaks(number))
    with np.errstate(invalid="ignore", over="ignore"):
        mz = np.asarray(mz, dtype=np.float64)
        intensity = np.asarray(intensity, dtype=np.float64)
    if mz.shape != intensity.shape or not np.all(np.isfinite(intensity)):
        raise CorruptRawFile(f"{path.name}: scan {number}: inconsistent peak data")
    if mz.size and ftms:
        labels = _call(path, f"scan {number} peak labels", lambda: raw.centroid_labels(number))
        descriptor = np.asarray(labels["descriptor"], dtype=np.uint32)
        if descriptor.shape != mz.shape:
            raise CorruptRawFile(f"{path.name}: scan {number}: peak labels do not match the peak list")
        keep = (descriptor & EXCLUDED_PEAK_BITS) == 0
        if not keep.all():
            mz, intensity = mz[keep], intensity[keep]
    return mz, intensity


class _MasterTracker:
    """The scan that triggered each scan, as Thermo's ``GetScanDependents`` links them.

    Newer instruments store the trigger scan number in the trailer ("Master Scan Number");
    it is used when it names an earlier scan one MS level up.  Otherwise (LTQ/Velos files
    store only "Master Index", an event index, not a scan number) a dependent scan belongs
    to the nearest preceding scan one level up.
    """

    def __init__(self) -> None:
        self.level_of: dict[int, int] = {}
        self.last_at_level: dict[int, int] = {}

    def add(self, number: int, level: int, stored: int | None) -> int | None:
        master = None
        if level >= 2:
            if stored is not None and self.level_of.get(stored) == level - 1:
                master = stored
            else:
                master = self.last_at_level.get(level - 1)
        self.level_of[number] = level
        self.last_at_level[level] = number
        return master


def _scan(
    table: dict[str, list[Any]], i: int, number: int, level: int, event: ScanEvent | None,
    master: int | None, trailer: dict[str, Any], intensity: np.ndarray,
) -> Scan:
    summed, base_peak, top80 = _intensity_stats(table, i, level, intensity)
    if event is not None:
        kind = MS_ORDER_NAMES.get(event.ms_order, event.scan_type) if event.ms_order <= 0 else event.scan_type
        analyzer = event.analyzer
        reaction = event.reactions[0] if event.reactions else None
        parent_mz = reaction.precursor_mz if reaction is not None else None
        width = reaction.isolation_width if reaction is not None else None
    else:
        kind, analyzer, width = "unknown", table["analyzer"][i], None
        parent_mz = _reaction_mz(table["filter_string"][i], _float(table["isolation_target_mz"][i]))
    return Scan(
        number=number,
        level=level,
        kind=kind,
        analyzer=analyzer,
        rt=float(table["retention_time"][i]),
        fill_time=_float(table["ion_injection_time_ms"][i]),
        master=master,
        parent_mz=parent_mz,
        mono_mz=_float(trailer.get("Monoisotopic M/Z:")) or 0.0,
        charge=_int(table["charge"][i]) or 0,
        isolation_width=width,
        faims_cv=_float(table["faims_cv"][i]),
        summed=summed,
        base_peak=base_peak,
        top80=top80,
    )


def _intensity_stats(table: dict[str, list[Any]], i: int, level: int, intensity: np.ndarray) -> tuple[float, float, float | None]:
    """(summed, base peak, top-80 fraction) of one scan.

    When no peaks decode but the scan index holds a positive TIC (opentfraw returns no peak
    list for some SRM files), the index's TIC and base peak stand in and top-80 is unknown.
    """
    if intensity.size == 0:
        tic = _float(table["total_ion_current"][i]) or 0.0
        if tic > 0:
            return tic, _float(table["base_peak_intensity"][i]) or 0.0, None
    summed = float(np.sum(intensity))
    base_peak = float(intensity.max()) if intensity.size else 0.0
    return summed, base_peak, (_top80(intensity) if level >= 2 else None)


def _trailer(raw: Any, number: int) -> dict[str, Any]:
    """The scan's trailer values; an undecodable trailer is treated as absent (RawTools: zeros)."""
    try:
        params = raw.scan_parameters(number)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        return {}
    return params if isinstance(params, dict) else {}


def _reaction_mz(filter_string: str | None, isolation_target: float | None) -> float | None:
    """Fallback where the scan events do not decode: the first reaction's precursor m/z.

    opentfraw reports the trailer's monoisotopic m/z as the isolation target where the
    instrument wrote one, so the reaction mass comes from the scan filter
    (``... ms2 976.4042@cid35.00 ...``, 4 decimals).  Where opentfraw's value agrees with the
    filter to that precision it is the stored double and is used as is.
    """
    match = _FILTER_PRECURSOR.search(filter_string or "")
    if match is None:
        return isolation_target
    from_filter = float(match.group(1))
    if isolation_target is not None and abs(isolation_target - from_filter) <= 0.5e-4 + 1e-9:
        return isolation_target
    return from_filter


_FILTER_PRECURSOR = re.compile(r"\bms\d+\s+(\d+(?:\.\d+)?)@")


def _sorted_by_mz(mz: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if mz.size > 1 and np.any(np.diff(mz) < 0):
        order = np.argsort(mz, kind="stable")
        return mz[order], intensity[order]
    return mz, intensity


def _top80(intensity: np.ndarray) -> float:
    """RawTools' ``FractionOfScansConsumingTotalIntensity(80)``, vectorised."""
    if intensity.size == 0:
        return 1.0
    running = np.cumsum(np.sort(intensity)[::-1])
    above = np.nonzero(running > float(np.sum(intensity)) * 80 / 100)[0]
    return float(above[0]) / intensity.size if above.size else 1.0


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None
