"""MaxQuant (the stand-in) on a real Dask cluster: a real scheduler, two real workers, a real daemon.

Exactly once across a lost worker and a killed daemon; a stopped scheduler fails the stage
clearly or makes it wait, as configured; never a lost run.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonproc import DATA, STANDIN, Daemon, copy_raw, free_port, wait_for
from dask_cluster import DaskCluster, make_tls

SLOW = 8.0  # seconds the stand-in takes for a file named *.mq-slow.raw (set in the workers' environment)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    c = DaskCluster(tmp_path_factory.mktemp("dask"), worker_env={"QCD_STANDIN_SLOW_SECONDS": str(SLOW)}).start(2)
    try:
        yield c
    finally:
        c.close()


def _daemon(tmp_path: Path, executor: dict[str, Any], *, attempts: int = 1) -> tuple[Daemon, Path]:
    instrument = tmp_path / "instrument"
    instrument.mkdir()
    watch = [{"path": str(instrument), "pipeline": "lab-qc/exploris", "owner": "op@lab.org",
              "settle_seconds": 0.5, "poll_interval": 0.5}]
    d = Daemon(tmp_path, engine={"search": {"enabled": False}}, watch=watch)
    mq = {"command": [sys.executable, str(STANDIN)], "runtime": "none", "timeout_seconds": 120,
          "attempts": attempts, "connect_timeout_seconds": 3, **executor}
    lines = ["[engine.maxquant]"]
    for k, v in mq.items():
        if isinstance(v, dict):
            lines.append(f"{k} = {{{', '.join(f'{json.dumps(a)} = {json.dumps(b)}' for a, b in v.items())}}}")
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    d.config.write_text(d.config.read_text() + "\n".join(lines) + "\n")
    d.setup_lab()
    return d, instrument


def _mq_stage(d: Daemon) -> dict[str, Any] | None:
    for r in d.runs():
        for s in r["stages"]:
            if s["stage"] == "maxquant":
                return s
    return None


def _one_result(d: Daemon) -> dict[str, list[Any]]:
    qc = d.qc_data()
    assert len(qc["RunKey"]) == 1
    assert qc["N_protein_groups"] == [19]  # the stand-in's recorded proteinGroups.txt (example-1)
    return qc


def test_maxquant_runs_on_a_worker_through_a_path_map(tmp_path: Path, cluster: DaskCluster) -> None:
    # the workers see the daemon's data folder under another name (here a symlink: one machine)
    view = tmp_path / "cluster-view"
    (tmp_path / "data").mkdir()
    view.symlink_to(tmp_path / "data")
    fasta_view = tmp_path / "fasta-view"
    fasta_view.symlink_to(DATA / "maxquant")
    executor = {"executor": "dask", "scheduler": cluster.address,
                "path_map": {str(tmp_path / "data"): str(view), str(DATA / "maxquant"): str(fasta_view)}}
    d, instrument = _daemon(tmp_path, executor)
    try:
        d.start()
        copy_raw("small2.RAW", instrument / "HeLa_001.raw")
        runs = wait_for(lambda: d.finished(1), 120, "the run to finish")
        stage = _mq_stage(d)
        assert stage is not None and stage["state"] == "done", runs
        assert stage["worker"] in cluster.workers  # where it ran, in the stage row of /api/runs
        assert stage["remote_key"].startswith("qcdaemon-maxquant-rf")
        _one_result(d)
        mqpar = next(d.data.glob("work/*/maxquant-stage/mqpar.xml")).read_text()
        assert str(view) in mqpar and str(fasta_view) in mqpar  # MaxQuant was given the workers' paths
        assert f"<string>{tmp_path / 'data'}" not in mqpar
        # the share goes away on the workers' side: a clear stage failure, the run and its values kept
        view.unlink()
        copy_raw("small2.RAW", instrument / "HeLa_001b.raw")
        runs = wait_for(lambda: d.finished(2), 120, "the second run to finish")
        second = next(s for r in runs if r["name"] == "HeLa_001b.raw" for s in r["stages"] if s["stage"] == "maxquant")
        assert second["state"] == "failed" and "is not there on the worker (is the share mounted?)" in second["error"]
        assert second["worker"] in second["error"]  # where it failed
        assert len(d.qc_data()["RunKey"]) == 2
        assert d.stop() == 0
    finally:
        d.close()


def test_maxquant_runs_on_a_worker_with_the_raw_file_sent_and_the_tables_sent_back(
        tmp_path: Path, cluster: DaskCluster) -> None:
    d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": cluster.address, "transfer": True})
    try:
        d.start()
        copy_raw("small2.RAW", instrument / "HeLa_002.raw")
        wait_for(lambda: d.finished(1), 120, "the run to finish")
        stage = _mq_stage(d)
        assert stage is not None and stage["state"] == "done", stage
        assert stage["worker"] in cluster.workers
        _one_result(d)
        base = next(d.data.glob("work/*/maxquant-stage"))
        assert "/qcdaemon-transfer-" in (base / "mqpar.xml").read_text()  # not a path of this machine
        for name in ("proteinGroups.txt", "summary.txt"):  # the tables came back intact
            got = hashlib.sha256((base / "combined" / "txt" / name).read_bytes()).hexdigest()
            assert got == hashlib.sha256((DATA / "standin_txt" / name).read_bytes()).hexdigest()
        assert "Configuring" in (base / "logs" / "maxquant.out").read_text()  # the worker's log came back
        assert d.stop() == 0
    finally:
        d.close()


def _running_on_a_worker(d: Daemon) -> dict[str, Any] | None:
    s = _mq_stage(d)
    return s if s is not None and s["state"] == "running" and s.get("worker") else None


@pytest.mark.heavy  # over 30 s: a slow job, a second daemon start or a late cluster
def test_a_worker_lost_mid_job_means_one_retry_and_one_result(tmp_path: Path, cluster: DaskCluster) -> None:
    d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": cluster.address, "transfer": True},
                            attempts=2)
    try:
        d.start()
        copy_raw("small2.RAW", instrument / "HeLa_003.mq-slow.raw")
        stage = wait_for(lambda: _running_on_a_worker(d), 90, "the MaxQuant job to run on a worker")
        lost = stage["worker"]
        cluster.kill_worker(lost)
        wait_for(lambda: d.finished(1), 120, "the run to finish")
        stage = _mq_stage(d)
        assert stage is not None and stage["state"] == "done", stage
        assert stage["attempts"] == 2  # the lost worker cost one attempt, and the retry made it
        assert stage["worker"] != lost and stage["worker"] in cluster.workers
        _one_result(d)
        assert "remote_job_failed" in d.log.read_text()
        assert d.stop() == 0
    finally:
        d.close()
        while len(cluster.workers) < 2:
            cluster.add_worker()
        wait_for(lambda: len(cluster.connected()) >= 2, 60, "a replacement worker")


@pytest.mark.heavy  # over 30 s: a slow job, a second daemon start or a late cluster
def test_a_daemon_killed_mid_job_reattaches_to_the_running_job_and_stores_one_result(
        tmp_path: Path, cluster: DaskCluster) -> None:
    d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": cluster.address, "transfer": True})
    try:
        d.start()
        copy_raw("small2.RAW", instrument / "HeLa_004.mq-slow.raw")
        before = wait_for(lambda: _running_on_a_worker(d), 90, "the MaxQuant job to run on a worker")
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        d.start()
        wait_for(lambda: d.finished(1), 120, "the run to finish")
        after = _mq_stage(d)
        assert after is not None and after["state"] == "done", after
        assert after["remote_key"] == before["remote_key"]  # the same job, not a second one
        assert "remote_job_reattached" in d.log.read_text()
        _one_result(d)
        assert d.stop() == 0
    finally:
        d.close()


def test_a_stopped_scheduler_fails_the_stage_clearly_and_keeps_the_run(tmp_path: Path) -> None:
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": nowhere, "transfer": True})
    try:
        d.start()
        copy_raw("small2.RAW", instrument / "HeLa_005.raw")
        runs = wait_for(lambda: d.finished(1), 120, "the run to finish")
        stage = _mq_stage(d)
        assert stage is not None and stage["state"] == "failed"
        assert f"the Dask scheduler at {nowhere} cannot be reached" in stage["error"]
        assert runs[0]["state"] == "done"  # the native metrics are kept; the stage can be retried
        assert len(d.qc_data()["RunKey"]) == 1
        assert d.stop() == 0
    finally:
        d.close()


@pytest.mark.heavy  # over 30 s: a slow job, a second daemon start or a late cluster
def test_a_stopped_scheduler_makes_the_stage_wait_when_so_configured(tmp_path: Path) -> None:
    late = DaskCluster(tmp_path / "dask", worker_env={"QCD_STANDIN_SLOW_SECONDS": "0"})
    d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": late.address, "transfer": True,
                                       "on_scheduler_down": "wait"})
    try:
        d.start()
        copy_raw("small2.RAW", instrument / "HeLa_006.raw")
        wait_for(lambda: "dask_scheduler_waiting" in d.log.read_text(), 60, "the stage to wait for the scheduler")
        stage = _mq_stage(d)
        assert stage is not None and stage["state"] == "running"
        late.start(1)  # the scheduler comes (back): the waiting stage goes on
        wait_for(lambda: d.finished(1), 120, "the run to finish")
        stage = _mq_stage(d)
        assert stage is not None and stage["state"] == "done" and stage["attempts"] == 1, stage
        _one_result(d)
        assert d.stop() == 0
    finally:
        d.close()
        late.close()


def _tool_processes(marker: str) -> list[int]:
    """Live processes whose command line names ``marker`` (the stand-in runs in qcdaemon-job-* folders)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if marker in cmd and "MaxQuantCmd" in cmd and state not in ("Z", "X"):
                out.append(int(entry.name))
    return out


