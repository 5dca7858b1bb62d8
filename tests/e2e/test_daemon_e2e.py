"""End to end, with real processes: the daemon, its watcher, the real RawTools and the MaxQuant stand-in."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from daemonproc import DATA, STANDIN, Daemon, copy_raw, folder_listing, wait_for

from qcdaemon.tools.rawtools import default_rawtools_command

RAWTOOLS = default_rawtools_command() if shutil.which("mono") else None
needs_rawtools = pytest.mark.skipif(RAWTOOLS is None, reason="mono or the pyRawTools wheel is not installed")
MAXQUANT = {"command": [sys.executable, str(STANDIN)], "runtime": "none", "timeout_seconds": 60}


@pytest.fixture
def instrument(tmp_path: Path) -> Path:
    folder = tmp_path / "instrument"
    folder.mkdir()
    return folder


def _daemon(tmp_path: Path, instrument: Path, *, settle: float = 1.0, rawtools: bool = True, mq: dict | None = None,
            env: dict[str, str] | None = None, timezone: str = "") -> Daemon:
    engine = {"maxquant": mq or MAXQUANT}
    if rawtools and RAWTOOLS:
        engine["rawtools"] = {"command": list(RAWTOOLS), "timeout_seconds": 120}
    watch = [{"path": str(instrument), "pipeline": "lab-qc/exploris", "owner": "op@lab.org",
              "settle_seconds": settle, "poll_interval": 0.5, "timezone": timezone}]
    d = Daemon(tmp_path, engine=engine, watch=watch, env=env)
    d.setup_lab()
    return d


def _slow_write(src: Path, dest: Path, chunks: int, pause: float) -> None:
    """Write ``src`` into ``dest`` the way an instrument does: one open handle, growing."""
    data = src.read_bytes()
    step = len(data) // chunks + 1
    with open(dest, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(pause)


@needs_rawtools
def test_a_growing_raw_file_is_processed_once_after_it_settles(tmp_path: Path, instrument: Path) -> None:
    settle = 1.5
    d = _daemon(tmp_path, instrument, settle=settle, timezone="America/New_York")
    try:
        d.start()
        target = instrument / "HeLa_QC_001.raw"
        writer = threading.Thread(target=_slow_write, args=(DATA / "raw" / "small2.RAW", target, 12, 0.35))
        writer.start()
        while writer.is_alive():  # while it grows, it is never taken
            assert d.runs() == []
            time.sleep(0.3)
        writer.join()
        runs = wait_for(lambda: d.finished(1), 120, "the run to finish")
        # queued within settle_seconds + 2 s of the last write: the daemon's own clock, not the test's polling
        queued_at = dt.datetime.fromisoformat(runs[0]["created_at"]).replace(tzinfo=dt.UTC).timestamp()
        assert 0 < queued_at - target.stat().st_mtime <= settle + 2.0
        assert len(runs) == 1
        run = runs[0]
        stages = {s["stage"]: s for s in run["stages"]}
        assert {k: s["state"] for k, s in stages.items()} == {
            "native": "done", "rawtools": "done", "search": "done", "maxquant": "done"}  # search: the pipeline's FASTA
        assert run["state"] == "done" and run["owner"] == "op@lab.org"

        qc = d.qc_data()
        assert qc["RawFile"] == ["HeLa_QC_001"]
        assert qc["TotalScans"] == [95] and qc["NumMs2Scans"] == [49]  # RawTools' values
        assert qc["MetricsEngine"] == ["rawtools"]
        assert qc["N_protein_groups"] == [19]  # the stand-in's recorded proteinGroups.txt (example-1)
        assert qc["MS/MS"] == [20684]  # and its recorded summary.txt (example-0)
        # small2.RAW was acquired at 21:15:49 on the instrument PC's clock (RawTools' DateAcquired);
        # the watch says that PC runs on New York time (EDT, UTC-4 in April): stored as true UTC
        utc = dt.datetime(2018, 4, 4, 1, 15, 49, tzinfo=dt.UTC).timestamp()
        assert abs(qc["DateAcquired"][0] / 1e9 - utc) < 1.0
        # the run got its QC verdict as its values arrived: one run is too few for limits
        assert qc["Verdict"] == ["not enough data"]
        assert "not enough runs for limits" in qc["Verdict reasons"][0]
        assert folder_listing(instrument) == [("HeLa_QC_001.raw", target.stat().st_size, target.stat().st_mtime_ns)]
        time.sleep(settle + 1)  # a later sweep or event must not make a second run
        assert len(d.runs()) == 1
        assert d.stop() == 0
    finally:
        d.close()


def test_kill_9_during_processing_then_restart_processes_every_file_exactly_once(
    tmp_path: Path, instrument: Path
) -> None:
    for i in range(3):
        copy_raw("small2.RAW", instrument / f"run{i}.mq-slow.raw")
    d = _daemon(tmp_path, instrument, rawtools=False, env={"QCD_STANDIN_SLOW_SECONDS": "4"})
    try:
        d.start()

        def maxquant_running() -> bool:
            return any(s["stage"] == "maxquant" and s["state"] == "running" for r in d.runs() for s in r["stages"])

        wait_for(maxquant_running, 60, "a MaxQuant stage to be running")
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        copy_raw("small2.RAW", instrument / "dropped_while_down.raw")  # arrives while the daemon is down
        d.env["QCD_STANDIN_SLOW_SECONDS"] = "0"
        d.start()
        runs = wait_for(lambda: d.finished(4), 120, "all four files to finish")
        names = sorted(r["name"] for r in runs)
        assert names == ["dropped_while_down.raw", "run0.mq-slow.raw", "run1.mq-slow.raw", "run2.mq-slow.raw"]
        assert all(r["state"] == "done" for r in runs), runs
        attempts = [s["attempts"] for r in runs for s in r["stages"] if s["stage"] == "maxquant"]
        assert sorted(attempts) == [1, 1, 1, 2]  # the interrupted stage was re-run, once
        qc = d.qc_data()
        assert len(qc["RunKey"]) == 4 and qc["N_protein_groups"] == [19] * 4
        assert d.stop() == 0
    finally:
        d.close()


def test_failing_tools_leave_readable_reasons_and_the_daemon_goes_on(tmp_path: Path, instrument: Path) -> None:
    mq = {**MAXQUANT, "timeout_seconds": 3}
    d = _daemon(tmp_path, instrument, mq=mq)
    try:
        d.start()
        files = ["a.mq-fail.raw", "b.mq-hang.raw", "c.mq-garbage.raw", "d.raw"]
        for name in files:
            copy_raw("small2.RAW", instrument / name)
        if RAWTOOLS:
            copy_raw("small.RAW", instrument / "e-rawtools-crash.raw")
            # a TSQ full-scan (MS1-only) run: RawTools exits 1 after writing its metrics
            shutil.copyfile(DATA / "raw-outside" / "msdk_tsq_quantum.raw", instrument / "h-tsq-ms1-only.raw")
        (instrument / "f-not-a-raw.raw").write_bytes(b"this is a text file, not an acquisition\n" * 10)
        (instrument / "g-truncated.raw").write_bytes((DATA / "raw" / "small2.RAW").read_bytes()[:300_000])
        files.append("g-truncated.raw")
        extra = {"e-rawtools-crash.raw", "h-tsq-ms1-only.raw"} if RAWTOOLS else set()
        expected = len(files) + len(extra)
        runs = {r["name"]: r for r in wait_for(lambda: d.finished(expected), 120, "every run to finish")}
        assert set(runs) == set(files) | extra

        def stage(name: str, st: str) -> dict:
            return next(s for s in runs[name]["stages"] if s["stage"] == st)

        fail = stage("a.mq-fail.raw", "maxquant")
        assert fail["state"] == "failed" and fail["exit_code"] == 3 and "Unhandled Exception" in fail["error"]
        hang = stage("b.mq-hang.raw", "maxquant")
        assert hang["state"] == "failed" and "timed out" in hang["error"]
        garbage = stage("c.mq-garbage.raw", "maxquant")
        # (the values are parsed before the protein groups are stored: the first garbage table is named)
        assert garbage["state"] == "failed" and any(t in garbage["error"] for t in ("proteinGroups.txt", "summary.txt"))
        assert runs["d.raw"]["state"] == "done"  # the daemon went on
        truncated = {s["stage"]: s for s in runs["g-truncated.raw"]["stages"]}
        assert truncated["native"]["state"] == "failed" and "truncated" in truncated["native"]["error"]
        assert truncated["maxquant"]["state"] == "skipped"  # MaxQuant does not run on a corrupt file
        assert runs["g-truncated.raw"]["state"] == "failed"  # no stage produced values
        if RAWTOOLS:  # RawTools is still tried (it reads with Thermo's reader); it fails too
            assert truncated["rawtools"]["state"] == "failed"
            assert runs["g-truncated.raw"]["error"].startswith("native: ") and "; rawtools: " in runs["g-truncated.raw"]["error"]
            crash = stage("e-rawtools-crash.raw", "rawtools")
            assert crash["state"] == "failed" and crash["exit_code"] == 1
            assert "KeyNotFoundException" in crash["error"] or "Exception" in crash["error"]
            assert runs["e-rawtools-crash.raw"]["state"] == "done"  # native metrics are there
            assert runs["e-rawtools-crash.raw"]["error"].startswith("rawtools: ")
            tsq = {s["stage"]: s for s in runs["h-tsq-ms1-only.raw"]["stages"]}
            assert tsq["native"]["state"] == "done" and tsq["rawtools"]["state"] == "done"
            assert tsq["rawtools"]["exit_code"] == 1 and "exited 1 after writing" in tsq["rawtools"]["error"]
            assert "row cut after column 32 of 46" in tsq["rawtools"]["error"]
            assert runs["h-tsq-ms1-only.raw"]["state"] == "done"
        else:
            assert truncated["rawtools"]["state"] == "skipped"
        status = d.api("/api/status", method="GET")
        assert status["last_error"] is not None
        assert status["watched_folders"][0]["path"] == str(instrument)
        # the text file was rejected, not processed, and shows in no run
        assert "f-not-a-raw.raw" not in runs
        out = d.cli("runs").stdout
        assert "a.mq-fail.raw" in out and "maxquant failed" in out
        assert d.stop() == 0
    finally:
        d.close()


def test_sigterm_mid_processing_exits_cleanly_and_the_stage_resumes(tmp_path: Path, instrument: Path) -> None:
    copy_raw("small2.RAW", instrument / "long.mq-slow.raw")
    d = _daemon(tmp_path, instrument, rawtools=False, env={"QCD_STANDIN_SLOW_SECONDS": "30"})
    try:
        d.start()
        wait_for(lambda: any(s["state"] == "running" and s["stage"] == "maxquant"
                             for r in d.runs() for s in r["stages"]), 60, "MaxQuant to run")
        assert d.stop(signal.SIGTERM) == 0  # shutdown_timeout is 5 s: the stage is stopped, not awaited
        log = d.log.read_text()
        assert "stage_interrupted" in log and "store_closed" in log
        d.env["QCD_STANDIN_SLOW_SECONDS"] = "0"
        d.start()
        runs = wait_for(lambda: d.finished(1), 60, "the resumed run to finish")
        mqs = [s for s in runs[0]["stages"] if s["stage"] == "maxquant"]
        assert mqs[0]["state"] == "done"
        assert mqs[0]["attempts"] == 1  # a stop by the daemon itself uses up none of the tool's attempts
        assert d.stop() == 0
    finally:
        d.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_tool_grandchildren_left_by_a_killed_daemon_are_stopped_at_the_next_start(
    tmp_path: Path, instrument: Path
) -> None:
    # a "MaxQuant" whose real work happens in a grandchild, like MaxQuant's own worker processes
    mq = {"command": ["sh", "-c", 'sleep 600 & echo $! > "$0.grandchild"; wait'], "runtime": "none",
          "timeout_seconds": 600}
    copy_raw("small2.RAW", instrument / "a.raw")
    d = _daemon(tmp_path, instrument, rawtools=False, mq=mq)
    try:
        d.start()
        marker = wait_for(lambda: next(d.data.glob("work/*/maxquant-stage/*.grandchild"), None), 60,
                          "the grandchild to start")
        grandchild = int(wait_for(lambda: marker.read_text().strip(), 10, "its pid"))
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        time.sleep(0.5)
        assert _alive(grandchild)  # the death signal reaches only the direct child
        d.start()
        wait_for(lambda: not _alive(grandchild), 30, "the stale tool group to be killed")
        assert d.stop() == 0
    finally:
        d.close()


def test_a_first_sweep_of_many_files_shows_progress_on_a_terminal(tmp_path: Path, instrument: Path) -> None:
    import os
    import pty
    import select
    import subprocess

    for i in range(6):
        copy_raw("small2.RAW", instrument / f"old{i}.raw")
    d = _daemon(tmp_path, instrument, settle=0.5, rawtools=False)
    master, slave = pty.openpty()  # the daemon's stderr is a terminal, as for an operator
    proc = subprocess.Popen([sys.executable, "-m", "qcdaemon", "run", "--config", str(d.config)],
                            stdout=slave, stderr=slave, env=d.env)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"6/6 files" not in seen and time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
        assert b"first sweep [" in seen and b"6/6 files" in seen, seen[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        os.close(master)


def test_a_touched_file_is_not_a_new_run_but_new_content_under_an_old_name_is(
    tmp_path: Path, instrument: Path
) -> None:
    import os

    target = copy_raw("small2.RAW", instrument / "qc.raw")
    d = _daemon(tmp_path, instrument, settle=0.5, rawtools=False)
    try:
        d.start()
        wait_for(lambda: d.finished(1), 60, "the first run")
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched: same bytes
        copy_raw("small.RAW", instrument / "other.raw")  # something that surely settles after the touch
        wait_for(lambda: d.finished(2), 60, "the other file")
        time.sleep(1.5)
        assert sorted(r["name"] for r in d.runs()) == ["other.raw", "qc.raw"]
        copy_raw("small.RAW", target)  # an old name with new content: a new run
        runs = wait_for(lambda: d.finished(3), 60, "the new version of qc.raw")
        assert sorted(r["name"] for r in runs) == ["other.raw", "qc.raw", "qc.raw"]
        # /api/status shows a watched folder only to those who may see its pipeline
        assert [w["path"] for w in d.api("/api/status", method="GET")["watched_folders"]] == [str(instrument)]
        d.cli("user", "add", "outsider@else.org", "--password-stdin", input="outsider-pw-1\n")
        d.token = d.cli("token", "create", "outsider@else.org").stdout.strip()
        status = d.api("/api/status", method="GET")
        assert status["watched_folders"] == [] and "data_dir" not in status
        assert d.stop() == 0
    finally:
        d.close()
