"""engine/workers.py in-process: claim, run, record; cancel, retries, a stage raising, a failing store.

The failures are real: the MaxQuant stand-in fails or hangs (its mode is in the file name), and
the store fails because a table it writes is renamed away on its own connection (DuckDB then
raises a CatalogException for every statement that names it, exactly as for a broken database).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from labkit import Lab, json_logging, open_lab, until

from qcdaemon.engine.workers import Engine
from qcdaemon.store import Store
from qcdaemon.tools.rawtools import default_rawtools_command

FINAL = ("done", "failed", "cancelled")


async def finished(lab: Lab, run: dict) -> dict | None:
    row = await lab.store.call(Store.run, run["id"])
    return row if row["state"] in FINAL else None


async def _stage_is(lab: Lab, run: dict, stage: str, state: str) -> bool:
    return (await lab.stage(run, stage))["state"] == state


async def running(lab: Lab, run: dict, stage: str) -> bool:
    return await _stage_is(lab, run, stage, "running")


def tool_pid(lab: Lab, name: str) -> int | None:
    """The pid of the running tool ``name`` from its record in the pid folder (see tools/orphans)."""
    records = sorted(lab.cfg.files.pids.glob(f"{name}-*.pid"))
    return int(records[0].read_text().split()[0]) if records else None


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X")
    except OSError:
        return True


async def test_a_run_is_processed_and_every_stage_and_tool_log_line_names_it(tmp_path: Path) -> None:
    async with open_lab(tmp_path) as lab:
        with json_logging(lab.cfg) as json_log:
            async with Engine(lab.svc, lab.cfg):
                run = await lab.add_run("HeLa_001.raw")
                done = await until(lambda: finished(lab, run), 90, "the run to finish")
            stages = await lab.stages(run)
            lines = json_log.lines()
    assert done["state"] == "done"
    assert {k: s["state"] for k, s in stages.items()} == {
        "native": "done", "rawtools": "skipped", "search": "done", "maxquant": "done"}  # search: the lab's FASTA
    tool_lines = [e for e in lines if e["logger"] == "qcdaemon.tools.runner"]
    stage_lines = [e for e in lines if e["event"].startswith("stage_")]
    assert {e["event"] for e in tool_lines} >= {"tool_started", "tool_exited"}
    events = [(e["event"], e["stage"]) for e in stage_lines]
    assert events[:2] == [("stage_started", "native"), ("stage_done", "native")]
    # search and MaxQuant run side by side once native is done
    assert sorted(events[2:]) == sorted([("stage_started", "search"), ("stage_done", "search"),
                                         ("stage_started", "maxquant"), ("stage_done", "maxquant")])
    for e in tool_lines + stage_lines:
        assert e.get("run_key") == run["run_key"], e
        assert e.get("stage") in ("native", "rawtools", "search", "maxquant"), e
    # each tool's lines name the stage that ran it
    assert {e["stage"] for e in tool_lines if e["tool"] == "native"} == {"native"}
    assert {e["stage"] for e in tool_lines if e["tool"] == "maxquant"} == {"maxquant"}
    # the search runs in the warm search worker (keep_warm_seconds > 0), whose lines name the stage too
    assert {e["stage"] for e in lines if e["event"] in ("search_worker_started", "search_database")} == {"search"}
    # and the binding ends with the job: the engine's own lines after it carry no run
    assert all("run_key" not in e for e in lines if e["event"] in ("engine_started", "engine_stopped"))


async def test_cancel_stops_a_running_stage_and_its_tool(tmp_path: Path) -> None:
    async with open_lab(tmp_path) as lab:
        async with Engine(lab.svc, lab.cfg):
            run = await lab.add_run("long.mq-hang.raw")
            await until(lambda: running(lab, run, "maxquant"), 60, "MaxQuant to run")
            pid = await until(lambda: asyncio.to_thread(tool_pid, lab, "maxquant"), 10, "the tool's pid record")
            assert not gone(pid)
            await lab.svc.cancel(None, run["run_key"])
            await until(lambda: _stage_is(lab, run, "maxquant", "cancelled"), 20, "the cancel to take effect")
        mq = await lab.stage(run, "maxquant")
        final = await lab.store.call(Store.run, run["id"])
    assert final["state"] == "done"  # the native stage's values stand: a run with values is done
    assert mq["state"] == "cancelled" and mq["error"] == "cancelled by user" and mq["attempts"] == 1
    assert gone(pid)


async def test_a_failing_tool_is_retried_up_to_its_attempts(tmp_path: Path) -> None:
    async with open_lab(tmp_path, maxquant={"attempts": 3}) as lab:
        with json_logging(lab.cfg) as json_log:
            async with Engine(lab.svc, lab.cfg):
                run = await lab.add_run("bad.mq-fail.raw")
                await until(lambda: finished(lab, run), 120, "the run to fail for good")
            retries = json_log.events("stage_retrying")
        mq = await lab.stage(run, "maxquant")
        native = await lab.stage(run, "native")
    assert mq["state"] == "failed" and mq["attempts"] == 3 and mq["exit_code"] == 3
    assert "Unhandled Exception" in mq["error"]
    assert [(e["attempt"], e["of"], e["stage"], e["run_key"]) for e in retries] == [
        (1, 3, "maxquant", run["run_key"]), (2, 3, "maxquant", run["run_key"])]
    assert native["attempts"] == 1  # a stage that succeeds is run once


async def test_a_stage_that_raises_fails_its_run_and_the_worker_goes_on(tmp_path: Path) -> None:
    async with open_lab(tmp_path) as lab:
        with json_logging(lab.cfg) as json_log:
            await lab.sql("ALTER TABLE chromatograms RENAME TO chromatograms_away")  # the native stage's last write
            async with Engine(lab.svc, lab.cfg):
                broken = await lab.add_run("broken.raw")
                await until(lambda: finished(lab, broken), 60, "the broken run to end")
                await lab.sql("ALTER TABLE chromatograms_away RENAME TO chromatograms")
                fine = await lab.add_run("fine.raw")
                await until(lambda: finished(lab, fine), 90, "the next run to end")
            crashed = json_log.events("stage_crashed")
        native = await lab.stage(broken, "native")
        mq = await lab.stage(broken, "maxquant")
        fine_row = await lab.store.call(Store.run, fine["id"])
    assert native["state"] == "failed" and native["error"].startswith("internal error: CatalogException")
    assert mq["state"] == "skipped"  # no heavy stage after a failed first one
    assert fine_row["state"] == "done"
    assert len(crashed) == 1 and crashed[0]["run_key"] == broken["run_key"] and crashed[0]["stage"] == "native"
    assert "CatalogException" in str(crashed[0].get("exception"))


async def test_a_worker_survives_a_failing_store_and_requeues_the_job_it_held(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QCD_STANDIN_SLOW_SECONDS", "1.5")  # the stand-in's environment, inherited by the tool
    # the search stage off: it would run beside MaxQuant, and the store error must meet MaxQuant's outcome
    async with open_lab(tmp_path, engine={"search": {"enabled": False}}) as lab:
        with json_logging(lab.cfg) as json_log:
            async with Engine(lab.svc, lab.cfg, error_pause=0.2):
                run = await lab.add_run("slow.mq-slow.raw")
                await until(lambda: running(lab, run, "maxquant"), 60, "MaxQuant to run")
                # the store loses the queue while the tool runs: recording the outcome fails, and so
                # does putting the job back, until the table is there again
                await lab.sql("ALTER TABLE stages RENAME TO stages_away")
                await until(lambda: asyncio.to_thread(lambda: len(json_log.events("engine_worker_error")) >= 2), 30,
                            "the worker to meet the store error twice")
                await lab.sql("ALTER TABLE stages_away RENAME TO stages")
                final = await until(lambda: finished(lab, run), 60, "the re-queued stage to run again")
                later = await lab.add_run("later.raw")  # every worker still takes work
                await until(lambda: finished(lab, later), 90, "a run added after the failure")
            errors = json_log.events("engine_worker_error")
            requeued = json_log.events("stage_requeued_after_error")
        mq = await lab.stage(run, "maxquant")
        later_row = await lab.store.call(Store.run, later["id"])
    assert final["state"] == "done"
    assert mq["state"] == "done" and mq["attempts"] == 2  # the first outcome was lost with the store: re-run
    assert any(e["stage"] == "maxquant" and e.get("run_key") == run["run_key"] for e in errors)
    assert [(e["run_key"], e["stage"]) for e in requeued] == [(run["run_key"], "maxquant")]
    assert later_row["state"] == "done"


RAWTOOLS = default_rawtools_command() if shutil.which("mono") else None


@pytest.mark.skipif(RAWTOOLS is None, reason="mono or the pyRawTools wheel is not installed")
async def test_the_real_rawtools_stage_records_its_metrics(tmp_path: Path) -> None:
    assert RAWTOOLS is not None
    async with open_lab(tmp_path, engine={"rawtools": {"command": list(RAWTOOLS), "timeout_seconds": 180}}) as lab:
        async with Engine(lab.svc, lab.cfg):
            run = await lab.add_run("HeLa_002.raw")
            done = await until(lambda: finished(lab, run), 240, "the run with RawTools to finish")
        values = {(source, name): value for _rid, source, name, value in
                  await lab.store.call(Store.qc_values, [run["id"]])}
        row = await lab.store.call(Store.run, run["id"])
    assert done["state"] == "done"
    # RawTools' own numbers for small2.RAW (tests/data/raw/rawtools-small2 holds its recorded output)
    assert values[("rawtools", "TotalScans")] == 95 and values[("rawtools", "NumMs2Scans")] == 49
    assert row["metrics_engine"] == "rawtools"