@pytest.mark.heavy  # over 30 s: two jobs that never end by themselves
def test_cancel_and_timeout_stop_the_tool_on_the_worker(tmp_path: Path, cluster: DaskCluster) -> None:
    d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": cluster.address, "transfer": True})
    d.config.write_text(d.config.read_text().replace("timeout_seconds = 120", "timeout_seconds = 15"))
    try:
        d.start()
        copy_raw("small2.RAW", instrument / "cancelled.mq-hang.raw")  # the stand-in sleeps for ever
        wait_for(lambda: _running_on_a_worker(d), 90, "the first job to run on a worker")
        wait_for(lambda: _tool_processes("qcdaemon-job-"), 30, "the stand-in to run on the worker")
        run_key = d.runs()[0]["run_key"]
        assert d.api("/api/runs/cancel", {"run_key": run_key})["stopping"] == ["maxquant"]
        wait_for(lambda: not _tool_processes("qcdaemon-job-"), 30, "the worker to stop the cancelled tool")
        wait_for(lambda: d.finished(1), 60, "the cancelled run to settle")
        assert _mq_stage(d)["state"] == "cancelled"

        copy_raw("small2.RAW", instrument / "timed.mq-hang.raw")
        runs = wait_for(lambda: d.finished(2), 120, "the second run to time out")
        stage = next(s for r in runs if r["name"] == "timed.mq-hang.raw" for s in r["stages"] if s["stage"] == "maxquant")
        assert stage["state"] == "failed" and "timed out after 15 s" in stage["error"], stage
        assert not _tool_processes("qcdaemon-job-")  # the worker stopped it at its timeout
        assert d.stop() == 0
    finally:
        d.close()


