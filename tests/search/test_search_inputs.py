"""Bad and unusual inputs: no MS2, corrupt FASTA, a FASTA that matches nothing, BSA runs, corrupt RAW.

Every case ends in a clear reason (an error of its own type, or an empty result with SearchNote),
through the library and through the real command line in a child process.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qcdaemon.errors import QcdaemonError
from qcdaemon.rawfile.reader import CorruptRawFile
from qcdaemon.search import CorruptFasta, NoMs2Spectra
from qcdaemon.search.fasta import read_fasta
from qcdaemon.search.metrics import search_values
from qcdaemon.search.sage import run_search

from .data import BSA_FASTA, BSA_RAW, MS1_ONLY_RAW, YEAST_FASTA, YEAST_RAW

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qcdaemon", "parse", "search", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_raw_without_ms2_is_a_clear_error(db_cache) -> None:
    with pytest.raises(NoMs2Spectra, match="no MS2 spectra"):
        run_search(MS1_ONLY_RAW, BSA_FASTA, cache=db_cache)
    assert issubclass(NoMs2Spectra, QcdaemonError)
    res = cli(str(MS1_ONLY_RAW), "--fasta", str(BSA_FASTA))
    assert res.returncode == 4 and "no MS2 spectra" in res.stderr and res.stdout == ""


@pytest.mark.parametrize("content, reason", [
    (b"\x01\xa1F\x00i\x00n\x00\x00\x00garbage", "binary data"),
    (b"MKWVTFISLLLLFSSAYS\n", "before the first '>' header"),
    (b">sp|X|Y one\nMKWV1TFIS\n", "'1' is not an amino-acid letter"),
    (b">sp|X|Y one\n>sp|Z|W two\nMKWV\n", "has no sequence"),
    (b"; only a comment\n\n", "no FASTA record"),
    (b">sp|X|Y caf\xe9\nMKWV\n", "not a text file"),
])
def test_corrupt_fasta_is_a_clear_error(tmp_path: Path, content: bytes, reason: str, db_cache) -> None:
    bad = tmp_path / "bad.fasta"
    bad.write_bytes(content)
    with pytest.raises(CorruptFasta) as info:
        run_search(YEAST_RAW, bad, cache=db_cache)
    assert reason in str(info.value)
    res = cli(str(YEAST_RAW), "--fasta", str(bad))
    assert res.returncode == 2 and reason in res.stderr


def test_truncated_gzip_fasta_is_corrupt(tmp_path: Path) -> None:
    bad = tmp_path / "yeast.fasta.gz"
    bad.write_bytes(YEAST_FASTA.read_bytes()[:50_000])
    with pytest.raises(CorruptFasta, match="truncated or corrupt gzip"):
        read_fasta(bad)


def test_gzipped_and_plain_fasta_read_the_same(tmp_path: Path) -> None:
    plain = tmp_path / "yeast.fasta"
    plain.write_bytes(gzip.decompress(YEAST_FASTA.read_bytes()))
    a, b = read_fasta(YEAST_FASTA), read_fasta(plain)
    assert a.text == b.text and a.proteins == b.proteins == 6077  # the shared README's count


def test_fasta_with_no_matching_protein_gives_an_empty_result_with_a_reason(db_cache) -> None:
    result = run_search(YEAST_RAW, BSA_FASTA, cache=db_cache)  # yeast spectra, albumin database
    values = search_values(result)
    assert values["SearchPsms"] == 0 and values["SearchPeptides"] == 0 and values["SearchProteinGroups"] == 0
    assert values["SearchPrecursorErrorMedianPpm"] is None
    assert "FASTA may not match the sample" in values["SearchNote"]
    res = cli(str(YEAST_RAW), "--fasta", str(BSA_FASTA))
    assert res.returncode == 0
    assert json.loads(res.stdout)["values"]["SearchPsms"] == 0


def test_bsa_run_finishes_cleanly_with_few_or_no_ids(db_cache) -> None:
    result = run_search(BSA_RAW, BSA_FASTA, cache=db_cache)
    values = search_values(result)
    assert result.fragment_tolerance == (0.5, "da")  # ion-trap MS2
    assert values["SearchMs2Spectra"] == 123  # the shared README's count
    assert values["SearchPsms"] <= 20
    assert (values["SearchPsms"] == 0) == (values["SearchNote"] is not None)


def test_truncated_raw_file_is_corrupt(tmp_path: Path, db_cache) -> None:
    cut = tmp_path / "cut.raw"
    cut.write_bytes(YEAST_RAW.read_bytes()[:400_000])
    with pytest.raises(CorruptRawFile):
        run_search(cut, BSA_FASTA, cache=db_cache)
    res = cli(str(cut), "--fasta", str(BSA_FASTA))
    assert res.returncode == 2 and "cut.raw" in res.stderr


def test_missing_files_and_bad_parameters(tmp_path: Path) -> None:
    assert cli(str(tmp_path / "none.raw"), "--fasta", str(BSA_FASTA)).returncode == 1
    assert cli(str(YEAST_RAW), "--fasta", str(tmp_path / "none.fasta")).returncode == 1
    res = cli(str(YEAST_RAW), "--fasta", str(BSA_FASTA), "--search-params", '{"enzyme": "pepsin"}')
    assert res.returncode == 2 and "enzyme 'pepsin'" in res.stderr
    res = cli(str(YEAST_RAW), "--fasta", str(BSA_FASTA), "--fdr", "5")
    assert res.returncode == 2 and "fdr" in res.stderr
    res = cli(str(YEAST_RAW))
    assert res.returncode == 2 and "--fasta" in res.stderr  # a required option (argparse's usage error)


def test_cli_prints_the_values_and_writes_the_psm_table(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "psms.parquet"
    res = cli(str(YEAST_RAW), "--fasta", str(YEAST_FASTA), "--fdr", "0.05", "--cache-dir", str(tmp_path / "c"),
              "--psms", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # stdout holds only the JSON (sagepy's notes go to stderr)
    assert doc["values"]["SearchPeptides"] >= 40 and doc["values"]["SearchFdr"] == 0.05
    assert doc["database"]["proteins"] == 6077
    table = pq.read_table(out)
    assert table.num_rows >= doc["values"]["SearchPsms"]
    assert (tmp_path / "c" / doc["database"]["key"] / "manifest.json").is_file()
