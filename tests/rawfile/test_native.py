"""Native ID-free metrics (qcdaemon.engine.native) against real RawTools 2.0.7 output.

Data: tests/data/raw/ (four real RAW files and RawTools' recorded output for small2.RAW, see
its README).  One test runs the real RawTools through mono; it is skipped only when mono or
the pyRawTools distribution is missing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from qcdaemon.errors import ParseError
from qcdaemon.rawfile.cli import EXIT_CORRUPT, EXIT_OK, EXIT_UNREADABLE, main_parse_raw
from qcdaemon.rawfile.magic import RAW_MAGIC_LEN, looks_like_thermo_raw
from qcdaemon.rawfile.native import CorruptRawFile, NativeResult, compute_native_metrics
from qcdaemon.rawfile.peaks import isolation_interference, trace_peak
from qcdaemon.rawfile.reader import read_run
from qcdaemon.rawfile.stats import (
    esi_instability_flags,
    fraction_consuming,
    moving_average,
    percentile,
)
from qcdaemon.tools.rawtools import find_rawtools_exe

DATA = Path(__file__).resolve().parents[1] / "data" / "raw"
RECORDED = DATA / "rawtools-small2"
SMALL2 = DATA / "small2.RAW"
RAW_FILES = ("small2.RAW", "small.RAW", "Angiotensin_325-HCD.raw", "Blank04_29Mar17_Smeagol.raw")

# QcDataTable.csv columns that native must reproduce (the list).
COMPARED = (
    "TotalAnalysisTime(min)", "TotalScans", "NumMs1Scans", "NumMs2Scans", "NumMs3Scans",
    "Ms1ScanRate(/s)", "Ms2ScanRate(/s)", "Ms3ScanRate(/s)", "MeanDutyCycle(s)",
    "MeanMs2TriggerRate(/Ms1Scan)", "Ms1MedianSummedIntensity", "Ms2MedianSummedIntensity",
    "MedianPrecursorIntensity", "MedianMs1IsolationInterference", "NumEsiInstabilityFlags",
    "MedianMs1FillTime(ms)", "MedianMs2FillTime(ms)", "MedianMs3FillTime(ms)",
    "MedianPeakWidthAt10%H(s)", "MedianPeakWidthAt50%H(s)", "MedianAsymmetryAt10%H",
    "MedianAsymmetryAt50%H", "PeakCapacity", "TimeBeforeFirstExceedanceOf10%MaxIntensity",
    "TimeAfterLastExceedanceOf10%MaxIntensity", "FractionOfRunAbove10%MaxIntensity",
    "Instrument", "ExperimentMsOrder", "Ms1Analyzer", "Ms2Analyzer", "Ms3Analyzer", "DateAcquired",
    # not in the list, reported by RawTools too:
    "MedianMs2PeakFractionConsumingTop80PercentTotalIntensity", "MeanCyclesPerAveragePeak",
)
COUNTS = {"TotalScans", "NumMs1Scans", "NumMs2Scans", "NumMs3Scans", "NumEsiInstabilityFlags"}
STRINGS = {"Instrument", "ExperimentMsOrder", "Ms1Analyzer", "Ms2Analyzer", "Ms3Analyzer"}
NOT_PRESENT = {"", "Any", "None"}  # how RawTools writes "no such analyzer / no value"
# _Metrics.txt key -> QcDataTable.csv column (values there are rounded to 4 decimals)
METRICS_TXT = {
    "Instrument": "Instrument", "ExperimentMsOrder": "ExperimentMsOrder", "MS1Analyzer": "Ms1Analyzer",
    "MS2Analyzer": "Ms2Analyzer", "MS3Analyzer": "Ms3Analyzer", "TotalAnalysisTime(min)": "TotalAnalysisTime(min)",
    "TotalScans": "TotalScans", "NumMs1Scans": "NumMs1Scans", "NumMs2Scans": "NumMs2Scans",
    "NumMs3Scans": "NumMs3Scans", "MeanMs2TriggerRate(/Ms1Scan)": "MeanMs2TriggerRate(/Ms1Scan)",
    "Ms1ScanRate(/sec)": "Ms1ScanRate(/s)", "Ms2ScanRate(/sec)": "Ms2ScanRate(/s)",
    "MeanDutyCycle(s)": "MeanDutyCycle(s)", "MedianMs1FillTime(ms)": "MedianMs1FillTime(ms)",
    "MedianMs2FillTime(ms)": "MedianMs2FillTime(ms)", "Ms2MedianSummedIntensity": "Ms2MedianSummedIntensity",
    "MedianMS1IsolationInterference": "MedianMs1IsolationInterference",
    "MedianPeakWidthAt10%H(s)": "MedianPeakWidthAt10%H(s)", "MedianPeakWidthAt50%H(s)": "MedianPeakWidthAt50%H(s)",
    "MedianAsymmetryFactor": "MedianAsymmetryAt10%H", "PeakCapacity": "PeakCapacity",
    "NumEsiInstabilityFlags": "NumEsiInstabilityFlags",
}


@pytest.fixture(scope="module")
def small2() -> NativeResult:
    return compute_native_metrics(SMALL2)


def qc_row(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        return next(csv.DictReader(fh))


def disagreement(key: str, native: object, rawtools: str, rel_tol: float = 0.01) -> str | None:
    """Why ``native`` does not agree with RawTools' printed value, or None when it does."""
    if key == "DateAcquired":
        ok = isinstance(native, dt.datetime) and native.strftime("%m/%d/%Y %H:%M:%S") == rawtools
    elif rawtools in NOT_PRESENT:
        ok = native is None
    elif key in STRINGS:
        ok = native == rawtools
    elif key in COUNTS:
        ok = native == int(rawtools)
    else:
        ok = isinstance(native, float) and math.isclose(native, float(rawtools), rel_tol=rel_tol, abs_tol=1e-12)
    return None if ok else f"{key}: native {native!r}, RawTools {rawtools!r}"


