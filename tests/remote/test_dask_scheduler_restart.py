"""The Dask scheduler SIGKILLed while a MaxQuant job runs on a worker (issue 17), with
``on_scheduler_down = "wait"``: a real scheduler and worker, a real daemon.

The stage waits (still running, the run neither failed nor lost); the scheduler comes back on the
same address (a new process: it knows no job of the old one), with a new worker (a worker without
a nanny ends with its scheduler), and the daemon submits the job again: one result, one attempt
spent. (``fail`` mode with the scheduler stopped mid-job: ``test_dask_stage.py``.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from daemonproc import copy_raw, free_port, wait_for
from dask_cluster import DaskCluster
from test_dask_stage import _daemon, _mq_stage, _one_result, _running_on_a_worker, _tool_processes

LONG = 120.0  # seconds the first job's stand-in would run: far longer than the test waits for it to be stopped


@pytest.mark.heavy  # over 30 s: a cluster started twice, a slow job, a daemon
def test_a_scheduler_killed_mid_job_in_wait_mode_waits_and_the_job_runs_again_once(tmp_path: Path) -> None:
    port = free_port()
    first = DaskCluster(tmp_path / "dask-1", port=port, worker_env={"QCD_STANDIN_SLOW_SECONDS": str(LONG)}).start(1)
    second = DaskCluster(tmp_path / "dask-2", port=port, worker_env={"QCD_STANDIN_SLOW_SECONDS": "0"})
    d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": first.address, "transfer": True,
                                       "on_scheduler_down": "wait"})
    try:
        d.start()
        copy_raw("small2.RAW", instrument / "HeLa_wait.mq-slow.raw")
        before = wait_for(lambda: _running_on_a_worker(d), 90, "the job to run on a worker")
        wait_for(lambda: _tool_processes("qcdaemon-job-"), 30, "the stand-in to run on the worker")
        first.stop_scheduler()
        wait_for(lambda: "went away" in d.log.read_text() and "dask_scheduler_waiting" in d.log.read_text(), 60,
                 "the stage to wait for the scheduler that went away")
        # the worker, without its scheduler, shut down and stopped the tool (no leftover MaxQuant to
        # race a job submitted again; with a path map both would write into the same work folder)
        wait_for(lambda: not _tool_processes("qcdaemon-job-"), 30, "the first worker to stop its tool")
        wait_for(lambda: d.log.read_text().count("dask_scheduler_waiting") >= 2, 30, "a second wait")
        [run] = d.runs()
        stage = _mq_stage(d)
        assert stage is not None and stage["state"] == "running", stage  # waiting, not failed
        assert run["state"] not in ("failed", "cancelled"), run
        assert stage["attempts"] == 1
        first.close()  # its worker, if it is still there

        second.start(1)  # the same address: the stage goes on, on the new cluster
        wait_for(lambda: d.finished(1), 120, "the run to finish")
        stage = _mq_stage(d)
        assert stage is not None and stage["state"] == "done", stage
        assert stage["attempts"] == 1  # waiting for the scheduler costs no attempt
        assert stage["worker"] in second.workers  # the job ran again, on the new cluster's worker
        assert stage["remote_key"] != before["remote_key"]  # a new job: the new scheduler knew no old one
        log = d.log.read_text()
        assert len(re.findall(r"remote_job_submitted", log)) == 2, log[-3000:]
        _one_result(d)  # one run, one set of MaxQuant values
        assert d.stop() == 0
    finally:
        d.close()
        first.close()
        second.close()
