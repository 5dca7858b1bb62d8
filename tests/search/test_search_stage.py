"""The search stage in the real daemon: watched folders, the child process, the store, the API, mzQC.

A real daemon process (tests/daemonproc.py) watches two folders: one feeds a pipeline with the yeast
FASTA, one a pipeline whose FASTA is corrupt.  Checked: the search stage runs between native and
MaxQuant and stores its values where /api/qc-data finds them, its PSMs in the psms table, the
mzQC lists the FASTA as identification input; a RAW file without MS2 and a corrupt FASTA give a
skipped and a failed stage with the reason, a FASTA with no matching protein a done stage with zero
counts and the reason, a BSA run few or no identifications, and the daemon goes on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
from daemonproc import Daemon, wait_for

from qcdaemon.store import Store

from .data import BSA_FASTA, BSA_RAW, MS1_ONLY_RAW, YEAST_FASTA, YEAST_RAW


def test_search_stage_in_the_daemon(tmp_path: Path) -> None:
    good, bad, albumin = tmp_path / "yeast-instrument", tmp_path / "bad-instrument", tmp_path / "bsa-instrument"
    for folder in (good, bad, albumin):
        folder.mkdir()
    corrupt = tmp_path / "corrupt.fasta"
    corrupt.write_bytes(b">sp|X|Y broken\nMKWV!TFIS\n")
    watch = [{"path": str(good), "pipeline": "lab-qc/yeast", "owner": "op@lab.org", "settle_seconds": 0.5,
              "poll_interval": 0.5},
             {"path": str(bad), "pipeline": "lab-qc/broken", "owner": "op@lab.org", "settle_seconds": 0.5,
              "poll_interval": 0.5},
             {"path": str(albumin), "pipeline": "lab-qc/albumin", "owner": "op@lab.org", "settle_seconds": 0.5,
              "poll_interval": 0.5}]
    # keep_warm_seconds 0: a fresh search child per run (the warm worker: test_search_warm_daemon.py)
    d = Daemon(tmp_path, engine={"search": {"threads": 2, "memory_mb": 4096, "keep_warm_seconds": 0}},
               watch=watch)  # fdr 0.01
    try:
        d.cli("user", "add", "op@lab.org", "--password-stdin", input="operator-pass\n")
        d.cli("project", "add", "Lab QC", "--member", "op@lab.org")
        bad_params = d.cli("pipeline", "add", "--project", "lab-qc", "--name", "Yeast", "--fasta", str(YEAST_FASTA),
                           "--search-params", '{"enzyme": "pepsin"}', check=False)
        assert bad_params.returncode != 0 and "enzyme 'pepsin'" in bad_params.stderr
        # the pipeline's own parameters override [engine.search] (FDR 1 % there, 5 % here)
        d.cli("pipeline", "add", "--project", "lab-qc", "--name", "Yeast", "--fasta", str(YEAST_FASTA),
              "--search-params", '{"fdr": 0.05, "variable_mods": ["M:Oxidation"]}')
        d.cli("pipeline", "add", "--project", "lab-qc", "--name", "Broken", "--fasta", str(corrupt))
        d.cli("pipeline", "add", "--project", "lab-qc", "--name", "Albumin", "--fasta", str(BSA_FASTA))
        d.start()
        shutil.copyfile(YEAST_RAW, good / "yeast_01.raw")
        shutil.copyfile(MS1_ONLY_RAW, good / "ms1_only.raw")
        shutil.copyfile(YEAST_RAW, bad / "yeast_02.raw")
        shutil.copyfile(YEAST_RAW, albumin / "yeast_03.raw")  # yeast spectra, an albumin FASTA: nothing matches
        shutil.copyfile(BSA_RAW, albumin / "bsa_01.raw")
        runs = {r["name"]: r for r in wait_for(lambda: d.finished(5), 300, "five runs to finish")}

        def stages(name: str) -> dict[str, dict]:
            return {s["stage"]: s for s in runs[name]["stages"]}

        yeast = stages("yeast_01.raw")
        assert [s["stage"] for s in runs["yeast_01.raw"]["stages"]] == ["native", "rawtools", "search", "maxquant"]
        assert yeast["search"]["state"] == "done" and yeast["native"]["state"] == "done"
        assert yeast["maxquant"]["state"] == "skipped"  # not configured here
        no_ms2 = stages("ms1_only.raw")["search"]
        assert no_ms2["state"] == "skipped" and "no MS2 spectra" in no_ms2["error"]
        broken = stages("yeast_02.raw")["search"]
        assert broken["state"] == "failed" and "'!' is not an amino-acid letter" in broken["error"]
        assert d.api("/api/health", method="GET")  # the daemon is still up
        # a FASTA with no matching protein: a done stage with zero counts and the reason; BSA: few or none
        assert stages("yeast_03.raw")["search"]["state"] == "done" and stages("bsa_01.raw")["search"]["state"] == "done"
        bsa = d.api("/api/qc-data", {"project": "lab-qc", "pipeline": "albumin"})
        j, k = bsa["RawFile"].index("yeast_03"), bsa["RawFile"].index("bsa_01")
        assert bsa["SearchPsms"][j] == 0 and bsa["SearchPeptides"][j] == 0
        assert "FASTA may not match the sample" in bsa["SearchNote"][j]
        assert bsa["SearchMs2Spectra"][k] == 123 and bsa["SearchPsms"][k] <= 20

        qc = d.api("/api/qc-data", {"project": "lab-qc", "pipeline": "yeast"})
        i = qc["RawFile"].index("yeast_01")
        assert qc["SearchPeptides"][i] >= 40 and qc["SearchFdr"][i] == 0.05
        assert qc["SearchPsms"][i] >= qc["SearchPeptides"][i]
        assert -2.5 < qc["SearchPrecursorErrorMedianPpm"][i] < -0.5
        assert qc["NumMs2Scans"][i] == 118  # the native stage's count sits next to the search's
        assert qc["SearchMs2Spectra"][i] == 118
        # the search's values updated the run's verdict: it is now identification-based
        [verdict] = d.api("/api/qc/verdicts", {"project": "lab-qc", "pipeline": "yeast",
                                               "run_keys": [runs["yeast_01.raw"]["run_key"]]})["runs"]
        assert verdict["basis"] == "id-based"

        mzqc = d.api("/api/mzqc", {"project": "lab-qc", "pipeline": "yeast"})
        [quality] = [q for q in mzqc["mzQC"]["runQualities"] if q["metadata"]["label"] == runs["yeast_01.raw"]["run_key"]]
        formats = [f["fileFormat"]["accession"] for f in quality["metadata"]["inputFiles"]]
        assert formats == ["MS:1000563", "MS:1001348"]
        counts = {m["accession"]: m["value"] for m in quality["qualityMetrics"]}
        assert counts["MS:1003251"] == qc["SearchPsms"][i] and counts["MS:1003250"] == qc["SearchPeptides"][i]
        assert any(s.get("value") == "Sage" for s in quality["metadata"]["analysisSoftware"])
        manifests = list((d.data / "search-db").glob("*/manifest.json"))
        assert len(manifests) == 2  # the yeast and the albumin index; the corrupt FASTA never reached Sage
        assert d.stop() == 0

        store = Store(d.data / "qcdaemon.duckdb")
        try:
            table = store.psms(int(runs["yeast_01.raw"]["run_key"][2:]))
        finally:
            store.close()
        assert isinstance(table, pa.Table) and table.num_rows >= qc["SearchPsms"][i]
        targets = [q for q, decoy in zip(table.column("spectrum_q").to_pylist(), table.column("decoy").to_pylist())
                   if not decoy and q <= 0.05]
        assert len(targets) == qc["SearchPsms"][i]
        assert {"peptide", "proteins", "rt", "precursor_error_ppm", "peptide_q"} <= set(table.column_names)
    finally:
        d.close()


def test_psm_table_round_trips_through_the_store(tmp_path: Path, yeast_5pct) -> None:
    from qcdaemon.search.metrics import psm_table

    table = psm_table(yeast_5pct)
    store = Store(tmp_path / "db.duckdb")
    try:
        assert store.put_psms(7, table) == table.num_rows
        assert store.put_psms(7, table) == table.num_rows  # a re-run replaces, never doubles
        back = store.psms(7)
        assert back.num_rows == table.num_rows and back.column("peptide").to_pylist() == table.column("peptide").to_pylist()
        assert store.psms(8).num_rows == 0
    finally:
        store.close()
