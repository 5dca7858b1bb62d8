"""Malformed tool output is never accepted as done (issue 12).

The corpus: the real RawTools and MaxQuant outputs in ``tests/data`` (which must still parse),
and malformed variants made from them the ways the issue's harness found: a duplicated column,
a huge (29-digit) number, a negative count, header-only tables.  Each malformed variant must
raise ParseError (the stage fails with that reason), never give values.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TEST_DATA

from qcdaemon.errors import ParseError
from qcdaemon.tools.maxquant_parse import parse_maxquant
from qcdaemon.tools.rawtools_parse import parse_metrics_txt, parse_qc_data_table, parse_rawtools

QC_TABLE = TEST_DATA / "rawtools" / "small2" / "rawtools_qc" / "QcDataTable.csv"
METRICS = TEST_DATA / "rawtools" / "small2" / "rawtools" / "small2.RAW_Metrics.txt"
MQ0 = TEST_DATA / "maxquant" / "tmt11" / "example-0"
MQ1 = TEST_DATA / "maxquant" / "tmt11" / "example-1"


def _csv_edit(edit: Callable[[list[str], list[str]], tuple[list[str], list[str]]]) -> str:
    head, row, *_ = QC_TABLE.read_text().splitlines()
    h, r = edit(head.split(","), row.split(","))
    return ",".join(h) + "\n" + ",".join(r) + "\n"


def _dup_total_scans(h: list[str], r: list[str]) -> tuple[list[str], list[str]]:
    j = h.index("NumMs1Scans")
    h[j] = "TotalScans"  # the harness's case: the NumMs1Scans value under a second TotalScans
    return h, r


def _set(name: str, val: str) -> Callable[[list[str], list[str]], tuple[list[str], list[str]]]:
    def edit(h: list[str], r: list[str]) -> tuple[list[str], list[str]]:
        r[h.index(name)] = val
        return h, r
    return edit


RAWTOOLS_TABLES = {
    "duplicated column": _csv_edit(_dup_total_scans),
    "29-digit integer": _csv_edit(_set("TotalScans", "1" * 29)),
    "negative count": _csv_edit(_set("NumMs2Scans", "-7")),
    "huge float": _csv_edit(_set("Ms1MedianSummedIntensity", "1e300")),
}


def test_the_real_outputs_still_parse() -> None:
    values = parse_rawtools(METRICS.parent, QC_TABLE.parent, raw_name="small2.RAW")
    assert isinstance(values["TotalScans"], int) and values["TotalScans"] > 0
    mq = parse_maxquant(MQ0)
    assert mq["N_protein_groups"] == 1272
    assert parse_maxquant(MQ1)["N_protein_groups"] == 19
    assert all(not isinstance(v, int) or abs(v) <= 2**53 for v in mq.values())


@pytest.mark.parametrize("case", RAWTOOLS_TABLES)
def test_malformed_rawtools_tables_are_refused(tmp_path: Path, case: str) -> None:
    (tmp_path / "QcDataTable.csv").write_text(RAWTOOLS_TABLES[case])
    with pytest.raises(ParseError, match="QcDataTable.csv"):
        parse_qc_data_table(tmp_path / "QcDataTable.csv")
    with pytest.raises(ParseError):
        parse_rawtools(tmp_path, tmp_path)


@pytest.mark.parametrize(("key", "val"), [("TotalScans", "1" * 29), ("NumMs2Scans", "-3")])
def test_malformed_rawtools_metrics_are_refused(tmp_path: Path, key: str, val: str) -> None:
    lines = METRICS.read_text().splitlines()
    assert any(line.startswith(f"{key}:") for line in lines), key
    text = "\n".join(f"{key}:\t{val}" if line.startswith(f"{key}:") else line for line in lines)
    (tmp_path / "small2.RAW_Metrics.txt").write_text(text + "\n")
    with pytest.raises(ParseError, match="Metrics"):
        parse_metrics_txt(tmp_path / "small2.RAW_Metrics.txt")


def _mq_copy(tmp_path: Path) -> Path:
    d = tmp_path / "txt"
    shutil.copytree(MQ0, d)
    return d


def _rewrite_gz(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    path.write_bytes(gzip.compress("\n".join(edit(lines)).encode("utf-8")))


def test_header_only_protein_groups_are_not_done(tmp_path: Path) -> None:
    d = _mq_copy(tmp_path)
    _rewrite_gz(d / "proteinGroups.txt.gz", lambda lines: lines[:1])
    with pytest.raises(ParseError, match="no protein groups"):
        parse_maxquant(d)


def test_header_only_summary_is_not_done(tmp_path: Path) -> None:
    d = _mq_copy(tmp_path)
    (d / "summary.txt").write_text((MQ0 / "summary.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(ParseError, match="summary.txt"):
        parse_maxquant(d)


def test_duplicated_maxquant_column_is_refused(tmp_path: Path) -> None:
    d = _mq_copy(tmp_path)

    def dup(lines: list[str]) -> list[str]:
        head = lines[0].split("\t")
        head[head.index("Score")] = "Intensity"
        return ["\t".join(head), *lines[1:]]

    _rewrite_gz(d / "proteinGroups.txt.gz", dup)
    with pytest.raises(ParseError, match="duplicated column"):
        parse_maxquant(d)


def test_huge_summary_numbers_are_refused_not_served_as_29_digit_integers(tmp_path: Path) -> None:
    d = _mq_copy(tmp_path)
    head, row, *rest = (MQ0 / "summary.txt").read_text().split("\n")
    cells = row.split("\t")
    i = head.split("\t").index("MS/MS Submitted") if "MS/MS Submitted" in head else head.split("\t").index(
        "MS/MS submitted")
    cells[i] = "9" * 29
    (d / "summary.txt").write_text("\n".join([head, "\t".join(cells), *rest]))
    with pytest.raises(ParseError, match="outside physical bounds"):
        parse_maxquant(d)
    # and nothing the parsers give is a JSON integer beyond 2**53
    assert "9" * 20 not in json.dumps(parse_maxquant(MQ0))


def test_streamed_protein_values_equal_the_in_memory_ones() -> None:
    """parse_maxquant streams proteinGroups (bounded memory); the list-based computation agrees."""
    from qcdaemon.tools.maxquant_proteins import _protein_values, parse_protein_groups, protein_group_batches
    from qcdaemon.tools.tsv import find_table

    for d in (MQ0, MQ1):
        pg = find_table(d, "proteinGroups.txt")
        assert pg is not None
        groups = parse_protein_groups(pg)
        channels = len(groups[0].reporter_corrected)
        streamed = parse_maxquant(d)
        expected = _protein_values(groups, channels)
        assert {k: streamed[k] for k in expected} == expected
        batches = list(protein_group_batches(pg, size=100))
        assert [g for b in batches for g in b] == groups and max(len(b) for b in batches) <= 100
