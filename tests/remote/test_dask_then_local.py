"""A stage that once ran on Dask and is then run locally, after a configuration change (issue 17):
its record no longer names the Dask job and worker; /api/runs and the run page say "local".

A real scheduler and worker on which the stand-in fails, a real daemon; then the daemon restarted
with MaxQuant local (where the stand-in succeeds) and the failed stage retried through the API.
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from daemonproc import copy_raw, wait_for
from dask_cluster import DaskCluster
from test_dask_stage import _daemon, _mq_stage


def _run_page(base: str, run_key: str) -> str:
    """Signed in as the operator through the sign-in form (its CSRF cookie and field), the run page's HTML."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(base + "/", timeout=10) as r:
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.read().decode())
    assert csrf is not None
    form = urllib.parse.urlencode({"username": "op@lab.org", "password": "operator-pass",
                                   "csrfmiddlewaretoken": csrf[1], "next": "/"}).encode()
    with opener.open(urllib.request.Request(base + "/", data=form, headers={"Referer": base + "/"}), timeout=10):
        pass
    with opener.open(f"{base}/runs/{run_key}", timeout=10) as r:
        return r.read().decode()


@pytest.mark.heavy  # over 30 s: a cluster of its own and a second daemon start
def test_a_local_attempt_after_a_dask_one_names_no_dask_worker(tmp_path: Path) -> None:
    cluster = DaskCluster(tmp_path / "dask", worker_env={"QCD_STANDIN_MODE": "fail"}).start(1)
    try:
        d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": cluster.address, "transfer": True})
        try:
            d.start()
            copy_raw("small2.RAW", instrument / "HeLa_moved.raw")
            [run] = wait_for(lambda: d.finished(1), 120, "the run to finish")
            first = _mq_stage(d)
            [worker] = cluster.workers
            assert first is not None and first["state"] == "failed" and "Andromeda" in first["error"], first
            assert first["worker"] == worker and first["remote_key"]
            assert d.stop() == 0
        finally:
            d.close()
    finally:
        cluster.close()

    text = d.config.read_text()
    local = re.sub(r'^(executor|scheduler|transfer) = .*\n', "", text, flags=re.M)
    assert local != text and "executor" not in local
    d.config.write_text(local)
    try:
        d.start()
        assert d.api("/api/runs/retry", {"run_key": run["run_key"], "stages": ["maxquant"]})
        wait_for(lambda: (s := _mq_stage(d)) and s["state"] == "done", 120, "the local attempt to finish")
        second = _mq_stage(d)
        assert second is not None and second["worker"] is None and second["remote_key"] is None, second
        page = _run_page(d.base, run["run_key"])
        where = dict(re.findall(r'<tr><td>(\w+)</td>.*?<td class="where">([^<]*)</td>', page))
        assert where.get("maxquant") == "local", (where, page[:3000])
        assert "Dask" not in page and worker not in page
        assert d.stop() == 0
    finally:
        d.close()
