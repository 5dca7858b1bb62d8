"""Native metrics on RAW files from other labs and instruments, against real RawTools 2.0.7.

Data: tests/data/raw-outside/ (four real RAW files and the outputs real RawTools 2.0.7 wrote for
three of them; see tests/data/README.md).  Each file is a case the issue found wrong:

* galaxyp_BSA_min_22.raw (LTQ Orbitrap XL): the reaction's isolation width (1.0) differs from
  the trailer's "MS2 Isolation Width"; interference per scan must equal RawTools' _Matrix.txt.
* msdk_RP240K_01.raw (Orbitrap Elite, MS1 only): centroids flagged as exception peaks, which
  RawTools leaves out of summed intensities and the TIC; RawTools exits 1 after writing its
  metrics and cuts its QcDataTable row short.
* msdk_tsq_quantum.raw (TSQ Quantum Access Max, full scans): MS1 scans by the scan events,
  instrument "TSQ" as RawTools names it.
* galaxyp_maxquant_thermo.raw: a 46 KB RAW file with no scans.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import opentfraw
import pytest

from qcdaemon.rawfile.cli import EXIT_CORRUPT, EXIT_IN_ACQUISITION
from qcdaemon.rawfile.header import file_in_acquisition
from qcdaemon.rawfile.native import CorruptRawFile, RawFileInAcquisition, compute_native_metrics
from qcdaemon.rawfile.peaks import isolation_interference
from qcdaemon.rawfile.reader import read_run
from qcdaemon.tools.rawtools import default_rawtools_command, job_dir, rawtools_jobs, stage_raw
from qcdaemon.tools.rawtools_parse import parse_metrics_txt, parse_qc_data_table

DATA = Path(__file__).resolve().parents[1] / "data" / "raw-outside"
RECORDED = DATA / "rawtools"
REPO = Path(__file__).resolve().parents[2]
PROCESSED = ("galaxyp_BSA_min_22.raw", "msdk_RP240K_01.raw", "msdk_tsq_quantum.raw")
EXACT = {"TotalScans", "NumMs1Scans", "NumMs2Scans", "NumMs3Scans", "NumEsiInstabilityFlags",
         "Instrument", "ExperimentMsOrder", "Ms1Analyzer", "Ms2Analyzer", "Ms3Analyzer"}
SEARCH = {"RawFile", "MedianMassDrift(ppm)", "IdentificationRate(IDs/Ms2Scan)", "DigestionEfficiency",
          "MissedCleavageRate(/PSM)", "MedianPeptideScore", "CutoffDecoyScore(0.05FDR)", "NumberOfPSMs",
          "NumberOfUniquePeptides", "PsmChargeRatio3to2", "PsmChargeRatio4to2", "SearchParameters"}
NO_VALUE = {None, "Any"}
# RawTools prints 0 for these on a run without MS2 scans ("Skipping meta data calculations").
NEEDS_MS2 = {"Ms2MedianSummedIntensity", "MedianPrecursorIntensity", "MedianMs1IsolationInterference",
             "MedianMs2PeakFractionConsumingTop80PercentTotalIntensity"}
# Byte offset of RawFileInfo.IsInAcquisition in msdk_tsq_quantum.raw: Thermo's RawFileReader
# (the DLL RawTools ships) reports InAcquisition = true for a copy with this i32 set to 1.
TSQ_IN_ACQUISITION_OFFSET = 1788


def qc_row(name: str) -> dict:
    rows = parse_qc_data_table(RECORDED / name / "rawtools_qc" / "QcDataTable.csv")
    assert len(rows) == 1
    return rows[0]


def disagreements(native: dict, row: dict) -> list[str]:
    out = []
    no_ms2 = row["NumMs2Scans"] == 0
    for key, ref in row.items():
        mine = native.get(key)
        if key in SEARCH or ref in NO_VALUE:  # RawTools has no value (native may have one)
            continue
        if key == "DateAcquired":
            ok = mine.strftime("%m/%d/%Y %H:%M:%S") == ref.strftime("%m/%d/%Y %H:%M:%S")
        elif no_ms2 and key in NEEDS_MS2 and ref == 0:
            ok = mine is None
        elif key in EXACT or isinstance(ref, str):
            ok = mine == ref
        else:
            ok = isinstance(mine, (int, float)) and math.isclose(mine, ref, rel_tol=0.01, abs_tol=1e-12)
        if not ok:
            out.append(f"{key}: native {mine!r}, RawTools {ref!r}")
    return out


@pytest.fixture(scope="module")
def native() -> dict[str, dict]:
    return {name: compute_native_metrics(DATA / name).values for name in PROCESSED}


def test_every_qc_table_value_agrees_on_the_lc_ms_runs(native: dict[str, dict]) -> None:
    for name in ("galaxyp_BSA_min_22.raw", "msdk_RP240K_01.raw"):
        assert disagreements(native[name], qc_row(name)) == [], name


def test_tsq_full_scans_are_ms1_and_the_one_difference_is_rawtools_fill_time_stand_in(native: dict[str, dict]) -> None:
    values, row = native["msdk_tsq_quantum.raw"], qc_row("msdk_tsq_quantum.raw")
    assert (row["ExperimentMsOrder"], row["NumMs1Scans"], row["NumMs2Scans"]) == ("Ms", 78, 0)
    assert (values["ExperimentMsOrder"], values["NumMs1Scans"], values["NumMs2Scans"]) == ("Ms", 78, 0)
    assert values["Instrument"] == row["Instrument"] == "TSQ"
    assert values["InstrumentModel"] == "TSQ Quantum Access Max"
    # The file stores no ion injection time; RawTools' "fill time" is the median of the first
    # trailer field, "Elapsed Scan Time (sec)". Native reports no fill time.
    run = read_run(DATA / "msdk_tsq_quantum.raw")
    assert values["MedianMs1FillTime(ms)"] is None and all(s.fill_time is None for s in run.scans)
    # the trailer values, read with opentfraw directly (not through the native code)
    raw = opentfraw.RawFile(str(DATA / "msdk_tsq_quantum.raw"))
    elapsed = sorted(raw.scan_parameters(n)["Elapsed Scan Time (sec):"] for n in range(1, 79))
    assert row["MedianMs1FillTime(ms)"] == pytest.approx(statistics.median(elapsed), rel=1e-12)
    assert disagreements(values, row) == [f"MedianMs1FillTime(ms): native None, RawTools {row['MedianMs1FillTime(ms)']!r}"]


def test_interference_per_scan_equals_rawtools_matrix_with_the_reactions_isolation_width() -> None:
    run = read_run(DATA / "galaxyp_BSA_min_22.raw")
    matrix = (RECORDED / "galaxyp_BSA_min_22.raw" / "rawtools" / "galaxyp_BSA_min_22.raw_Matrix.txt")
    lines = matrix.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, ln.split("\t"), strict=False)) for ln in lines[1:] if ln.strip()]
    by_number = {s.number: s for s in run.scans}
    widths = set()
    for r in rows:
        ms2, ms1 = by_number[int(r["MS2ScanNumber"])], by_number[int(r["MS1ScanNumber"])]
        assert ms2.master == ms1.number
        assert ms2.parent_mz == pytest.approx(float(r["ParentIonMass"]), rel=1e-14)
        value = isolation_interference(run.ms1_peaks[ms1.number], ms2.parent_mz, ms2.isolation_width,
                                       ms2.mono_mz, ms2.charge)
        expected = float(r["MS1IsolationInterference"])
        assert value == pytest.approx(expected, rel=1e-9, abs=1e-12) or (math.isnan(value) and math.isnan(expected))
        widths.add(ms2.isolation_width)
    assert len(rows) == 123 and widths == {1.0}
    # the trailer's width is a different number: using it was the bug
    raw = opentfraw.RawFile(str(DATA / "galaxyp_BSA_min_22.raw"))
    trailer_widths = {raw.scan_parameters(int(r["MS2ScanNumber"]))["MS2 Isolation Width:"] for r in rows}
    assert 1.0 not in trailer_widths


def test_ms1_tic_leaves_out_the_peaks_rawtools_leaves_out() -> None:
    result = compute_native_metrics(DATA / "msdk_RP240K_01.raw")
    recorded = RECORDED / "msdk_RP240K_01.raw" / "rawtools" / "msdk_RP240K_01.raw_Ms_TIC_chromatogram.txt"
    points = [tuple(map(float, ln.split("\t"))) for ln in recorded.read_text().splitlines()[1:] if ln.strip()]
    mine = result.chromatograms["MS1_TIC"]
    assert len(mine) == len(points) == 55
    for (rt, y), (ref_rt, ref_y) in zip(mine, points, strict=True):
        assert rt == pytest.approx(ref_rt, rel=1e-12) and y == pytest.approx(ref_y, rel=1e-12)
    # every peak the reader returns: RawTools' TIC is smaller
    raw = opentfraw.RawFile(str(DATA / "msdk_RP240K_01.raw"))
    everything = [float(raw.peaks(n)[1].astype("float64").sum()) for n in range(1, 56)]
    assert all(full > y for full, (_, y) in zip(everything, points, strict=True))
    assert result.values["Ms1MedianSummedIntensity"] == pytest.approx(qc_row("msdk_RP240K_01.raw")["Ms1MedianSummedIntensity"], rel=1e-12)


def test_ms1_only_run_duty_cycle_keeps_rawtools_zero_and_native_reports_the_cycle_time(native: dict[str, dict]) -> None:
    values = native["msdk_RP240K_01.raw"]
    assert qc_row("msdk_RP240K_01.raw")["MeanDutyCycle(s)"] == 0 == values["MeanDutyCycle(s)"]
    recorded = RECORDED / "msdk_RP240K_01.raw" / "rawtools" / "msdk_RP240K_01.raw_Ms_TIC_chromatogram.txt"
    rts = [float(ln.split("\t")[0]) for ln in recorded.read_text().splitlines()[1:] if ln.strip()]
    cycle = statistics.median((b - a) * 60 for a, b in itertools.pairwise(rts))
    assert values["MedianMs1CycleTime(s)"] == pytest.approx(cycle, rel=1e-9)
    assert values["MedianMs1CycleTime(s)"] == pytest.approx(4.11, abs=0.01)


def test_short_qc_table_row_of_an_ms1_only_run_is_read_as_far_as_rawtools_wrote_it() -> None:
    row = qc_row("msdk_RP240K_01.raw")
    metrics = parse_metrics_txt(RECORDED / "msdk_RP240K_01.raw" / "rawtools" / "msdk_RP240K_01.raw_Metrics.txt")
    assert row["DateAcquired"] == dt.datetime(2011, 10, 6, 14, 24, 5)
    assert row["Instrument"] == metrics["Instrument"] == "Orbitrap Elite"
    assert row["NumMs1Scans"] == metrics["NumMs1Scans"] == 55
    assert row["MedianMs1FillTime(ms)"] == pytest.approx(metrics["MedianMs1FillTime(ms)"], abs=1e-4)
    # RawTools threw (NullReferenceException) right after MedianMs1FillTime(ms): no value after it
    assert row["MedianMs2FillTime(ms)"] is None and row["PeakCapacity"] is None
    assert "NullReferenceException" in (RECORDED / "msdk_RP240K_01.raw" / "rawtools_qc" / "stderr.txt").read_text()


def test_a_file_without_scans_gets_a_clear_reason() -> None:
    with pytest.raises(CorruptRawFile, match="holds no scans"):
        compute_native_metrics(DATA / "galaxyp_maxquant_thermo.raw")
    proc = subprocess.run([sys.executable, "-m", "qcdaemon.rawfile.cli", str(DATA / "galaxyp_maxquant_thermo.raw")],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert proc.returncode == EXIT_CORRUPT and "holds no scans" in proc.stderr


def in_acquisition_copy(tmp_path: Path) -> Path:
    data = bytearray((DATA / "msdk_tsq_quantum.raw").read_bytes())
    assert data[TSQ_IN_ACQUISITION_OFFSET:TSQ_IN_ACQUISITION_OFFSET + 4] == b"\0\0\0\0"
    data[TSQ_IN_ACQUISITION_OFFSET] = 1
    path = tmp_path / "acquiring.raw"
    path.write_bytes(bytes(data))
    return path


def test_a_file_still_being_acquired_is_not_called_corrupt(tmp_path: Path) -> None:
    path = in_acquisition_copy(tmp_path)
    assert file_in_acquisition(path) and not file_in_acquisition(DATA / "msdk_tsq_quantum.raw")
    with pytest.raises(RawFileInAcquisition, match="still being acquired") as info:
        compute_native_metrics(path)
    assert not isinstance(info.value, CorruptRawFile)
    proc = subprocess.run([sys.executable, "-m", "qcdaemon.rawfile.cli", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert proc.returncode == EXIT_IN_ACQUISITION and "still being acquired" in proc.stderr
    assert "corrupt" not in proc.stderr


@pytest.mark.skipif(shutil.which("mono") is None or default_rawtools_command() is None,
                    reason="needs mono on PATH and the pyRawTools distribution (RawTools 2.0.7)")
def test_real_rawtools_agrees_on_the_bsa_run(tmp_path: Path) -> None:
    """Run the real RawTools (QC mode, as qcdaemon does) on a copy and compare again."""
    command = default_rawtools_command()
    assert command is not None
    staged = stage_raw(DATA / "galaxyp_BSA_min_22.raw", tmp_path / "stage")
    name, argv = rawtools_jobs(command, staged, tmp_path)[1]
    job = job_dir(tmp_path, name)
    job.mkdir(parents=True)
    proc = subprocess.run(argv, cwd=job, stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = parse_qc_data_table(job / "QcDataTable.csv")
    native = compute_native_metrics(DATA / "galaxyp_BSA_min_22.raw").values
    assert disagreements(native, rows[0]) == []
    assert json.loads((RECORDED / "galaxyp_BSA_min_22.raw" / "exit_codes.json").read_text())["exit_codes"]["rawtools_qc"] == 0


def test_scans_without_an_ms_order_are_reported_as_what_they_are(tmp_path: Path) -> None:
    """Precursor-ion and neutral-loss scans (Thermo MSOrderType Par = -1, Nl = -2) are no MSn scans.

    No public RAW file with such scans is at hand, so a copy of the TSQ file gets those MS orders
    in its scan events: 78 events of 208 bytes from offset 58152, MS order at byte 6 of each
    (checked: all 78 read 1 = Ms, scan type 6 = Q1MS, in the original, as Thermo's reader says).
    """
    data = bytearray((DATA / "msdk_tsq_quantum.raw").read_bytes())
    for k in range(78):
        event = 58152 + 208 * k
        assert (data[event + 6], data[event + 7]) == (1, 6)
        data[event + 6] = 0xFF if k % 2 == 0 else 0xFE  # -1 precursor-ion, -2 neutral-loss
    path = tmp_path / "precursor_and_neutral_loss.raw"
    path.write_bytes(bytes(data))
    values = compute_native_metrics(path).values
    assert (values["TotalScans"], values["NumPrecursorIonScans"], values["NumNeutralLossScans"]) == (78, 39, 39)
    assert (values["NumMs1Scans"], values["NumMs2Scans"], values["ExperimentMsOrder"]) == (0, 0, None)
    assert values["Ms1MedianSummedIntensity"] is None