def compare_with_qc_table(values: dict[str, object], row: dict[str, str]) -> list[str]:
    return [m for key in COMPARED if (m := disagreement(key, values.get(key), row[key]))]


# --- rawfile ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", RAW_FILES)
def test_real_raw_files_have_the_magic(name: str) -> None:
    assert looks_like_thermo_raw((DATA / name).read_bytes()[:RAW_MAGIC_LEN])


@pytest.mark.parametrize("head", [b"", b"\x01\xa1", b"\x01\xa1Finnigan", b"PK\x03\x04" + bytes(20),
                                  b"\x01\xa1" + "Finnigam".encode("utf-16-le")])
def test_other_bytes_are_not_raw(head: bytes) -> None:
    assert RAW_MAGIC_LEN == 18
    assert not looks_like_thermo_raw(head)


# --- small2.RAW against recorded RawTools 2.0.7 output ----------------------------------------

def test_small2_agrees_with_recorded_qc_table(small2: NativeResult) -> None:
    assert compare_with_qc_table(small2.values, qc_row(RECORDED / "QcDataTable.csv")) == []


def test_small2_agrees_with_recorded_metrics_txt(small2: NativeResult) -> None:
    recorded = dict(line.split(":\t", 1) for line in (RECORDED / "small2.RAW_Metrics.txt").read_text().splitlines())
    problems = []
    for key, column in METRICS_TXT.items():
        value = small2.values[column]
        text = recorded[key].strip()
        if isinstance(value, float) and text not in NOT_PRESENT and not math.isclose(value, float(text), rel_tol=0.01):
            problems.append(f"{key}: {value} vs {text}")
        elif not isinstance(value, float) and (m := disagreement(column, value, text)):
            problems.append(m)
    assert problems == []


@pytest.mark.parametrize(("key", "name"), [("MS1_TIC", "Ms_TIC"), ("MS1_BPC", "Ms_BP"),
                                           ("MS2_TIC", "Ms2_TIC"), ("MS2_BPC", "Ms2_BP")])
def test_small2_chromatograms_match_recorded(small2: NativeResult, key: str, name: str) -> None:
    lines = (RECORDED / f"small2.RAW_{name}_chromatogram.txt").read_text().splitlines()[1:]
    expected = [tuple(float(x) for x in line.split("\t")) for line in lines]
    got = small2.chromatograms[key]
    assert len(got) == len(expected)
    for (rt, intensity), (rt_ref, intensity_ref) in zip(got, expected):
        assert rt == pytest.approx(rt_ref, rel=1e-9)
        assert intensity == pytest.approx(intensity_ref, rel=1e-9)


def test_small2_per_scan_precursor_peaks_and_interference_match_matrix() -> None:
    run = read_run(SMALL2)
    ms1 = [s.number for s in run.by_level(1)]
    rt = {s.number: s.rt for s in run.scans}
    with open(RECORDED / "small2.RAW_Matrix.txt", newline="") as fh:
        rows = {int(r["MS2ScanNumber"]): r for r in csv.DictReader(fh, delimiter="\t")}
    ms2 = run.by_level(2)
    assert sorted(rows) == [s.number for s in ms2]
    for scan in ms2:
        row = rows[scan.number]
        assert scan.master == int(row["MS1ScanNumber"])
        assert scan.parent_mz == pytest.approx(float(row["ParentIonMass"]), abs=1e-4)
        peak = trace_peak(ms1, run.ms1_peaks, rt, ms1.index(scan.master), scan.parent_mz)
        assert (peak.scans[0], peak.scans[-1]) == (int(row["PeakFirstScan"]), int(row["PeakLastScan"]))
        assert peak.parent_intensity == pytest.approx(float(row["PeakParentScanIntensity"]), rel=1e-9)
        interference = isolation_interference(run.ms1_peaks[scan.master], scan.parent_mz,
                                              scan.isolation_width, scan.mono_mz, scan.charge)
        assert interference == pytest.approx(float(row["MS1IsolationInterference"]), abs=1e-12)