@pytest.mark.heavy  # over 30 s: a cluster of its own
def test_maxquant_runs_on_a_cluster_that_speaks_only_tls(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    secure = DaskCluster(tmp_path / "dask", worker_env={"QCD_STANDIN_SLOW_SECONDS": "0"}, tls=tls).start(1)
    try:
        assert secure.address.startswith("tls://")
        keys = {"tls_ca_file": str(tls["ca-file"]), "tls_cert": str(tls["cert"]), "tls_key": str(tls["key"])}
        d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": secure.address, "transfer": True, **keys})
        try:
            d.start()
            copy_raw("small2.RAW", instrument / "HeLa_tls.raw")
            wait_for(lambda: d.finished(1), 120, "the run to finish")
            stage = _mq_stage(d)
            assert stage is not None and stage["state"] == "done" and stage["worker"].startswith("tls://"), stage
            _one_result(d)
            assert d.stop() == 0
        finally:
            d.close()
    finally:
        secure.close()


@pytest.mark.heavy  # over 30 s: a cluster of its own and a slow job
def test_a_scheduler_stopped_mid_job_fails_the_attempt_clearly_and_keeps_the_run(tmp_path: Path) -> None:
    doomed = DaskCluster(tmp_path / "dask", worker_env={"QCD_STANDIN_SLOW_SECONDS": str(SLOW)}).start(1)
    try:
        d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": doomed.address, "transfer": True})
        try:
            d.start()
            copy_raw("small2.RAW", instrument / "HeLa_gone.mq-slow.raw")
            wait_for(lambda: _running_on_a_worker(d), 90, "the job to run on a worker")
            doomed.stop_scheduler()
            runs = wait_for(lambda: d.finished(1), 120, "the run to settle")
            stage = _mq_stage(d)
            assert stage is not None and stage["state"] == "failed", stage
            assert f"the Dask scheduler at {doomed.address} went away" in stage["error"]
            assert runs[0]["state"] == "done" and len(d.qc_data()["RunKey"]) == 1  # the run and its metrics stay
            assert d.stop() == 0
        finally:
            d.close()
    finally:
        doomed.close()
