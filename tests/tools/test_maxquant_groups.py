"""proteinGroups.txt read column by column into Arrow (issue 13's ingest): the same values as the
row-by-row parser (maxquant_proteins, tested on its own in test_parsers.py), hand-checked cell
conversions, blocks of any size, and the malformed files refused as before."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import TEST_DATA

from qcdaemon.errors import ParseError
from qcdaemon.store.proteins import PG_TEXT_COLUMNS, ProteinQueries
from qcdaemon.tools import maxquant_groups
from qcdaemon.tools.maxquant_groups import protein_group_tables, scan_protein_groups
from qcdaemon.tools.maxquant_proteins import parse_protein_groups, stream_protein_groups

TABLES = [TEST_DATA / "maxquant" / "tmt11" / "example-0" / "proteinGroups.txt.gz",
          TEST_DATA / "maxquant" / "tmt11" / "example-1" / "proteinGroups.txt",
          TEST_DATA / "standin_txt" / "proteinGroups.txt"]
SQL_TO_NAME = {v: k for k, v in PG_TEXT_COLUMNS.items()}


def _rows_as_stored(path: Path) -> pa.Table:
    """The row-by-row parser's groups as the store turned them into Arrow before (the reference)."""
    return ProteinQueries._protein_table(None, 7, parse_protein_groups(path))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.parent.name)
def test_columns_equal_the_row_parser(path: Path) -> None:
    agg, counts = stream_protein_groups(path)
    agg2, counts2, tables = scan_protein_groups(path, PG_TEXT_COLUMNS, keep_rows=10**6)
    assert counts2 == counts
    assert agg2.values(len(counts)) == agg.values(len(counts))
    assert tables is not None
    new = pa.concat_tables(tables)
    old = _rows_as_stored(path)
    assert new.num_rows == old.num_rows > 0
    for col in old.column_names[2:]:  # run_id, idx: the store's
        assert new.column(SQL_TO_NAME.get(col, col)).to_pylist() == old.column(col).to_pylist(), col


