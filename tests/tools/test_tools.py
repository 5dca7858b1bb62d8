"""engine/rawtools.py and engine/maxquant.py: the real RawTools under mono, the MaxQuant stand-in."""

from __future__ import annotations

import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from qcdaemon.errors import ToolError
from qcdaemon.tools.maxquant import (
    find_txt_dir,
    maxquant_argv,
    maxquant_version,
    write_mqpar,
)
from qcdaemon.tools.rawtools import (
    DEFAULT_ARGS,
    STAGE_DIR,
    clear_outputs,
    default_rawtools_command,
    find_rawtools_exe,
    job_dir,
    rawtools_jobs,
    rawtools_outputs_ok,
    stage_raw,
)
from qcdaemon.tools.runner import run_tool

HERE = Path(__file__).resolve().parents[1]
RAW_DIR = HERE / "data" / "raw"
STANDIN = HERE / "tools" / "MaxQuantCmd"
STANDIN_TXT = HERE / "data" / "standin_txt"
SHARED_MQPAR = Path(__file__).resolve().parents[1] / "data" / "maxquant" / "mqpar"  # copies of the shared templates
TEMPLATES = sorted(SHARED_MQPAR.glob("*.xml"))
assert len(TEMPLATES) == 4, "tests/data/maxquant/mqpar must hold the four MaxQuant templates"

RAWTOOLS = default_rawtools_command()
needs_rawtools = pytest.mark.skipif(
    shutil.which("mono") is None or find_rawtools_exe() is None,
    reason="needs mono and the pyRawTools distribution",
)


def listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())


@pytest.fixture
def instrument(tmp_path: Path) -> Path:
    """A stand-in instrument folder holding copies of the test RAW files."""
    folder = tmp_path / "instrument"
    folder.mkdir()
    for name in ("small2.RAW", "small.RAW"):
        shutil.copyfile(RAW_DIR / name, folder / name)
    return folder


async def run_rawtools(raw: Path, work: Path, args: str = DEFAULT_ARGS) -> dict:
    stage_raw(raw, work / STAGE_DIR)
    results = {}
    for name, argv in rawtools_jobs(RAWTOOLS, raw, work, args):
        d = job_dir(work, name)
        results[name] = await run_tool(argv, cwd=d, log_dir=d, name=name, timeout=300)
    return results


# --------------------------------------------------------------------------------------------
# RawTools: locating, command lines, staging


@needs_rawtools
def test_find_rawtools() -> None:
    exe = find_rawtools_exe()
    assert exe.name == "RawTools.exe" and exe.is_file()
    assert default_rawtools_command() == (("mono", str(exe)) if os.name != "nt" else (str(exe),))


def test_rawtools_jobs(tmp_path: Path) -> None:
    work = tmp_path / "work"
    jobs = rawtools_jobs(["mono", "/x/RawTools.exe"], Path("/instrument/run 1.raw"), work)
    assert [name for name, _ in jobs] == ["rawtools_metrics", "rawtools_qc"]
    metrics, qc = jobs[0][1], jobs[1][1]
    assert metrics == ["mono", "/x/RawTools.exe", "-f", str(work / "stage" / "run 1.raw"),
                       "-o", str(work / "rawtools"), *DEFAULT_ARGS.split()]
    assert qc == ["mono", "/x/RawTools.exe", "-d", str(work / "stage"), "-qc", str(work / "rawtools_qc")]
    assert job_dir(work, "rawtools_qc") == work / "rawtools_qc"
    assert rawtools_jobs(["rt"], Path("a.raw"), work, "-x")[0][1][-1] == "-x"


