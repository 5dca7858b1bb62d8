"""Parsing a large proteinGroups.txt keeps memory bounded (issue 12).

A synthetic table shaped like MaxQuant's (the real example's header, rows of realistic width) is
parsed in a child process exactly as the MaxQuant stage does (``parse_maxquant_groups`` for the
values and, up to the stage's ``KEEP_ROWS``, the rows; beyond it ``protein_group_tables`` for the
rows in blocks); its peak RSS must stay under the bound.
``make test``: 5,000 groups; ``-m heavy``: 200,000 groups (the issue's group count).
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TEST_DATA

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc (Linux)")

RSS_BOUND_MB = 400
EXAMPLE = TEST_DATA / "maxquant" / "tmt11" / "example-0" / "proteinGroups.txt.gz"

# Peak RSS from /proc (VmHWM: this process image's own high-water mark; getrusage's ru_maxrss
# would carry the parent's peak across fork and exec on Linux).
CHILD = """
import sys
from qcdaemon.engine.stages.maxquant import KEEP_ROWS
from qcdaemon.store.proteins import PG_TEXT_COLUMNS
from qcdaemon.tools.maxquant_groups import protein_group_tables
from qcdaemon.tools.maxquant_parse import parse_maxquant_groups
txt = sys.argv[1]
values, kept = parse_maxquant_groups(txt, PG_TEXT_COLUMNS, KEEP_ROWS)
if kept is None:  # more than KEEP_ROWS: read again in blocks, as the stage does
    n = sum(t.num_rows for t in protein_group_tables(txt + "/proteinGroups.txt", PG_TEXT_COLUMNS))
else:
    n = sum(t.num_rows for t in kept)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(values["N_protein_groups"], n, hwm // 1024)
"""


def _write_table(folder: Path, groups: int) -> int:
    lines = gzip.decompress(EXAMPLE.read_bytes()).decode("utf-8").splitlines()
    header, rows = lines[0], [r for r in lines[1:] if r.strip()]
    out = folder / "proteinGroups.txt"
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(header + "\n")
        for i in range(groups):
            cells = rows[i % len(rows)].split("\t")
            cells[0] = f"P{i:07d};{cells[0]}"
            cells[1] = f"P{i:07d}"
            fh.write("\t".join(cells) + "\n")
    return out.stat().st_size


def _peak(tmp_path: Path, groups: int) -> None:
    size = _write_table(tmp_path, groups)
    res = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                         timeout=1200)
    assert res.returncode == 0, res.stderr[-2000:]
    n_values, n_rows, rss_mb = map(int, res.stdout.split())
    print(f"\nproteinGroups.txt {size / 1e6:.0f} MB, {groups} groups: peak RSS {rss_mb} MB (bound {RSS_BOUND_MB} MB)")
    assert n_values == n_rows == groups
    assert rss_mb < RSS_BOUND_MB


def test_parsing_5000_groups_stays_bounded(tmp_path: Path) -> None:
    _peak(tmp_path, 5_000)


@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_parsing_200000_groups_stays_bounded(tmp_path: Path) -> None:
    _peak(tmp_path, 200_000)
