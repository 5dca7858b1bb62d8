"""The run page says where each stage ran (issue 17): a real Dask scheduler and worker, a real
daemon whose MaxQuant stage (the stand-in) runs on the worker, and the page in a real Chromium
(Debian's, driven by Playwright); the page's HTML passes the W3C's Nu checker as the dashboard's do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import html5lib
import pytest
from daemonproc import copy_raw, wait_for
from dask_cluster import DaskCluster
from e2e.test_dashboard import ARGS, CHROMIUM, Pages, nu_validate
from playwright.sync_api import sync_playwright
from test_dask_stage import _daemon, _mq_stage


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is needed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_the_run_page_shows_the_worker_a_remote_stage_ran_on_and_local_for_the_others(
        tmp_path: Path, browser: Any) -> None:
    cluster = DaskCluster(tmp_path / "dask", worker_env={"QCD_STANDIN_SLOW_SECONDS": "0"}).start(1)
    try:
        d, instrument = _daemon(tmp_path, {"executor": "dask", "scheduler": cluster.address, "transfer": True})
        try:
            d.start()
            copy_raw("small2.RAW", instrument / "HeLa_where.raw")
            [run] = wait_for(lambda: d.finished(1), 120, "the run to finish")
            mq = _mq_stage(d)
            assert mq is not None and mq["state"] == "done", mq
            [worker] = cluster.workers  # the address the test gave its one worker
            assert mq["worker"] == worker and mq["remote_key"]
            native = next(s for s in run["stages"] if s["stage"] == "native")
            assert native["state"] == "done" and native["worker"] is None and native["remote_key"] is None
            _check_page(browser, d.base, run["run_key"], worker, mq["remote_key"], tmp_path)
            assert d.stop() == 0
        finally:
            d.close()
    finally:
        cluster.close()


def _check_page(browser: Any, base: str, key: str, worker: str, job: str, tmp_path: Path) -> None:
    ctx = browser.new_context()
    pg = ctx.new_page()
    rec = Pages(pg)
    pg.goto(base + "/")
    pg.fill("input[name=username]", "op@lab.org")
    pg.fill("input[name=password]", "operator-pass")
    pg.click("button[type=submit]")
    pg.wait_for_selector("#tiles")
    pg.goto(f"{base}/runs/{key}")
    pg.wait_for_selector("#run[data-drawn]")
    remote_text = f"Dask worker {worker}, job {job}"

    def row(stage: str) -> Any:
        return pg.locator("#stages tbody tr").filter(has=pg.locator("td:first-child", has_text=stage))

    assert row("maxquant").locator("td.where").text_content() == remote_text
    assert row("native").locator("td.where").text_content() == "local"
    # next to the stage's log tail: opened, the maxquant logs (the worker's, sent back) under where they ran
    logs = pg.locator('details.logs[data-stage="maxquant"]')
    logs.locator("summary").click()
    pg.wait_for_selector('details.logs[data-stage="maxquant"] pre[data-log="maxquant.out"]')
    assert logs.locator("p.where").text_content() == f"Ran on: {remote_text}"
    assert "Configuring" in (logs.locator('pre[data-log="maxquant.out"]').text_content() or "")
    native = pg.locator('details.logs[data-stage="native"]')
    native.locator("summary").click()
    assert native.locator("p.where").text_content() == "Ran on: local"
    assert rec.errors == [] and rec.failed == [], (rec.errors, rec.failed)
    r = ctx.request.get(f"{base}/runs/{key}", headers={"Accept": "text/html"})
    html5lib.HTMLParser(strict=True).parse(r.text())
    errors = nu_validate({f"/runs/{key}": r.text()}, tmp_path)
    assert errors == [], "\n".join(errors)
    ctx.close()