def test_small2_identity_and_extras(small2: NativeResult) -> None:
    v = small2.values
    assert v["DateAcquired"] == dt.datetime(2018, 4, 3, 21, 15, 49, 831000)
    assert v["Instrument"] == "Orbitrap Velos Pro"
    assert v["InstrumentSerial"] is None  # this file stores an empty serial number
    assert v["InstrumentSoftwareVersion"] == "2.7.0"
    json.dumps({k: x for k, x in v.items() if k != "DateAcquired"}, allow_nan=False)


# --- the real RawTools, run here --------------------------------------------------------------


@pytest.mark.skipif(shutil.which("mono") is None or find_rawtools_exe() is None,
                    reason="needs mono on PATH and the pyRawTools distribution (RawTools 2.0.7)")
def test_real_rawtools_agrees_on_a_copy_of_small2(tmp_path: Path, small2: NativeResult) -> None:
    exe = find_rawtools_exe()
    raw_dir, out, qc = tmp_path / "raw", tmp_path / "out", tmp_path / "qc"
    for d in (raw_dir, out, qc):
        d.mkdir()
    raw = raw_dir / "small2.RAW"
    shutil.copyfile(SMALL2, raw)
    for args in (["-f", str(raw), "-o", str(out), *"-p -q -x -u -l -m -r TMT11 -chro 12TB".split()],
                 ["-d", str(raw_dir), "-qc", str(qc)]):
        proc = subprocess.run(["mono", str(exe), *args], capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert compare_with_qc_table(small2.values, qc_row(qc / "QcDataTable.csv")) == []
    lines = (out / "small2.RAW_Ms_TIC_chromatogram.txt").read_text().splitlines()[1:]
    assert [float(x.split("\t")[1]) for x in lines] == pytest.approx([y for _, y in small2.chromatograms["MS1_TIC"]])


# --- every file, including those RawTools crashes on -----------------------------------------

@pytest.mark.parametrize("name", RAW_FILES)
def test_every_file_computes(name: str, tmp_path: Path) -> None:
    copy = tmp_path / name
    shutil.copyfile(DATA / name, copy)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = compute_native_metrics(copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # reads only, writes nothing
    v = result.values
    assert set(COMPARED) <= set(v)
    assert v["TotalScans"] == v["NumMs1Scans"] + v["NumMs2Scans"] + v["NumMs3Scans"]
    assert isinstance(v["DateAcquired"], dt.datetime) and v["DateAcquired"].tzinfo is None
    json.dumps({k: x for k, x in v.items() if k != "DateAcquired"}, allow_nan=False)
    assert len(result.chromatograms["MS2_TIC"]) == v["NumMs2Scans"]


def test_file_without_ms1_has_no_ms1_metrics() -> None:
    v = compute_native_metrics(DATA / "Angiotensin_325-HCD.raw").values
    assert (v["NumMs1Scans"], v["NumMs2Scans"]) == (0, 10)
    assert v["Instrument"] == "Orbitrap Fusion Lumos" and v["InstrumentSerial"] == "FSN20129"
    for key in ("Ms1MedianSummedIntensity", "MeanDutyCycle(s)", "MedianPrecursorIntensity",
                "MedianMs1IsolationInterference", "MedianPeakWidthAt50%H(s)", "PeakCapacity"):
        assert v[key] is None, key
    assert v["Ms2MedianSummedIntensity"] > 0 and v["MedianMs2FillTime(ms)"] > 0


def test_srm_file_uses_the_scan_index_tic() -> None:
    result = compute_native_metrics(DATA / "Blank04_29Mar17_Smeagol.raw")
    # The InstID block holds the name first, then the model: RawTools prints the name ("TSQ"
    # for the TSQ Quantum file of tests/data/raw-outside, whose block has the same layout).
    assert result.values["Instrument"] == "TSQ"
    assert result.values["InstrumentModel"] == "TSQ Vantage Standard"
    assert result.values["NumMs2Scans"] == 4330
    assert result.values["NumSrmScans"] == 4330  # the scan events say SRM
    assert result.values["Ms2MedianSummedIntensity"] > 0
    assert max(y for _, y in result.chromatograms["MS2_TIC"]) == pytest.approx(3116.18164, rel=1e-6)


# --- corrupt, truncated and non-RAW files ------------------------------------------------------

def _cases(src: bytes) -> dict[str, bytes]:
    rng = random.Random(7)
    magic = src[:RAW_MAGIC_LEN]
    header_ok = bytearray(src[:1356]) + bytes(rng.getrandbits(8) for _ in range(100_000))
    return {
        "half": src[: len(src) // 2],
        "tail cut": src[:-5000],
        "header only": src[:4000],
        "empty": b"",
        "text": b"this is not a raw file\n" * 100,
        "random with magic": magic + bytes(rng.getrandbits(8) for _ in range(200_000)),
        "valid header, random body": bytes(header_ok),
    }


@pytest.mark.parametrize("case", list(_cases(b"x" * 2000)))
def test_corrupt_files_raise_corrupt_raw_file(case: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.raw"
    path.write_bytes(_cases(SMALL2.read_bytes())[case])
    with pytest.raises(CorruptRawFile) as info:
        compute_native_metrics(path)
    assert isinstance(info.value, ParseError)
    assert "bad.raw" in str(info.value) and len(str(info.value)) > 20


def test_damaged_files_never_fail_otherwise(tmp_path: Path) -> None:
    """Byte-level damage anywhere: a result or CorruptRawFile, nothing else."""
    rng = random.Random(20240601)
    sources = [(DATA / n).read_bytes() for n in ("small2.RAW", "Angiotensin_325-HCD.raw")]
    path = tmp_path / "damaged.raw"
    for _ in range(40):
        data = bytearray(rng.choice(sources))
        start = rng.randrange(len(data))
        data[start:start + rng.randrange(1, 4000)] = bytes(rng.getrandbits(8) for _ in range(4000))[: len(data) - start]
        path.write_bytes(bytes(data))
        try:
            compute_native_metrics(path)
        except CorruptRawFile:
            pass


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        compute_native_metrics(tmp_path / "nope.raw")


# --- RawTools' arithmetic ----------------------------------------------------------------------

def test_percentile_sorts_nan_first_like_dotnet() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([3.0, 1.0, 2.0, math.nan], 50) == 1.5  # NaN takes the lowest rank
    assert percentile([], 50) is None


def test_moving_average_quirks() -> None:
    values = [float(i) for i in range(30)]
    assert moving_average(values, 0, 20) == sum(range(20)) / 20
    assert moving_average(values, 10, 20) == 0.0  # RawTools leaves index == window/2 out
    assert moving_average(values, 15, 20) == sum(range(5, 25)) / 20
    assert moving_average(values, 20, 20) == 0.0  # and index == n - window/2
    assert moving_average(values, 29, 20) == sum(range(10, 30)) / 20
    assert moving_average([1.0, 3.0], 1, 20) == 2.0  # shorter than the window: whole-run mean


def test_esi_flags_and_top80() -> None:
    assert esi_instability_flags([1.0, 100.0, 100.0, 5.0, 100.0, 0.0]) == 3  # pair (1st, 2nd) not checked
    assert fraction_consuming([10.0, 1.0, 1.0]) == 0.0  # the peak crossing 80 % is not counted
    assert fraction_consuming([10.0, 1.0, 1.0, 1.0]) == 0.25
    assert fraction_consuming([1.0, 1.0, 1.0, 1.0, 1.0]) == 0.8
    assert fraction_consuming([]) == 1.0


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_prints_one_json_object() -> None:
    out = io.StringIO()
    assert main_parse_raw(str(SMALL2), out=out) == EXIT_OK
    doc = json.loads(out.getvalue())
    assert doc["values"]["DateAcquired"] == "2018-04-03T21:15:49.831000"
    assert doc["values"]["NumMs2Scans"] == 49
    assert doc["chromatograms"] == {"MS1_TIC": 46, "MS1_BPC": 46, "MS2_TIC": 49, "MS2_BPC": 49}


def test_cli_chromatograms_flag() -> None:
    out = io.StringIO()
    assert main_parse_raw(str(SMALL2), chromatograms=True, out=out) == EXIT_OK
    points = json.loads(out.getvalue())["chromatograms"]["MS1_TIC"]
    assert len(points) == 46 and points[0][0] == pytest.approx(10.0003916666667)


def test_cli_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.raw"
    bad.write_bytes(SMALL2.read_bytes()[:100_000])
    out, err = io.StringIO(), io.StringIO()
    assert main_parse_raw(str(bad), out=out, err=err) == EXIT_CORRUPT
    assert out.getvalue() == "" and "bad.raw" in err.getvalue()
    assert main_parse_raw(str(tmp_path / "nope.raw"), out=out, err=err) == EXIT_UNREADABLE
