"""RawTools outputs (``QcDataTable.csv``, ``*_Metrics.txt``) -> QC values (pure: files in, values out).

Decisions where the behaviour spec (section 3.1) and ``rawtools.md`` leave room:

* Column names are normalised to the RawTools 2.0.7 ``QcDataTable.csv`` names
  (:data:`RAWTOOLS_COLUMNS`): the 2019 typo ``MedianMs1IsolationInterence`` and the 2018 set
  (``FileName``, ``TotalAnalysisTime``, ``EsiInstabilityFlags(count)``, ``WidthAt10%H(s)``,
  ``IdentipyParameters`` ...) are renamed, so a longitudinal series keeps one column per metric.
  Columns with no 2.0.7 equivalent (``ModificationFrequencyAt*``) keep their own names.
  ``parse_qc_data_table(path, normalize=False)`` returns the file's own names.
* A row shorter than the header (RawTools 2.0.7 throws while writing the row of an MS1-only
  run and leaves it cut after ``MedianMs1FillTime(ms)``) is read as far as it goes; the
  missing columns are ``None``. A row longer than the header is an error.
* Values: integers and finite floats become numbers; empty, ``NaN`` and infinities become
  ``None``; everything else (``Any``, ``None`` as instrument text, search parameters) stays a
  string. ``DateAcquired`` (``MM/dd/yyyy HH:mm:ss``) becomes a naive ``datetime``.
* ``parse_rawtools`` picks the row of the run: the one named ``raw_name`` if given, else the one
  whose ``RawFile`` matches the ``_Metrics.txt``'s, else the only row, else the newest.
  ``_Metrics.txt`` values fill only columns the table lacks (the table has more precision).
  Metrics keys without a QcDataTable equivalent (reporter-ion medians, FAIMS CV) are not mapped.
  With neither file present it raises :class:`~qcdaemon.errors.ParseError`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from qcdaemon.errors import ParseError
from qcdaemon.tools.tsv import MAX_EXACT_INT, bounded

__all__ = ["RAWTOOLS_COLUMNS", "calendar_columns", "parse_metrics_txt", "parse_qc_data_table",
           "parse_rawtools"]

RAWTOOLS_COLUMNS: tuple[str, ...] = (
    "DateAcquired", "RawFile", "Instrument", "ExperimentMsOrder", "Ms1Analyzer", "Ms2Analyzer",
    "Ms3Analyzer", "TotalAnalysisTime(min)", "TotalScans", "NumMs1Scans", "NumMs2Scans",
    "NumMs3Scans", "Ms1ScanRate(/s)", "Ms2ScanRate(/s)", "Ms3ScanRate(/s)", "MeanDutyCycle(s)",
    "MeanMs2TriggerRate(/Ms1Scan)", "Ms1MedianSummedIntensity", "Ms2MedianSummedIntensity",
    "MedianPrecursorIntensity", "MedianMs1IsolationInterference",
    "MedianMs2PeakFractionConsumingTop80PercentTotalIntensity", "NumEsiInstabilityFlags",
    "MedianMassDrift(ppm)", "IdentificationRate(IDs/Ms2Scan)", "DigestionEfficiency",
    "MissedCleavageRate(/PSM)", "MedianPeptideScore", "CutoffDecoyScore(0.05FDR)",
    "NumberOfPSMs", "NumberOfUniquePeptides", "MedianMs1FillTime(ms)", "MedianMs2FillTime(ms)",
    "MedianMs3FillTime(ms)", "MedianPeakWidthAt10%H(s)", "MedianPeakWidthAt50%H(s)",
    "MedianAsymmetryAt10%H", "MedianAsymmetryAt50%H", "MeanCyclesPerAveragePeak", "PeakCapacity",
    "TimeBeforeFirstExceedanceOf10%MaxIntensity", "TimeAfterLastExceedanceOf10%MaxIntensity",
    "FractionOfRunAbove10%MaxIntensity", "PsmChargeRatio3to2", "PsmChargeRatio4to2",
    "SearchParameters",
)

_TABLE_ALIASES = {  # 2019 typo and the 2018 (IdentiPy era) column set -> 2.0.7 names
    "MedianMs1IsolationInterence": "MedianMs1IsolationInterference",
    "FileName": "RawFile",
    "TotalAnalysisTime": "TotalAnalysisTime(min)",
    "EsiInstabilityFlags(count)": "NumEsiInstabilityFlags",
    "MedianMsFillTime(ms)": "MedianMs1FillTime(ms)",
    "WidthAt10%H(s)": "MedianPeakWidthAt10%H(s)",
    "WidthAt50%H(s)": "MedianPeakWidthAt50%H(s)",
    "AsymmetryAt10%H": "MedianAsymmetryAt10%H",
    "AsymmetryAt50%H": "MedianAsymmetryAt50%H",
    "IdChargeRatio3to2": "PsmChargeRatio3to2",
    "IdChargeRatio4to2": "PsmChargeRatio4to2",
    "IdentipyParameters": "SearchParameters",
}
_METRICS_ALIASES = {  # _Metrics.txt keys (DDA and DIA variants) -> QcDataTable names
    "MS1Analyzer": "Ms1Analyzer",
    "MS2Analyzer": "Ms2Analyzer",
    "MS3Analyzer": "Ms3Analyzer",
    "Ms1ScanRate(/sec)": "Ms1ScanRate(/s)",
    "Ms2ScanRate(/sec)": "Ms2ScanRate(/s)",
    "Ms3ScanRate(/sec)": "Ms3ScanRate(/s)",
    "MedianMS1IsolationInterference": "MedianMs1IsolationInterference",
    "MedianAsymmetryFactor": "MedianAsymmetryAt10%H",
    "ExperimentOrder": "ExperimentMsOrder",
    "MS1Scans": "NumMs1Scans",
    "MS2Scans": "NumMs2Scans",
    "MeanDutyCycle": "MeanDutyCycle(s)",
    "MedianMS1FillTime": "MedianMs1FillTime(ms)",
    "MedianMS2FillTime": "MedianMs2FillTime(ms)",
}
_DATE_FORMATS = ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%Y-%m-%d %H:%M:%S",
                 "%Y-%m-%dT%H:%M:%S")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_INTEGER = re.compile(r"[+-]?\d+\Z")
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity", "∞", "-∞"})


def _value(text: str) -> int | float | str | None:
    """A cell as int, float or str; empty and NaN/infinite numbers as ``None``."""
    text = text.strip()
    if not text or text in _NON_FINITE:
        return None
    if _INTEGER.match(text):
        n = int(text)
        return n if abs(n) <= MAX_EXACT_INT else float(n)
    if _NUMBER.match(text):
        x = float(text)
        return x if math.isfinite(x) else None
    return text


#: Counts (scans, peaks, charges...) are never negative; RawTools writes -1 for "not computed"
#: in some columns (IdentificationRate), so -1 is its marker, not a count.
_COUNT = re.compile(r"(?i)(^num|^total|count|scans$)")


def _check_bounds(path: Path, values: dict[str, Any]) -> None:
    """No number beyond physical magnitude; no negative count (issue 12)."""
    for name, x in values.items():
        for item in x if isinstance(x, list) else [x]:
            bounded(path, name, item, nonnegative=False)
            if _COUNT.search(str(name)) and isinstance(item, int | float) and item < 0 and item != -1:
                raise ParseError(f"{path}: {name} = {item!r} is a negative count; not accepted")


def _read_text(path: Path) -> str:
    """The whole file as text; binary data raises ParseError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ParseError(f"{path}: cannot read: {exc}") from exc
    if b"\x00" in data:
        raise ParseError(f"{path}: binary data (NUL byte); not a RawTools text output")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _parse_date(path: Path, text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ParseError(f"{path}: DateAcquired {text!r} is not MM/dd/yyyy HH:mm:ss")


def parse_qc_data_table(path: Path, *, normalize: bool = True) -> list[dict[str, Any]]:
    """Every row of a RawTools ``QcDataTable.csv`` (2.0.7, 2019 or 2018 column set), in file
    order: numbers converted, ``DateAcquired`` a naive datetime, names normalised to
    :data:`RAWTOOLS_COLUMNS` unless ``normalize`` is false."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header = [name.strip() for name in next(reader, [])]
    file_column = "FileName" if "FileName" in header else "RawFile"
    if "DateAcquired" not in header or file_column not in header:
        raise ParseError(f"{path}: header lacks DateAcquired/RawFile; not a RawTools "
                         f"QcDataTable.csv")
    names = [_TABLE_ALIASES.get(n, n) if normalize else n for n in header]
    twice = sorted({n for i, n in enumerate(names) if n and n in names[:i]})
    if twice:
        raise ParseError(f"{path}: duplicated column(s) {', '.join(map(repr, twice))}; which one "
                         "holds the value is unknown")
    rows: list[dict[str, Any]] = []
    for lineno, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            raise ParseError(f"{path}: line {lineno} has {len(cells)} fields, "
                             f"the header has {len(header)}")
        # RawTools 2.0.7 writes each cell followed by a comma and stops mid-row when it throws
        # (MS1-only runs: NullReferenceException after MedianMs1FillTime(ms)); the cells it
        # wrote are complete, the columns it did not reach have no value.
        cells = [*cells, *([""] * (len(header) - len(cells)))]
        row: dict[str, Any] = {n: _value(c) for n, c in zip(names, cells, strict=True)}
        row["DateAcquired"] = _parse_date(path, cells[header.index("DateAcquired")])
        _check_bounds(path, row)
        rows.append(row)
    return rows


def parse_metrics_txt(path: Path) -> dict[str, Any]:
    """A RawTools ``_Metrics.txt``: ``Key: value`` lines as key -> value (numbers converted).
    A key written several times (``FaimsVoltage(CV)``, one line per CV) gives a list."""
    path = Path(path)
    metrics: dict[str, Any] = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, text = line.partition(":")
        if not sep or not key.strip() or any(c.isspace() or c == "," for c in key.strip()):
            raise ParseError(f"{path}: line {lineno} is not a 'Key: value' line")
        key, val = key.strip(), _value(text)
        if key in metrics:
            previous = metrics[key]
            metrics[key] = [*previous, val] if isinstance(previous, list) else [previous, val]
        else:
            metrics[key] = val
    if not metrics:
        raise ParseError(f"{path}: no 'Key: value' lines; not a RawTools _Metrics.txt")
    _check_bounds(path, metrics)
    return metrics


def _metrics_as_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics mapped to QcDataTable names; unmapped keys dropped."""
    columns: dict[str, Any] = {}
    for key, val in metrics.items():
        name = _METRICS_ALIASES.get(key, key)
        if name in RAWTOOLS_COLUMNS and not isinstance(val, list):
            columns[name] = val
    return columns


def calendar_columns(dt: datetime) -> dict[str, str]:
    """Date, Day, Week, Month, Year as spec 3.1 item 4 (ISO week number, calendar year)."""
    return {
        "Date": f"{dt:%Y-%m-%d}",
        "Day": f"{dt.year:04d}-{dt.timetuple().tm_yday:03d}",
        "Week": f"{dt.year:04d}-{dt.isocalendar().week:02d}",
        "Month": f"{dt:%Y-%m}",
        "Year": f"{dt.year:04d}",
    }


def _split_raw_path(raw: Any) -> tuple[str | None, str | None]:
    """(directory, basename) of the path RawTools saw, POSIX or Windows style."""
    if not isinstance(raw, str):
        return None, None
    pure = PureWindowsPath(raw) if "\\" in raw else PurePosixPath(raw)
    parent = str(pure.parent)
    return ("" if parent == "." else parent), pure.name


def _raw_key(name: Any) -> str:
    """Comparable raw-file name: basename without ``.raw``, lower-case."""
    _, base = _split_raw_path(name)
    base = (base or "").lower()
    return base[:-4] if base.endswith(".raw") else base


def _pick_row(rows: list[dict[str, Any]], raw_name: str | None) -> dict[str, Any] | None:
    if raw_name is not None:
        wanted = _raw_key(raw_name)
        return next((r for r in rows if _raw_key(r.get("RawFile")) == wanted), None)
    if len(rows) <= 1:
        return rows[0] if rows else None
    return max(rows, key=lambda r: r["DateAcquired"] or datetime.min)


def _find(base: Path | None, pattern: str) -> list[Path]:
    if base is None or not base.is_dir():
        return []
    return sorted(p for p in base.glob(f"**/{pattern}") if p.is_file())


def _run_metrics(output_dir: Path, raw_name: str | None) -> dict[str, Any]:
    files = _find(output_dir, "*_Metrics.txt")
    if raw_name is not None:
        wanted = _raw_key(raw_name)
        files = [f for f in files if _raw_key(f.name.removesuffix("_Metrics.txt")) == wanted]
    return parse_metrics_txt(files[0]) if files else {}


def parse_rawtools(output_dir: Path, qc_dir: Path | None = None, *,
                   raw_name: str | None = None) -> dict[str, Any]:
    """One run's RawTools QC values: the :data:`RAWTOOLS_COLUMNS` (plus any extra columns of
    an older table) then ``RawFilePath``. ``QcDataTable.csv`` comes from ``qc_dir`` or is
    found under ``output_dir``; ``_Metrics.txt`` values (mapped to QcDataTable names) fill what
    the table lacks. ``RawFile`` is the basename of the path RawTools saw, ``RawFilePath`` its
    directory. ``DateAcquired`` stays a datetime; calendar columns: :func:`calendar_columns`."""
    output_dir = Path(output_dir)
    tables = _find(Path(qc_dir) if qc_dir is not None else output_dir, "QcDataTable.csv")
    metrics = _run_metrics(output_dir, raw_name)
    if not tables and not metrics:
        raise ParseError(f"{output_dir}: no RawTools QcDataTable.csv or _Metrics.txt found")
    rows = [row for table in tables for row in parse_qc_data_table(table)]
    if raw_name is None and metrics.get("RawFile") is not None and len(rows) > 1:
        raw_name = str(metrics["RawFile"])
    row = _pick_row(rows, raw_name) or {}
    values: dict[str, Any] = dict.fromkeys(RAWTOOLS_COLUMNS)
    values |= row
    for name, val in _metrics_as_columns(metrics).items():
        if values.get(name) is None:
            values[name] = val
    values["RawFilePath"], values["RawFile"] = _split_raw_path(values["RawFile"])
    return values
