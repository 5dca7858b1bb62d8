"""Result parsers: real MaxQuant and RawTools files in, QC values out (no mocks)."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from qcdaemon.errors import ParseError
from qcdaemon.tools.maxquant_parse import (
    MAXQUANT_COLUMNS,
    ProteinGroup,
    maxquant_columns,
    parse_maxquant,
    parse_protein_groups,
)
from qcdaemon.tools.rawtools_parse import (
    RAWTOOLS_COLUMNS,
    calendar_columns,
    parse_metrics_txt,
    parse_qc_data_table,
    parse_rawtools,
)

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLE_0 = DATA / "maxquant" / "tmt11" / "example-0"
EXAMPLE_1 = DATA / "maxquant" / "tmt11" / "example-1"
SMALL2 = DATA / "rawtools" / "small2"
PQC_RAWTOOLS = DATA / "rawtools" / "proteomicsqc"
DOCS_TABLE = DATA / "rawtools" / "rawtools-docs-example" / "QcDataTable.csv"

# The 56 `expected_columns` of the original, for TMT11 (behaviour spec 3.2).
EXPECTED_COLUMNS = [
    "N_protein_groups", "N_protein_true_hits", "N_protein_potential_contaminants",
    "N_protein_reverse_seq", "Protein_mean_seq_cov [%]",
    *(f"TMT{n}_missing_values" for n in range(1, 12)),
    "N_peptides", "N_peptides_potential_contaminants", "N_peptides_reverse", "Oxidations [%]",
    "N_missed_cleavages_total", "N_missed_cleavages_eq_0 [%]", "N_missed_cleavages_eq_1 [%]",
    "N_missed_cleavages_eq_2 [%]", "N_missed_cleavages_gt_3 [%]",
    "N_peptides_last_amino_acid_K [%]", "N_peptides_last_amino_acid_R [%]",
    "N_peptides_last_amino_acid_other [%]", "Mean_parent_int_frac",
    "Uncalibrated - Calibrated m/z [ppm] (ave)", "Uncalibrated - Calibrated m/z [ppm] (sd)",
    "Uncalibrated - Calibrated m/z [Da] (ave)", "Uncalibrated - Calibrated m/z [Da] (sd)",
    "Peak Width(ave)", "Peak Width (std)",
    *(c for i in (1, 2) for c in (
        f"qc{i}_peptide_charges", f"N_qc{i}_missing_values",
        f"reporter_intensity_corrected_qc{i}_ave", f"reporter_intensity_corrected_qc{i}_sd",
        f"reporter_intensity_corrected_qc{i}_cv", f"calibrated_retention_time_qc{i}",
        f"retention_length_qc{i}", f"N_of_scans_qc{i}")),
    "N_of_Protein_qc_pepts", "N_Protein_qc_missing_values",
    "reporter_intensity_corrected_Protein_qc_ave", "reporter_intensity_corrected_Protein_qc_sd",
    "reporter_intensity_corrected_Protein_qc_cv",
]
SUMMARY = {
    "MS": 11446, "MS/MS": 20684, "MS3": 0, "MS/MS Submitted": 22656, "MS/MS Identified": 7179,
    "MS/MS Identified [%]": 32, "Peptide Sequences Identified": 5873,
    "Av. Absolute Mass Deviation [mDa]": 150530, "Mass Standard Deviation [mDa]": 159940,
}
@pytest.fixture(scope="module")
def example0() -> dict[str, Any]:
    return parse_maxquant(EXAMPLE_0)


def write_table(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    """A MaxQuant-style tab-separated table (real file on disk)."""
    lines = ["\t".join(header)] + ["\t".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_json_clean(values: dict[str, Any]) -> None:
    json.dumps(values, allow_nan=False)  # raises on NaN/inf
    assert not any(isinstance(v, float) and math.isnan(v) for v in values.values())


# ------------------------------------------------------------------ MaxQuant: verified values
def test_example0_summary_verified(example0: dict[str, Any]) -> None:
    assert {k: example0[k] for k in SUMMARY} == SUMMARY


def test_example0_protein_groups_verified(example0: dict[str, Any]) -> None:
    assert example0["N_protein_groups"] == 1272
    assert example0["N_protein_potential_contaminants"] == 10
    assert example0["N_protein_reverse_seq"] == 14
    assert example0["N_protein_true_hits"] == 1248
    assert example0["Protein_mean_seq_cov [%]"] == pytest.approx(18.7096, abs=1e-4)
    missing = [example0[f"TMT{n}_missing_values"] for n in range(1, 12)]
    assert missing == [11, 11, 11, 11, 11, 13, 11, 15, 12, 13, 11]
    assert "TMT12_missing_values" not in example0
    assert example0["N_of_Protein_qc_pepts"] == "not detected"  # no QC3_BSA in example-0


def test_example0_peptides_verified(example0: dict[str, Any]) -> None:
    names = EXPECTED_COLUMNS[16:28]
    assert [example0[n] for n in names] == [
        5873, 58, 14, 3.27, 1007, 82.85, 16.29, 0.85, 0.0, 66.51, 31.69, 1.8]
    assert example0["Missed Cleavages [%]"] == 17.15


def test_example0_column_order_and_json(example0: dict[str, Any]) -> None:
    assert tuple(example0) == MAXQUANT_COLUMNS == maxquant_columns(11)
    assert [c for c in example0 if c in EXPECTED_COLUMNS] == EXPECTED_COLUMNS
    assert list(example0)[:9] == list(SUMMARY)
    assert_json_clean(example0)


def test_example0_missing_optional_files_give_none(example0: dict[str, Any]) -> None:
    # example-0 has no evidence.txt and no msmsScans.txt
    for column in EXPECTED_COLUMNS[28:51]:
        assert example0[column] is None, column
    assert [example0[f"TMT{n}_peptide_count"] for n in range(1, 12)] == [None] * 11
    counts = [example0[f"TMT{n}_protein_group_count"] for n in range(1, 12)]
    assert all(isinstance(c, int) and 1250 < c <= 1272 for c in counts)


def test_example0_protein_groups_rows() -> None:
    groups = parse_protein_groups(EXAMPLE_0 / "proteinGroups.txt.gz")
    assert len(groups) == 1272
    assert all(len(g.reporter_corrected) == 11 for g in groups)
    assert sum(g.contaminant for g in groups) == 10
    assert sum(g.reverse for g in groups) == 14
    assert sum(g.only_by_site for g in groups) == 4
    first = groups[0]
    assert isinstance(first, ProteinGroup)
    assert first.score == 56.013 and first.intensity == 217900000.0
    assert first.reporter_corrected[0] == 780430.0
    assert not any(k.startswith("Reporter intensity corrected") for k in first.extra)
    assert "Majority protein IDs" not in first.extra and "Score" not in first.extra
    assert isinstance(first.extra["id"], int) and isinstance(first.extra["Protein IDs"], str)


def test_example1_generic_reporter_names_and_contaminants(tmp_path: Path) -> None:
    groups = parse_protein_groups(EXAMPLE_1 / "proteinGroups.txt")
    assert len(groups) == 19
    assert all(g.contaminant and not g.reverse for g in groups)
    assert groups[0].majority_protein_ids == "sp|P02533|K1C14_HUMAN;CON__P02533"
    assert groups[0].reporter_corrected[:2] == (1026100.0, 2305200.0)
    assert len(groups[0].reporter_corrected) == 11
    shutil.copy(EXAMPLE_1 / "proteinGroups.txt", tmp_path)
    values = parse_maxquant(tmp_path)
    assert values["N_protein_groups"] == 19
    assert values["N_protein_potential_contaminants"] == 19
    assert values["N_protein_true_hits"] == 0
    assert values["Protein_mean_seq_cov [%]"] is None  # no non-contaminant group
    assert [values[f"TMT{n}_missing_values"] for n in range(1, 12)] == [0] * 11
    assert values["TMT1_protein_group_count"] == 19  # contaminants count (spec 3.3)
    assert values["N_peptides"] is None and values["MS"] is None
    assert_json_clean(values)


# ------------------------------------------------------------------ MaxQuant: synthetic tables
PG_BASE = ["Protein IDs", "Majority protein IDs", "Fasta headers", "Peptide counts (all)",
           "Sequence coverage [%]", "Score", "Intensity", "Only identified by site", "Reverse",
           "Potential contaminant", "id"]


def test_tmt16_protein_groups_give_16_channels(tmp_path: Path) -> None:
    reporters = [f"Reporter intensity corrected {n} Exp1" for n in range(1, 17)]
    header = PG_BASE + reporters + ["Reporter intensity corrected 3"]  # generic duplicate
    rows = [
        ["P1", "P1", "h1", "4", "10", "5", "100", None, None, None, 0, *range(1, 17), 0],
        ["P2", "P2", "h2", "2", "30", "7", "200", None, None, None, 1, *([0] * 15), 9, 5],
        ["REV__P3", "REV__P3", "", "1", "50", "1", "5", None, "+", None, 2, *([1] * 16), 1],
        ["QC3_BSA;X", "QC3_BSA", "bsa", "12;3", "60", "90", "1E9", None, None, None, 3,
         *([2.0] * 8), *([4.0] * 8), 2.0],
    ]
    write_table(tmp_path / "proteinGroups.txt", header, rows)
    groups = parse_protein_groups(tmp_path / "proteinGroups.txt")
    assert [len(g.reporter_corrected) for g in groups] == [16] * 4
    assert groups[1].reporter_corrected[2] == 5.0  # generic column wins over the suffixed one
    assert groups[2].reverse and groups[3].intensity == 1e9
    values = parse_maxquant(tmp_path)
    assert tuple(values) == maxquant_columns(16)
    assert "TMT17_missing_values" not in values
    assert "not detected" not in [values[f"TMT{n}_missing_values"] for n in range(1, 17)]
    # kept rows: P1 and P2 and QC3_BSA (REV__ excluded); channel 3 of P1 is 0 in the generic column
    assert values["TMT1_missing_values"] == 1 and values["TMT3_missing_values"] == 1
    assert values["TMT16_missing_values"] == 0
    # detection counts take the max over a channel's columns and include decoys
    assert values["TMT3_protein_group_count"] == 4 and values["TMT1_protein_group_count"] == 3
    assert values["N_protein_true_hits"] == 3 and values["N_protein_reverse_seq"] == 1
    assert values["Protein_mean_seq_cov [%]"] == pytest.approx(100 / 3)
    assert values["N_of_Protein_qc_pepts"] == "12;3"
    assert values["N_Protein_qc_missing_values"] == ";".join(["0"] * 16)
    assert values["reporter_intensity_corrected_Protein_qc_ave"] == 3.0
    assert values["reporter_intensity_corrected_Protein_qc_sd"] == 1.0
    assert values["reporter_intensity_corrected_Protein_qc_cv"] == pytest.approx(100 / 3)
    assert_json_clean(values)


EVIDENCE_HEADER = ["Sequence", "Charge", "Intensity", "Calibrated retention time",
                   "Retention length", "Number of scans", "Uncalibrated - Calibrated m/z [ppm]",
                   "Uncalibrated - Calibrated m/z [Da]", "Reporter intensity corrected 1",
                   "Reporter intensity corrected 2", "Reporter intensity corrected 1 E",
                   "Reporter intensity corrected 2 E"]


def test_evidence_msms_and_qc_peptides(tmp_path: Path) -> None:
    write_table(tmp_path / "evidence.txt", EVIDENCE_HEADER, [
        ["HVLTSIGEK", 2, 500, 30.5, 0.4, 12, 1.0, 0.001, 100, 300, 100, 300],
        ["HVLTSIGEK", 3, 500, 31.0, 0.6, 9, 3.0, 0.003, 0, 0, 0, 0],  # tied max intensity
        ["PEPTIDEK", 2, 10, 20.0, 0.2, 3, "NaN", None, 0, 7, 0, 7],
        ["PEPTIDEK", 2, 20, 21.0, 0.2, 3, 2.0, 0.002, 0, 8, 0, 8],
    ])
    write_table(tmp_path / "msmsScans.txt", ["Retention time", "Parent intensity fraction"],
                [[1.0, 0.5], [2.0, 0.75], [3.0, "NaN"], [4.0, 0.8]])
    values = parse_maxquant(tmp_path)
    assert values["Uncalibrated - Calibrated m/z [ppm] (ave)"] == pytest.approx(2.0)
    assert values["Uncalibrated - Calibrated m/z [ppm] (sd)"] == pytest.approx(math.sqrt(2 / 3))
    assert values["Uncalibrated - Calibrated m/z [Da] (ave)"] == pytest.approx(0.002)
    assert values["Peak Width(ave)"] == pytest.approx(0.35)
    assert values["Peak Width (std)"] == pytest.approx(math.sqrt(0.0275))
    assert values["Mean_parent_int_frac"] == 0.68
    assert values["qc1_peptide_charges"] == "2;3"
    assert values["N_qc1_missing_values"] == "0;0"  # the first of the tied rows
    assert values["reporter_intensity_corrected_qc1_ave"] == 200.0
    assert values["reporter_intensity_corrected_qc1_sd"] == 100.0
    assert values["reporter_intensity_corrected_qc1_cv"] == 50.0
    assert values["calibrated_retention_time_qc1"] == 30.5
    assert values["retention_length_qc1"] == 0.4 and values["N_of_scans_qc1"] == 12
    assert values["qc2_peptide_charges"] == "not detected"
    assert values["reporter_intensity_corrected_qc2_cv"] == "not detected"
    assert values["TMT1_peptide_count"] == 1 and values["TMT2_peptide_count"] == 2
    assert values["TMT1_missing_values"] is None  # no proteinGroups.txt
    assert values["N_protein_groups"] is None and values["MS"] is None
    assert_json_clean(values)


def test_qc_peptide_with_zero_reporters_is_not_calculated(tmp_path: Path) -> None:
    write_table(tmp_path / "evidence.txt", EVIDENCE_HEADER,
                [["LTILEELR", 2, 5, 1, 1, 1, 0, 0, 0, 0, 0, 0]])
    values = parse_maxquant(tmp_path)
    assert values["reporter_intensity_corrected_qc2_cv"] == "not calculated"
    assert values["N_qc2_missing_values"] == "1;1"
    assert values["TMT1_peptide_count"] == 0


def test_missed_cleavages_three_or_more_bucket(tmp_path: Path) -> None:
    header = ["Sequence", "Missed cleavages", "Last amino acid", "Potential contaminant",
              "Reverse", "Oxidation (M) site IDs"]
    write_table(tmp_path / "peptides.txt", header, [
        ["AK", 0, "K", None, None, None], ["BR", 1, "R", "+", None, "3"],
        ["CK", 2, "K", None, "+", None], ["DX", 3, "X", None, None, None],
        ["EK", 4, "K", None, None, "1;2"]])
    values = parse_maxquant(tmp_path)
    assert values["N_missed_cleavages_total"] == 4
    assert values["N_missed_cleavages_eq_0 [%]"] == 20.0
    assert values["N_missed_cleavages_gt_3 [%]"] == 40.0  # counts 3 and 4 (>= 3)
    assert values["Oxidations [%]"] == 40.0
    assert values["N_peptides_potential_contaminants"] == 1 and values["N_peptides_reverse"] == 1
    assert values["N_peptides_last_amino_acid_other [%]"] == 20.0
    assert values["Missed Cleavages [%]"] == 80.0


def test_summary_v2_names_are_emitted_as_v1(tmp_path: Path) -> None:
    v2 = ["Raw file", "MS", "MS/MS", "MS3", "MS/MS submitted", "MS/MS identified",
          "MS/MS identified [%]", "Peptide sequences identified",
          "Av. absolute mass deviation [mDa]", "Mass standard deviation [mDa]"]
    write_table(tmp_path / "summary.txt", v2,
                [["run", 1, 2, 0, 3, 4, 12.5, 5, 0.6, 0.7], ["Total", 1, 2, 0, 3, 4, 12.5, 5, "", ""]])
    values = parse_maxquant(tmp_path)
    assert [values[k] for k in SUMMARY] == [1, 2, 0, 3, 4, 12.5, 5, 0.6, 0.7]


def test_empty_folder_gives_nones_and_no_channels(tmp_path: Path) -> None:
    values = parse_maxquant(tmp_path)
    assert tuple(values) == maxquant_columns(0)
    assert set(values.values()) == {None}


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="does not exist"):
        parse_maxquant(tmp_path / "nope")


def test_plain_file_preferred_over_gzip(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_1 / "proteinGroups.txt", tmp_path)
    with gzip.open(tmp_path / "proteinGroups.txt.gz", "wb") as fh:
        fh.write(b"garbage")
    assert parse_maxquant(tmp_path)["N_protein_groups"] == 19


def test_windows_line_endings_and_latin1_text(tmp_path: Path) -> None:
    header = "Protein IDs\tMajority protein IDs\tFasta headers\tReporter intensity corrected 1"
    body = f"{header}\r\nP1\tP1\tProt\xe9ine \xb5\t5\r\n\r\n".encode("latin-1")
    (tmp_path / "proteinGroups.txt").write_bytes(body)
    (group,) = parse_protein_groups(tmp_path / "proteinGroups.txt")
    assert group.fasta_headers == "Prot\xe9ine \xb5" and group.reporter_corrected == (5.0,)


GARBAGE = {
    "binary": b"\x01\xa1F\x00i\x00n\x00n\x00i\x00g\x00a\x00n\x00\x00\xff\xfe",
    "csv": b"Protein IDs,Majority protein IDs,Score\nP1,P1,3\n",
    "wrong header": b"Foo\tBar\n1\t2\n",
    "ragged row": b"Protein IDs\tMajority protein IDs\nP1\tP1\textra\n",
    "empty": b"",
}


@pytest.mark.parametrize("kind", GARBAGE)
def test_garbage_protein_groups_raise(tmp_path: Path, kind: str) -> None:
    (tmp_path / "proteinGroups.txt").write_bytes(GARBAGE[kind])
    with pytest.raises(ParseError, match="proteinGroups.txt"):
        parse_maxquant(tmp_path)


@pytest.mark.parametrize("name", ["summary.txt", "peptides.txt", "evidence.txt",
                                  "msmsScans.txt"])
def test_required_column_missing_raises(tmp_path: Path, name: str) -> None:
    write_table(tmp_path / name, ["Something", "Else"], [[1, 2]])
    with pytest.raises(ParseError, match=name.replace(".", r"\.")):
        parse_maxquant(tmp_path)


def test_corrupt_gzip_raises(tmp_path: Path) -> None:
    (tmp_path / "peptides.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ParseError, match=r"peptides\.txt\.gz"):
        parse_maxquant(tmp_path)


# ------------------------------------------------------------------------------- RawTools
def test_qc_data_table_207(tmp_path: Path) -> None:
    rows = parse_qc_data_table(SMALL2 / "rawtools_qc" / "QcDataTable.csv")
    assert len(rows) == 1
    row = rows[0]
    assert tuple(row) == RAWTOOLS_COLUMNS
    assert row["DateAcquired"] == datetime(2018, 4, 3, 21, 15, 49)
    assert row["RawFile"] == "/data/instrument/raw/small2.RAW"
    assert row["TotalScans"] == 95 and row["NumMs2Scans"] == 49
    assert row["PeakCapacity"] == pytest.approx(235.567031061603)
    assert row["MedianMs3FillTime(ms)"] is None and row["MedianMassDrift(ppm)"] == -1
    assert row["Ms3Analyzer"] == "Any" and row["SearchParameters"] == "None"


def test_qc_data_table_2019_typo_column() -> None:
    row = parse_qc_data_table(PQC_RAWTOOLS / "QcDataTable.csv")[0]
    assert row["MedianMs1IsolationInterference"] == pytest.approx(0.249040565997898)
    assert "MedianMs1IsolationInterence" not in row
    assert row["DateAcquired"] == datetime(2019, 10, 25, 17, 40, 21)
    raw = parse_qc_data_table(PQC_RAWTOOLS / "QcDataTable.csv", normalize=False)[0]
    assert raw["MedianMs1IsolationInterence"] == pytest.approx(0.249040565997898)


def test_qc_data_table_2018_column_set() -> None:
    rows = parse_qc_data_table(DOCS_TABLE)
    assert len(rows) == 140
    first = rows[0]
    assert first["DateAcquired"] == datetime(2018, 8, 24, 13, 6, 19)
    assert first["RawFile"].endswith("ch_23Aug2018_HeLa_Std_1.raw")
    assert first["TotalAnalysisTime(min)"] == pytest.approx(29.9990833333333)
    assert first["NumEsiInstabilityFlags"] == 1
    assert first["IdentificationRate(IDs/Ms2Scan)"] == 0.579
    assert first["SearchParameters"].startswith("fmods: 57.0214@C; nmod: ;")
    assert first["ModificationFrequencyAtX"] == pytest.approx(0.016304347826087)
    assert all(isinstance(r["DateAcquired"], datetime) for r in rows)


def test_metrics_txt_small2_and_sa001() -> None:
    small2 = parse_metrics_txt(SMALL2 / "rawtools" / "small2.RAW_Metrics.txt")
    assert small2["RawFile"] == "/data/instrument/raw/small2.RAW"
    assert small2["TotalScans"] == 95 and small2["MeanDutyCycle(s)"] == 1.3215
    assert small2["FaimsVoltage(CV)"] == -1 and small2["MS3Analyzer"] == "None"
    assert small2["131CMedianReporterIonIntensity"] == 0
    sa001 = parse_metrics_txt(PQC_RAWTOOLS / "SA001-R3-C-2ulF.raw_Metrics.txt")
    assert sa001["Instrument"] == "Orbitrap Fusion Lumos"
    assert sa001["NumMs1Scans"] == 7499 and sa001["NumEsiInstabilityFlags"] == 7
    assert sa001["MedianMS1IsolationInterference"] == 0.249


def test_metrics_repeated_key_becomes_list(tmp_path: Path) -> None:
    path = tmp_path / "x.raw_Metrics.txt"
    path.write_text("RawFile:\tC:\\data\\x.raw\nFaimsVoltage(CV):\t-45\nFaimsVoltage(CV):\t-60\n")
    metrics = parse_metrics_txt(path)
    assert metrics == {"RawFile": "C:\\data\\x.raw", "FaimsVoltage(CV)": [-45, -60]}


def test_parse_rawtools_small2_table_complemented_by_metrics() -> None:
    values = parse_rawtools(SMALL2)
    assert tuple(values) == (*RAWTOOLS_COLUMNS, "RawFilePath")
    assert values["RawFile"] == "small2.RAW"
    assert values["RawFilePath"] == "/data/instrument/raw"
    assert values["DateAcquired"] == datetime(2018, 4, 3, 21, 15, 49)
    assert values["PeakCapacity"] == pytest.approx(235.567031061603)  # table wins
    assert values["MedianMs3FillTime(ms)"] == 0  # empty in the table, from _Metrics.txt


def test_parse_rawtools_with_qc_dir() -> None:
    values = parse_rawtools(SMALL2 / "rawtools", qc_dir=SMALL2 / "rawtools_qc")
    assert values["DateAcquired"] == datetime(2018, 4, 3, 21, 15, 49)
    assert values["Ms1MedianSummedIntensity"] == pytest.approx(665153.945774078)


def test_parse_rawtools_metrics_only_fallback() -> None:
    values = parse_rawtools(PQC_RAWTOOLS, qc_dir=PQC_RAWTOOLS / "no-such-dir")
    assert values["DateAcquired"] is None
    assert values["RawFile"] == "SA001-R3-C-2ulF.raw"
    assert values["RawFilePath"] == "/var/www/html/omics/projects/LSARP/proteomics/raw/SA001-R3-C-2ulF"
    assert values["Ms1ScanRate(/s)"] == 1.3899
    assert values["MedianMs1IsolationInterference"] == 0.249
    assert values["MedianAsymmetryAt10%H"] == 1.209
    assert values["Ms1MedianSummedIntensity"] is None
    assert "126MedianReporterIonIntensity" not in values


def test_parse_rawtools_picks_named_row_of_many(tmp_path: Path) -> None:
    shutil.copy(DOCS_TABLE, tmp_path)
    named = parse_rawtools(tmp_path, raw_name="ch_23Aug2018_HeLa_Std_2.RAW")
    assert named["RawFile"] == "ch_23Aug2018_HeLa_Std_2.raw"
    assert named["DateAcquired"] == datetime(2018, 8, 24, 13, 44, 9)
    newest = parse_rawtools(tmp_path)
    assert newest["DateAcquired"] == max(r["DateAcquired"] for r in parse_qc_data_table(DOCS_TABLE))


def test_calendar_columns() -> None:
    assert calendar_columns(datetime(2018, 4, 3, 21, 15, 49)) == {
        "Date": "2018-04-03", "Day": "2018-093", "Week": "2018-14", "Month": "2018-04",
        "Year": "2018"}
    # ISO week number with the calendar year, as the original
    assert calendar_columns(datetime(2021, 1, 1))["Week"] == "2021-53"


def test_rawtools_without_outputs_raises(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="no RawTools"):
        parse_rawtools(tmp_path)


@pytest.mark.parametrize("content", [
    b"\x01\xa1F\x00i\x00n\x00n\x00i\x00g\x00a\x00n\x00",
    b"hello world\nthis is not a table\n",
    b"DateAcquired,RawFile\n13/45/2018 99:00:00,x.raw\n",
    b"DateAcquired,RawFile\n04/03/2018 21:15:49,x.raw,95\n",  # more cells than columns
])
def test_garbage_qc_data_table_raises(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "QcDataTable.csv").write_bytes(content)
    with pytest.raises(ParseError, match="QcDataTable.csv"):
        parse_qc_data_table(tmp_path / "QcDataTable.csv")


@pytest.mark.parametrize("content", [
    b"\x00\x01\x02binary",
    b"this is not a metrics file\n",
    b"DateAcquired,RawFile\n04/03/2018 21:15:49,x.raw\n",
    b"",
])
def test_garbage_metrics_raises(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x_Metrics.txt").write_bytes(content)
    with pytest.raises(ParseError, match="x_Metrics.txt"):
        parse_metrics_txt(tmp_path / "x_Metrics.txt")