def test_stage_raw_copies_and_never_writes_next_to_the_raw(instrument: Path, tmp_path: Path) -> None:
    before = listing(instrument)
    stage = tmp_path / "work" / "stage"
    (stage).mkdir(parents=True)
    (stage / "old.raw").write_text("a previous run")
    staged = stage_raw(instrument / "small2.RAW", stage)
    assert staged == stage / "small2.RAW"
    assert [p.name for p in stage.iterdir()] == ["small2.RAW"]
    assert staged.read_bytes() == (instrument / "small2.RAW").read_bytes()
    assert not staged.is_symlink()
    # a copy, never a second name of the instrument's file (issue 12): its inode has one name
    assert not staged.samefile(instrument / "small2.RAW")
    assert (instrument / "small2.RAW").stat().st_nlink == 1 and staged.stat().st_nlink == 1
    assert not os.access(staged, os.W_OK) or os.geteuid() == 0  # read-only (root may write anyway)
    assert os.name == "nt" or staged.stat().st_mode & 0o222 == 0
    assert stage_raw(instrument / "small2.RAW", stage) == staged  # idempotent
    assert [(n, s) for n, s, _ in listing(instrument)] == [(n, s) for n, s, _ in before]


def test_stage_raw_replaces_a_hard_link_left_by_an_older_version(instrument: Path, tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    os.link(instrument / "small2.RAW", stage / "small2.RAW")
    staged = stage_raw(instrument / "small2.RAW", stage)
    assert not staged.samefile(instrument / "small2.RAW")
    assert (instrument / "small2.RAW").stat().st_nlink == 1
    assert staged.read_bytes() == (instrument / "small2.RAW").read_bytes()
    assert [p.name for p in stage.iterdir()] == ["small2.RAW"]


def test_stage_raw_refusals(instrument: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="does not exist"):
        stage_raw(instrument / "missing.raw", tmp_path / "stage")
    with pytest.raises(ToolError, match="own folder"):
        stage_raw(instrument / "small2.RAW", instrument)


def test_outputs_ok_reasons(tmp_path: Path) -> None:
    assert "no _Metrics.txt" in rawtools_outputs_ok(tmp_path)
    (tmp_path / "rawtools").mkdir()
    (tmp_path / "rawtools" / "a.raw_Metrics.txt").write_text("RawFile:\ta.raw\n")
    assert "no QcDataTable.csv" in rawtools_outputs_ok(tmp_path)
    assert rawtools_outputs_ok(tmp_path, jobs=["rawtools_metrics"]) is None
    (tmp_path / "rawtools_qc").mkdir()
    (tmp_path / "rawtools_qc" / "QcDataTable.csv").write_text("DateAcquired,RawFile\n")
    assert "no data row" in rawtools_outputs_ok(tmp_path)
    (tmp_path / "rawtools_qc" / "QcDataTable.csv").write_text("DateAcquired,RawFile\n1,a.raw\n")
    assert rawtools_outputs_ok(tmp_path) is None


# --------------------------------------------------------------------------------------------
# The real RawTools


@needs_rawtools
async def test_real_rawtools_on_small2(instrument: Path, tmp_path: Path) -> None:
    before = listing(instrument)
    work = tmp_path / "work"
    results = await run_rawtools(instrument / "small2.RAW", work)
    for res in results.values():
        assert res.ok, res.error_excerpt
        assert res.duration < 60
    assert rawtools_outputs_ok(work) is None
    metrics = work / "rawtools"
    assert (metrics / "small2.RAW_Metrics.txt").read_text().startswith("RawFile:")
    for suffix in ("_Matrix.txt", ".mgf", "_Ms_TIC_chromatogram.txt", "_Ms2_TIC_chromatogram.txt"):
        assert (metrics / f"small2.RAW{suffix}").is_file()
    table = (work / "rawtools_qc" / "QcDataTable.csv").read_text().splitlines()
    assert table[0].startswith("DateAcquired,RawFile,Instrument") and "Orbitrap Velos Pro" in table[1]
    # rawtools_log.txt lands in each job's cwd, nothing next to the input or in the stage dir
    assert (metrics / "rawtools_log.txt").is_file() and (work / "rawtools_qc" / "rawtools_log.txt").is_file()
    assert listing(instrument) == before
    assert [p.name for p in (work / STAGE_DIR).iterdir()] == ["small2.RAW"]
    assert sorted(p.name for p in work.iterdir()) == ["rawtools", "rawtools_qc", "stage"]


@needs_rawtools
async def test_real_rawtools_crash_on_small(instrument: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    results = await run_rawtools(instrument / "small.RAW", work)
    for res in results.values():
        assert not res.ok and res.exit_code == 1
        assert res.error_excerpt.startswith("exit code 1: Unhandled Exception:")
        assert "KeyNotFoundException" in res.error_excerpt
    assert "no _Metrics.txt" in rawtools_outputs_ok(work)


@needs_rawtools
async def test_real_rawtools_cannot_read_through_a_symlink(instrument: Path, tmp_path: Path) -> None:
    """Why stage_raw never symlinks: mono sees the link's own size."""
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "small2.RAW").symlink_to(instrument / "small2.RAW")
    argv = [*RAWTOOLS, "-f", str(tmp_path / "stage" / "small2.RAW"), "-o", str(tmp_path / "out"), "-x"]
    res = await run_tool(argv, cwd=tmp_path, log_dir=tmp_path, name="t", timeout=120)
    assert res.exit_code == 1 and "Instrument index not available" in res.error_excerpt


@needs_rawtools
async def test_real_rawtools_exit_0_without_output_is_caught(instrument: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    results = await run_rawtools(instrument / "small2.RAW", work, args="-p")  # no -x: no metrics
    assert results["rawtools_metrics"].ok
    assert "no _Metrics.txt" in rawtools_outputs_ok(work)
    # A QC rerun into a folder whose QC.xml already lists the file: exit 0 and no table.
    (work / "rawtools_qc" / "QcDataTable.csv").unlink()
    res = (await run_rawtools(instrument / "small2.RAW", work))["rawtools_qc"]
    assert res.ok
    assert "No new files" in res.stdout_path.read_text()
    assert "QC.xml there already lists the file" in rawtools_outputs_ok(work, jobs=["rawtools_qc"])
    clear_outputs(work)
    await run_rawtools(instrument / "small2.RAW", work)
    assert rawtools_outputs_ok(work) is None


# --------------------------------------------------------------------------------------------
# mqpar.xml


def _written(tmp_path: Path, template: Path, **kw: object) -> tuple[Path, ET.Element]:
    out = tmp_path / "work" / "mqpar.xml"
    args = dict(raw=tmp_path / "work" / "maxquant" / "run1.raw", fasta=tmp_path / "db.fasta",
                label="run1", threads=3, combined_dir=tmp_path / "work")
    args.update(kw)
    write_mqpar(template, out, **args)
    return out, ET.parse(out).getroot()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_write_mqpar_on_real_templates(template: Path, tmp_path: Path) -> None:
    out, root = _written(tmp_path, template)
    assert [s.text for s in root.findall("filePaths/string")] == [str(tmp_path / "work" / "maxquant" / "run1.raw")]
    assert [s.text for s in root.findall("experiments/string")] == ["run1"]
    assert [s.text for s in root.findall("fastaFiles/FastaFileInfo/fastaFilePath")] == [str(tmp_path / "db.fasta")]
    assert root.findtext("numThreads") == "3"
    for tag in ("fractions", "ptms", "paramGroupIndices", "referenceChannel"):
        assert len(root.find(tag)) == 1
    has_fixed = b"<fixedCombinedFolder>" in template.read_bytes()
    assert (root.find("fixedCombinedFolder") is not None) == has_fixed  # 2.7.5.0 has none: none added
    if has_fixed:
        assert root.findtext("fixedCombinedFolder") == str(tmp_path / "work")
    # The file differs from the template only on the lines we meant to change.
    old, new = template.read_bytes(), out.read_bytes()
    assert (b"\r\n" in old) == (b"\r\n" in new)
    old_lines, new_lines = old.decode().splitlines(), new.decode().splitlines()
    assert len(old_lines) == len(new_lines)
    changed = {a.strip().split(">")[0] for a, b in zip(old_lines, new_lines) if a != b}
    expected = {"<fastaFilePath", "<numThreads", "<string"} | ({"<fixedCombinedFolder"} if has_fixed else set())
    assert changed <= expected and {"<fastaFilePath", "<string"} <= changed
    assert 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"' in new_lines[1]


def test_write_mqpar_resizes_multi_file_lists_and_old_fasta_form(tmp_path: Path) -> None:
    template = tmp_path / "multi.xml"
    template.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<MaxQuantParams>\n'
        "   <fastaFiles>\n      <string>a.fasta</string>\n      <string>b.fasta</string>\n   </fastaFiles>\n"
        "   <numThreads>8</numThreads>\n"
        "   <filePaths>\n      <string>C:\\a.raw</string>\n      <string>C:\\b.raw</string>\n   </filePaths>\n"
        "   <experiments>\n      <string>a</string>\n      <string>b</string>\n   </experiments>\n"
        "   <fractions>\n      <short>1</short>\n      <short>2</short>\n   </fractions>\n"
        "   <ptms>\n   </ptms>\n"
        "   <paramGroupIndices>\n      <int>0</int>\n      <int>0</int>\n   </paramGroupIndices>\n"
        "   <keepMe>x &amp; y</keepMe>\n</MaxQuantParams>\n"
    )
    out, root = _written(tmp_path, template, combined_dir=None, threads=1)
    assert [s.text for s in root.findall("fastaFiles/string")] == [str(tmp_path / "db.fasta")]
    assert [s.text for s in root.findall("fractions/short")] == ["1"]
    assert [s.text for s in root.findall("ptms/boolean")] == ["False"]
    assert len(root.find("paramGroupIndices")) == 1 and root.find("referenceChannel") is None
    assert root.findtext("keepMe") == "x & y" and root.findtext("numThreads") == "1"
    text = out.read_text()
    assert "      <short>1</short>\n   </fractions>" in text
    assert "<ptms>\n      <boolean>False</boolean>\n   </ptms>" in text


def test_write_mqpar_fixed_folder_defaults_to_mqpar_folder(tmp_path: Path) -> None:
    template = next(t for t in TEMPLATES if b"<fixedCombinedFolder>" in t.read_bytes())
    _, root = _written(tmp_path, template, combined_dir=None)
    assert root.findtext("fixedCombinedFolder") == str(tmp_path / "work")


@pytest.mark.parametrize("content, message", [
    ("<MaxQuantParams><filePaths>", "not valid XML"),
    ("<?xml version='1.0'?><Other/>", "not <MaxQuantParams>"),
    ("<MaxQuantParams><experiments/><fastaFiles><string/></fastaFiles></MaxQuantParams>", "no <filePaths>"),
    ("<MaxQuantParams><filePaths/><experiments/><fastaFiles/></MaxQuantParams>", "lists no fasta"),
])
def test_write_mqpar_rejects_malformed_templates(tmp_path: Path, content: str, message: str) -> None:
    template = tmp_path / "bad.xml"
    template.write_text(content)
    with pytest.raises(ToolError, match=message):
        _written(tmp_path, template)
    assert not (tmp_path / "work" / "mqpar.xml").exists()
    with pytest.raises(ToolError, match="does not exist"):
        _written(tmp_path, tmp_path / "missing.xml")


# --------------------------------------------------------------------------------------------
# MaxQuant command line


@pytest.mark.parametrize("command, runtime, os_name, expected", [
    (["mono", "/opt/MQ/bin/MaxQuantCmd.exe"], "auto", "posix", ["mono", "/opt/MQ/bin/MaxQuantCmd.exe"]),
    (["/opt/MQ_2.7.5.0/bin/MaxQuantCmd.dll"], "auto", "posix", ["dotnet", "/opt/MQ_2.7.5.0/bin/MaxQuantCmd.dll"]),
    (["/opt/MaxQuant_v1.6.10.43/bin/MaxQuantCmd.exe"], "auto", "posix", ["mono", "/opt/MaxQuant_v1.6.10.43/bin/MaxQuantCmd.exe"]),
    (["/opt/MaxQuant_v2.4.12.0/bin/MaxQuantCmd.exe"], "auto", "posix", ["mono", "/opt/MaxQuant_v2.4.12.0/bin/MaxQuantCmd.exe"]),
    (["/opt/MaxQuant_v2.6.1.0/bin/MaxQuantCmd.exe"], "auto", "posix", ["dotnet", "/opt/MaxQuant_v2.6.1.0/bin/MaxQuantCmd.dll"]),
    (["/opt/MaxQuant_v10.0.0.0/bin/MaxQuantCmd.exe"], "auto", "posix", ["dotnet", "/opt/MaxQuant_v10.0.0.0/bin/MaxQuantCmd.dll"]),
    (["/opt/MaxQuant_v2.6.1.0/bin/MaxQuantCmd.exe"], "mono", "posix", ["mono", "/opt/MaxQuant_v2.6.1.0/bin/MaxQuantCmd.exe"]),
    (["/opt/MaxQuant_v1.6.10.43/bin/MaxQuantCmd.exe"], "dotnet", "posix", ["dotnet", "/opt/MaxQuant_v1.6.10.43/bin/MaxQuantCmd.dll"]),
    (["/opt/MaxQuant_v2.6.1.0/bin/MaxQuantCmd.exe"], "none", "posix", ["/opt/MaxQuant_v2.6.1.0/bin/MaxQuantCmd.exe"]),
    (["/usr/local/bin/maxquant"], "auto", "posix", ["/usr/local/bin/maxquant"]),
    (["C:/MaxQuant_v2.4.12.0/bin/MaxQuantCmd.exe"], "auto", "nt", ["C:/MaxQuant_v2.4.12.0/bin/MaxQuantCmd.exe"]),
    (["C:/MaxQuant_v2.6.1.0/bin/MaxQuantCmd.dll"], "auto", "nt", ["dotnet", "C:/MaxQuant_v2.6.1.0/bin/MaxQuantCmd.dll"]),
])
def test_maxquant_argv_rules(command, runtime, os_name, expected, tmp_path: Path) -> None:
    mqpar = tmp_path / "mqpar.xml"
    assert maxquant_argv(command, mqpar, runtime, os_name=os_name) == [*expected, str(mqpar)]


@pytest.mark.parametrize("template, expected", [
    ("mqpar_1.6.10.43.xml", "mono"), ("mqpar_2.4.12.0.xml", "mono"), ("mqpar_2.7.5.0.xml", "dotnet"),
])
def test_maxquant_argv_version_from_mqpar(template: str, expected: str, tmp_path: Path) -> None:
    argv = maxquant_argv(["/opt/MaxQuant/bin/MaxQuantCmd.exe"], SHARED_MQPAR / template, os_name="posix")
    assert argv[0] == expected
    assert maxquant_version(Path("/opt/MQ/bin/x.exe"), SHARED_MQPAR / template) == tuple(
        int(x) for x in template[6:-4].split("."))


def test_maxquant_argv_errors(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="no MaxQuant command"):
        maxquant_argv([], tmp_path / "m.xml")
    with pytest.raises(ToolError, match="unknown MaxQuant runtime"):
        maxquant_argv(["x.exe"], tmp_path / "m.xml", "wine")


def test_find_txt_dir(tmp_path: Path) -> None:
    assert find_txt_dir(tmp_path) is None
    (tmp_path / "maxquant" / "combined" / "txt").mkdir(parents=True)
    assert find_txt_dir(tmp_path) == tmp_path / "maxquant" / "combined" / "txt"
    (tmp_path / "combined" / "txt").mkdir(parents=True)
    assert find_txt_dir(tmp_path) == tmp_path / "combined" / "txt"


# --------------------------------------------------------------------------------------------
# The MaxQuant stand-in, through the runner


@pytest.fixture
def mq_run(tmp_path: Path, instrument: Path) -> dict:
    """A run's work dir with a staged raw, a fasta and a written mqpar (ProteomicsQC template)."""
    work = tmp_path / "work"
    raw = stage_raw(instrument / "small2.RAW", work / "maxquant")
    fasta = tmp_path / "db.fasta"
    fasta.write_text(">sp|P1|TEST\nPEPTIDEK\n")
    mqpar = work / "mqpar.xml"
    template = SHARED_MQPAR / "mqpar_tmt11_test.xml"
    write_mqpar(template, mqpar, raw=raw, fasta=fasta, label="small2", threads=2, combined_dir=work)
    return {"work": work, "raw": raw, "fasta": fasta, "mqpar": mqpar}


async def run_standin(run: dict, mode: str | None = None, timeout: float = 60, extra: tuple = ()):
    argv = maxquant_argv([sys.executable, str(STANDIN)], run["mqpar"]) + list(extra)
    env = {"QCD_STANDIN_MODE": mode} if mode else None
    return await run_tool(argv, cwd=run["work"], log_dir=run["work"], name="maxquant",
                          timeout=timeout, env=env)


async def test_standin_ok(mq_run: dict) -> None:
    res = await run_standin(mq_run)
    assert res.ok, res.error_excerpt
    txt = find_txt_dir(mq_run["work"])
    assert txt == mq_run["work"] / "combined" / "txt"
    for name in ("proteinGroups.txt", "summary.txt"):
        assert (txt / name).read_bytes() == (STANDIN_TXT / name).read_bytes()
    assert "Finish writing tables" in res.stdout_path.read_text()


@pytest.mark.skipif(os.name == "nt", reason="runs the stand-in through its shebang")
async def test_standin_runs_directly_and_writes_next_to_raw_without_fixed_folder(
        tmp_path: Path, instrument: Path) -> None:
    work = tmp_path / "work"
    raw = stage_raw(instrument / "small2.RAW", work / "maxquant")
    (tmp_path / "db.fasta").write_text(">x\nK\n")
    write_mqpar(SHARED_MQPAR / "mqpar_2.7.5.0.xml", work / "mqpar.xml", raw=raw,
                fasta=tmp_path / "db.fasta", label="small2", threads=1)
    argv = maxquant_argv([str(STANDIN)], work / "mqpar.xml")
    assert argv == [str(STANDIN), str(work / "mqpar.xml")]
    res = await run_tool(argv, cwd=work, log_dir=work, name="maxquant", timeout=60)
    assert res.ok, res.error_excerpt
    assert find_txt_dir(work) == work / "maxquant" / "combined" / "txt"
    assert sorted(p.name for p in instrument.iterdir()) == ["small.RAW", "small2.RAW"]


async def test_standin_dryrun(mq_run: dict) -> None:
    res = await run_standin(mq_run, extra=("--dryrun",))
    assert res.ok
    assert res.stdout_path.read_text().startswith("id\tnumber of threads\tjob name\n1\t2\tConfiguring")
    assert find_txt_dir(mq_run["work"]) is None


async def test_standin_checks_the_mqpar(mq_run: dict) -> None:
    mq_run["fasta"].unlink()
    res = await run_standin(mq_run)
    assert res.exit_code == 1
    assert "Unhandled Exception: System.Exception: Fasta file" in res.error_excerpt
    assert "does not exist" in res.error_excerpt


async def test_standin_fail(mq_run: dict) -> None:
    res = await run_standin(mq_run, "fail")
    assert res.exit_code == 3 and not res.ok
    assert res.error_excerpt.startswith("exit code 3: Unhandled Exception: System.Exception: Andromeda")
    assert find_txt_dir(mq_run["work"]) is None


async def test_standin_hang_times_out(mq_run: dict) -> None:
    res = await run_standin(mq_run, "hang", timeout=1)
    assert res.timed_out and res.error_excerpt == "timed out after 1 s"


async def test_standin_garbage(mq_run: dict) -> None:
    res = await run_standin(mq_run, "garbage")
    assert res.ok  # a zero exit proves nothing: the parsers must reject these tables
    txt = find_txt_dir(mq_run["work"])
    data = (txt / "proteinGroups.txt").read_bytes()
    assert len(data) == 4096 and data != (STANDIN_TXT / "proteinGroups.txt").read_bytes()[:4096]
