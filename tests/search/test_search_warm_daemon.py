"""The warm search worker in the real daemon: reuse across runs, a kill -9 mid-job, stop and kill of the daemon.

A real daemon process (tests/daemonproc.py) with ``keep_warm_seconds = 300`` and two search
attempts watches two folders: one feeds a pipeline with the yeast FASTA, one a pipeline with the
same FASTA plus one protein (another database key).  Checked: the second yeast run reuses the
database the first built (its search log says so, the manifest counts one build); the worker,
killed with SIGKILL while it holds the third run's log open (mid-job), fails that attempt with
the reason and the retry in a fresh worker succeeds; a graceful stop leaves no worker process and
no pid record; after a restart the first run builds again (the manifest counts two) and a SIGKILLed
daemon takes its warm worker with it.  Times are bounds on polling, never asserted.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from daemonproc import Daemon, wait_for

from qcdaemon.search.sagepy_api import unavailable_reason

from .data import YEAST_FASTA, YEAST_RAW

pytestmark = [pytest.mark.skipif(unavailable_reason() is not None, reason="sagepy is not installed"),
              pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _worker_pids(d: Daemon) -> list[int]:
    """The live warm workers the daemon's pid records name."""
    records = (d.data / "pids").glob("search-worker-*.pid")
    return [pid for pid in (int(p.read_text().split()[0]) for p in records) if _alive(pid)]


def _holds_open(pid: int, path: Path) -> bool:
    """Does process ``pid`` have ``path`` open (the worker writes the run's search log during its job)?"""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _stage(d: Daemon, name: str) -> dict[str, Any] | None:
    for run in d.runs():
        if run["name"] == name:
            return {s["stage"]: s for s in run["stages"]}["search"] | {"run_key": run["run_key"]}
    return None


def _done(d: Daemon, name: str) -> dict[str, Any] | None:
    stage = _stage(d, name)
    return stage if stage is not None and stage["state"] in ("done", "failed", "cancelled", "skipped") else None


def _search_log(d: Daemon, run_key: str) -> str:
    return (d.data / "work" / run_key / "search-stage" / "search.err").read_text()


def test_warm_worker_in_the_daemon(tmp_path: Path) -> None:
    yeast, changed = tmp_path / "yeast-instrument", tmp_path / "changed-instrument"
    for folder in (yeast, changed):
        folder.mkdir()
    plus_one = tmp_path / "yeast-plus-one.fasta"
    plus_one.write_bytes(gzip.decompress(YEAST_FASTA.read_bytes())
                         + b">sp|P99999|EXTRA_YEAST an extra protein\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ\n")
    watch = [{"path": str(yeast), "pipeline": "lab-qc/yeast", "owner": "op@lab.org", "settle_seconds": 0.5,
              "poll_interval": 0.5},
             {"path": str(changed), "pipeline": "lab-qc/changed", "owner": "op@lab.org", "settle_seconds": 0.5,
              "poll_interval": 0.5}]
    d = Daemon(tmp_path, engine={"search": {"threads": 2, "memory_mb": 4096, "keep_warm_seconds": 300, "attempts": 2}},
               watch=watch)
    try:
        d.cli("user", "add", "op@lab.org", "--password-stdin", input="operator-pass\n")
        d.cli("project", "add", "Lab QC", "--member", "op@lab.org")
        d.cli("pipeline", "add", "--project", "lab-qc", "--name", "Yeast", "--fasta", str(YEAST_FASTA))
        d.cli("pipeline", "add", "--project", "lab-qc", "--name", "Changed", "--fasta", str(plus_one))
        d.start()
        shutil.copyfile(YEAST_RAW, yeast / "yeast_01.raw")
        first = wait_for(lambda: _done(d, "yeast_01.raw"), 300, "the first search")
        shutil.copyfile(YEAST_RAW, yeast / "yeast_02.raw")
        second = wait_for(lambda: _done(d, "yeast_02.raw"), 300, "the second search")
        assert first["state"] == "done" and second["state"] == "done", (first, second)
        assert ": built in" in _search_log(d, first["run_key"])
        assert ": reused (held by the warm search worker)" in _search_log(d, second["run_key"])
        [manifest] = (d.data / "search-db").glob("*/manifest.json")
        assert json.loads(manifest.read_text())["builds"] == 1
        [warm] = _worker_pids(d)

        shutil.copyfile(YEAST_RAW, changed / "yeast_03.raw")
        third = wait_for(lambda: _stage(d, "yeast_03.raw"), 60, "the third run")
        log = d.data / "work" / third["run_key"] / "search-stage" / "search.err"
        wait_for(lambda: _holds_open(warm, log) or _done(d, "yeast_03.raw"), 300, "the third job in the worker",
                 interval=0.05)
        assert _holds_open(warm, log), "the third job ended before the worker could be killed mid-job"
        os.kill(warm, signal.SIGKILL)
        third = wait_for(lambda: _done(d, "yeast_03.raw"), 300, "the retried third search")
        assert third["state"] == "done", third  # attempt 2, in a fresh worker
        events = [json.loads(line) for line in d.log.read_text().splitlines() if line.startswith("{")]
        [retry] = [e for e in events if e.get("event") == "stage_retrying" and e.get("stage") == "search"]
        assert f"the search worker (pid {warm}) died mid-job: killed by SIGKILL" in retry["error"]
        [fresh] = _worker_pids(d)
        assert fresh != warm

        assert d.stop() == 0
        assert not _alive(fresh) and not list((d.data / "pids").glob("search-worker-*.pid"))

        d.start()  # a new daemon: a new worker builds the yeast database again
        shutil.copyfile(YEAST_RAW, yeast / "yeast_04.raw")
        fourth = wait_for(lambda: _done(d, "yeast_04.raw"), 300, "the search after the restart")
        assert fourth["state"] == "done" and ": built in" in _search_log(d, fourth["run_key"])
        builds = {json.loads(m.read_text())["database"]["fasta_name"]: json.loads(m.read_text())["builds"]
                  for m in (d.data / "search-db").glob("*/manifest.json")}
        assert builds == {YEAST_FASTA.name: 2, plus_one.name: 1}
        [again] = _worker_pids(d)
        d.stop(signal.SIGKILL)
        wait_for(lambda: not _alive(again), 30, "the warm worker's death with its SIGKILLed daemon")
    finally:
        d.close()