def _write(path: Path, header: list[str], rows: list[list[str]], *, encoding: str = "utf-8") -> Path:
    path.write_bytes(("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows)).encode(encoding))
    return path


HEADER = ["Protein IDs", "Majority protein IDs", "Fasta headers", "Score", "Intensity", "Reverse",
          "Potential contaminant", "Peptides", "Sequence coverage [%]", "Reporter intensity corrected 1"]
# (cell of "Peptides", its JSON text as json.dumps of the value written out by hand)
CELLS = [(" 12 ", "12"), ("007", "7"), ("-0", "0"), ("+5", "5"), ("1e5", "100000.0"), ("1.50", "1.5"),
         ("0.00001", "1e-05"), ("12345678901234567890", "1.2345678901234567e+19"), ("NaN", "null"),
         ("Infinity", "null"), ("", "null"), ("inf", '"inf"'), ('a"b', '"a\\"b"'), ("\u00e9t\u00e9", '"\\u00e9t\\u00e9"'),
         ("1;2", '"1;2"'), ("5", "5"), ("\u0661\u0662", "12"), ("\x1f8\x1f", "8"), ("12.0", "12.0"),
         ("0.1", "0.1"), ("1e999", "null"), ("-.5", "-0.5")]
SCORES = [("1.5", 1.5), ("", None), ("NaN", None), ("1e999", None), (" 3", 3.0), ("x", None), ("-2e-3", -0.002),
          ("\u0663", 3.0)]


def test_cells_convert_as_the_per_cell_functions_say(tmp_path: Path) -> None:
    cells = CELLS
    rows = []
    for i, (pep, _) in enumerate(cells):
        score = SCORES[i % len(SCORES)][0]
        rows.append([f"P{i}", f"P{i}", f"h{i}", score, "", " + " if i == 0 else "", "", pep, "", str(i)])
    path = _write(tmp_path / "proteinGroups.txt", HEADER, rows)
    (table,) = protein_group_tables(path, ["Peptides", "Q-value"])
    assert table.column("Peptides").to_pylist() == [j for _, j in cells]
    assert table.column("Q-value").to_pylist() == ["null"] * len(cells)  # no such column
    assert table.column("score").to_pylist() == [SCORES[i % len(SCORES)][1] for i in range(len(cells))]
    assert table.column("reverse").to_pylist() == [True] + [False] * (len(cells) - 1)
    assert table.column("reporter").to_pylist() == [[float(i)] for i in range(len(cells))]


def test_blocks_of_any_size_give_the_same_groups(tmp_path: Path) -> None:
    path = tmp_path / "proteinGroups.txt"
    path.write_bytes(gzip.decompress(TABLES[0].read_bytes()))
    whole = pa.concat_tables(protein_group_tables(path, PG_TEXT_COLUMNS))
    blocks = list(protein_group_tables(path, PG_TEXT_COLUMNS, block_bytes=64 << 10))
    assert len(blocks) > 5
    assert pa.concat_tables(blocks).equals(whole)
    agg, counts, kept = scan_protein_groups(path, (), keep_rows=500, block_bytes=64 << 10)
    ref, ref_counts = stream_protein_groups(path)
    assert kept is None  # more than keep_rows: nothing kept
    assert counts == ref_counts and agg.values(len(counts)) == ref.values(len(counts))


def _big(tmp_path: Path, bad_line: str, at: int = 3000, *, encoding: str = "utf-8") -> Path:
    lines = gzip.decompress(TABLES[0].read_bytes()).decode("utf-8").splitlines()
    body = [lines[1 + i % (len(lines) - 1)] for i in range(4000)]
    body[at - 2] = bad_line  # file line ``at``
    path = tmp_path / "proteinGroups.txt"
    path.write_bytes(("\n".join([lines[0], *body]) + "\n").encode(encoding))
    return path


def test_a_ragged_row_in_a_later_block_names_its_line(tmp_path: Path) -> None:
    path = _big(tmp_path, "P1\tP1\tonly three")
    with pytest.raises(ParseError, match=r"line 3000 has 3 fields, the header has 70"):
        list(protein_group_tables(path, PG_TEXT_COLUMNS, block_bytes=64 << 10))
    with pytest.raises(ParseError, match=r"line 3000 has 3 fields"):
        scan_protein_groups(path, block_bytes=64 << 10)


def test_a_nul_byte_in_a_later_block_is_binary_data(tmp_path: Path) -> None:
    lines = gzip.decompress(TABLES[0].read_bytes()).decode("utf-8").splitlines()
    cells = lines[5].split("\t")
    cells[40] = "ab\x00cd"  # a column no group field reads
    path = _big(tmp_path, "\t".join(cells))
    with pytest.raises(ParseError, match=r"binary data \(NUL byte\) on line 3000"):
        list(protein_group_tables(path, block_bytes=64 << 10))


def test_a_latin1_line_in_a_later_block_reads_as_before(tmp_path: Path) -> None:
    lines = gzip.decompress(TABLES[0].read_bytes()).decode("utf-8").splitlines()
    cells = lines[5].split("\t")
    cells[1] = "Prot\xe9ine"
    path = _big(tmp_path, "\t".join(cells))
    raw = path.read_bytes().replace("Prot\xe9ine".encode(), "Prot\xe9ine".encode("latin-1"))
    path.write_bytes(raw)
    new = pa.concat_tables(protein_group_tables(path, PG_TEXT_COLUMNS, block_bytes=64 << 10))
    old = _rows_as_stored(path)
    assert new.column("majority_ids")[2998].as_py() == "Prot\xe9ine"
    for col in old.column_names[2:]:
        assert new.column(SQL_TO_NAME.get(col, col)).to_pylist() == old.column(col).to_pylist(), col


def test_a_broken_gzip_stream_is_refused(tmp_path: Path) -> None:
    data = TABLES[0].read_bytes()
    path = tmp_path / "proteinGroups.txt.gz"
    path.write_bytes(data[: len(data) // 2])  # cut in the middle: the header reads, the rest does not
    with pytest.raises(ParseError, match=r"proteinGroups\.txt\.gz: cannot read"):
        scan_protein_groups(path)


def test_the_store_keeps_the_same_rows_from_a_table_as_from_row_objects(tmp_path: Path) -> None:
    from qcdaemon.store import Store
    from qcdaemon.tools.maxquant_parse import parse_maxquant, parse_maxquant_groups

    store = Store(tmp_path / "x.duckdb")
    uid = store.create_user("a@b.org", None, True)
    pid = store.create_project("P", "p", "", uid)
    pl = store.create_pipeline(pid, "R", "r", str(tmp_path / "r"), rawtools_args="")["id"]
    d = TABLES[1].parent
    values, groups = parse_maxquant_groups(d, PG_TEXT_COLUMNS, keep_rows=10**6)
    assert values == parse_maxquant(d) and groups is not None
    runs = [store.create_run(pl, f"r{i}.raw", source="watch", owner_id=uid, state="done")["id"] for i in range(2)]
    assert store.put_maxquant(runs[0], values, pa.concat_tables(groups)) == 19
    assert store.put_maxquant(runs[1], values, parse_protein_groups(TABLES[1])) == 19
    cols = "idx, majority_ids, fasta_headers, score, intensity, contaminant, reverse, only_by_site, reporter, " + \
        ", ".join(PG_TEXT_COLUMNS.values())
    a, b = (store.rows(f"SELECT {cols} FROM protein_groups WHERE run_id = ? ORDER BY idx", [r]) for r in runs)
    assert a == b and len(a) == 19
    store.close()


def test_a_column_of_ids_and_id_lists(tmp_path: Path) -> None:
    """Digits and ';' only (decided on the bytes): lists quoted, integers as JSON numbers."""
    cells = [("12", "12"), ("", "null"), ("1;2;3", '"1;2;3"'), ("007", "7"), ("0", "0"), (";", '";"'),
             ("12345678901234567", "1.2345678901234568e+16"), ("123456789012345", "123456789012345")]
    rows = [[f"P{i}", f"P{i}", "", "", "", "", "", "", "", "1", c] for i, (c, _) in enumerate(cells)]
    path = _write(tmp_path / "proteinGroups.txt", [*HEADER, "Evidence IDs"], rows)
    (table,) = protein_group_tables(path, ["Evidence IDs"])
    assert table.column("Evidence IDs").to_pylist() == [j for _, j in cells]


PEPTIDE_HEADER = ["Sequence", "Missed cleavages", "Last amino acid", "Reverse", "Potential contaminant",
                  "Oxidation (M) site IDs"]


def test_peptides_are_counted_as_the_rows_say(tmp_path: Path) -> None:
    from qcdaemon.tools.maxquant_parse import _peptide_values

    rows = [["A", "0", "K", "+", "", ""], ["B", "1.5", " K", " + ", "+", " "], ["C", "-1", "R", "", "", "1"],
            ["D", "", "X", "", "", ""], ["E", "7", "R", "", "", "2;3"], ["F", "2", "", "", "", ""],
            ["G", "3", "k", "", "", ""], ["H", "x", "K", "", "", ""], ["I", "0.99", "K", "", "", ""],
            ["J", "\u0662", "K", "", "", ""]]
    v = _peptide_values(_write(tmp_path / "peptides.txt", PEPTIDE_HEADER, rows))
    # by hand: 10 peptides; contaminant B; reverse A, B (" + " strips to "+"); oxidation B (" " is a
    # value), C, E; cleavages 0: A, I (int(0.99) = 0); 1: B; 2: F, J (Arabic-Indic 2); >=3: E, G;
    # C (-1), D (empty), H (text) in no bucket; last K: A, H, I, J (" K" is not "K"); R: C, E
    assert v["N_peptides"] == 10 and v["N_peptides_potential_contaminants"] == 1 and v["N_peptides_reverse"] == 2
    assert v["Oxidations [%]"] == 30.0 and v["N_missed_cleavages_total"] == 5
    assert (v["N_missed_cleavages_eq_0 [%]"], v["N_missed_cleavages_eq_1 [%]"], v["N_missed_cleavages_eq_2 [%]"],
            v["N_missed_cleavages_gt_3 [%]"]) == (20.0, 10.0, 20.0, 20.0)
    assert (v["N_peptides_last_amino_acid_K [%]"], v["N_peptides_last_amino_acid_R [%]"],
            v["N_peptides_last_amino_acid_other [%]"]) == (40.0, 20.0, 40.0)


def test_a_ragged_or_binary_peptides_line_is_refused_with_its_line(tmp_path: Path) -> None:
    from qcdaemon.tools.maxquant_parse import _peptide_values

    good = [["A", "0", "K", "", "", ""]] * 5
    path = _write(tmp_path / "peptides.txt", PEPTIDE_HEADER, [*good, ["B", "1"], *good])
    with pytest.raises(ParseError, match=r"peptides\.txt: line 7 has 2 fields, the header has 6"):
        _peptide_values(path)
    path = _write(tmp_path / "peptides.txt", PEPTIDE_HEADER, [*good, ["B", "1", "K", "", "", "\x00"], *good])
    with pytest.raises(ParseError, match=r"binary data \(NUL byte\) on line 7"):
        _peptide_values(path)


def test_columns_of_number_bytes_read_as_number_says(tmp_path: Path) -> None:
    """Intensity: only digits, signs, points and exponents (one cast); Score: the same bytes, but
    "e", "-" and "1-2" are no numbers (the cast refuses them: read cell by cell)."""
    intensity = [("1.5", 1.5), ("", None), ("-0", -0.0), ("1e999", None), ("+2", 2.0), ("5.", 5.0), (".5", 0.5),
                 ("1E3", 1000.0)]
    score = [("1", 1.0), ("e", None), ("2", 2.0), ("-", None), ("1-2", None), ("3e2", 300.0), ("", None), ("7", 7.0)]
    rows = [[f"P{i}", f"P{i}", "", s, it, "", "", "", "", "1"]
            for i, ((it, _), (s, _)) in enumerate(zip(intensity, score, strict=True))]
    (table,) = protein_group_tables(_write(tmp_path / "proteinGroups.txt", HEADER, rows))
    assert table.column("intensity").to_pylist() == [x for _, x in intensity]
    assert table.column("score").to_pylist() == [x for _, x in score]


def test_channel_counts_stay_distinct_when_held_flags_are_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    """Groups repeated across blocks (4,000 rows cycling over the example's 1,272) count once per
    channel, whether the held flags are made distinct only at the end or every few hundred rows."""
    path = _big(tmp_path, gzip.decompress(TABLES[0].read_bytes()).decode("utf-8").splitlines()[5])
    ref, ref_counts = stream_protein_groups(path)
    _, at_end, _ = scan_protein_groups(path, (), block_bytes=64 << 10)
    monkeypatch.setattr(maxquant_groups, "_COMPACT_ROWS", 300)
    _, compacted, _ = scan_protein_groups(path, (), block_bytes=64 << 10)
    assert at_end == compacted == ref_counts
    assert max(ref_counts) < 1272 < 4000  # distinct ids, fewer than the rows
