"""qcdaemon.daemon in-process: start-up in dependency order, teardown of what started when a later
part fails, refusing a busy store or port, and the second stop request forcing the stop.

The daemon runs in the test's event loop on a real data directory, a real port and real tools;
a second daemon, where one is needed, is a real ``python -m qcdaemon run`` process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, subprocess_env, write_config
from labkit import RAW, lab_settings, open_lab, prepare_lab, until

from qcdaemon.config import Config, config_from_dict
from qcdaemon.daemon import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Daemon
from qcdaemon.store import Store

OURS = ("engine-", "watcher-", "sd-watchdog")  # the names of the daemon's own tasks


async def started(cfg: Config) -> tuple[Daemon, asyncio.Task[int]]:
    daemon = Daemon(cfg)
    task = asyncio.create_task(daemon.run())

    async def up() -> bool:
        if task.done():
            raise AssertionError(f"the daemon ended with {task.result()}")
        return daemon.ready.is_set()

    await until(up, 60, "the daemon to start")
    return daemon, task


def our_tasks() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(OURS) and not t.done())


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def store_is_released(db: Path) -> bool:
    """Another process can open the DuckDB file, so no connection of ours holds it."""
    res = subprocess.run([sys.executable, "-c", "import sys, duckdb; duckdb.connect(sys.argv[1]).close()", str(db)],
                         capture_output=True, text=True, timeout=60)
    return res.returncode == 0


def stage_states(cfg: Config) -> dict[str, tuple[str, int]]:
    store = Store(cfg.db_path)
    try:
        return {r["stage"]: (r["state"], r["attempts"]) for r in store.rows("SELECT stage, state, attempts FROM stages")}
    finally:
        store.close()


async def stage_state(daemon: Daemon, stage: str) -> str | None:
    assert daemon.store is not None
    row = await daemon.store.call(Store.row, "SELECT state FROM stages WHERE stage = ?", [stage])
    return row["state"] if row else None


async def test_a_second_stop_request_forces_the_stop(tmp_path: Path) -> None:
    cfg = await prepare_lab(tmp_path, watch=True, engine={"shutdown_timeout": 120})
    shutil.copyfile(RAW, tmp_path / "instrument" / "long.mq-hang.raw")
    daemon, task = await started(cfg)
    await until(lambda: _is(stage_state(daemon, "maxquant"), "running"), 60, "MaxQuant to run")
    daemon.request_stop()  # graceful: the running stage may take up to shutdown_timeout (120 s)
    await asyncio.sleep(1.5)
    assert not task.done() and await stage_state(daemon, "maxquant") == "running"
    t0 = time.monotonic()
    daemon.request_stop()  # the second signal: stop the tool now
    assert await asyncio.wait_for(task, 60) == EXIT_OK
    assert time.monotonic() - t0 < 20
    # stopped by the daemon, not by the tool: back in the queue, no attempt used up
    assert stage_states(cfg)["maxquant"] == ("queued", 0)
    assert our_tasks() == [] and port_is_free(cfg.server.port)
    assert not cfg.files.daemon_info.exists() and not cfg.files.admin_secret.exists()


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_a_second_daemon_on_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    settings = lab_settings(tmp_path)
    cfg = config_from_dict(settings)
    await prepare_lab(tmp_path)
    daemon, task = await started(cfg)
    try:
        other = write_config(tmp_path / "other.toml", {**settings, "server": {"port": settings["server"]["port"] + 1}})
        res = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "qcdaemon", "run", "--config", str(other)],
            capture_output=True, text=True, timeout=120, cwd=REPO, env=subprocess_env())
        assert res.returncode == EXIT_FAILURE
        assert "is another qcdaemon running with the same data directory?" in res.stderr
        assert "Traceback" not in res.stderr
        assert daemon.ready.is_set() and not task.done()  # the first one goes on
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 60) == EXIT_OK


async def test_a_busy_port_is_refused_before_any_work_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = await prepare_lab(tmp_path, watch=True)
    async with open_lab(tmp_path, cfg=cfg) as lab:
        await lab.add_run("waiting.raw")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", cfg.server.port))
        holder.listen()
        code = await asyncio.wait_for(Daemon(cfg).run(), 60)
    assert code == EXIT_FAILURE
    assert f"cannot listen on 127.0.0.1:{cfg.server.port}" in capsys.readouterr().err
    assert our_tasks() == []
    assert await asyncio.to_thread(store_is_released, cfg.db_path)
    assert stage_states(cfg)["native"] == ("queued", 0)  # no engine ran: the run's first stage was not taken


async def test_a_late_start_up_failure_tears_down_everything_that_started(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = await prepare_lab(tmp_path, watch=True)
    async with open_lab(tmp_path, cfg=cfg) as lab:
        await lab.add_run("queued.mq-hang.raw")
    cfg.files.daemon_info.mkdir()  # daemon.json cannot be written: start-up fails after the engine started
    code = await asyncio.wait_for(Daemon(cfg).run(), 60)
    assert code == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "stopped by an error: IsADirectoryError" in err and "Traceback" not in err
    assert our_tasks() == []  # no worker loops on a closed store
    assert port_is_free(cfg.server.port)
    assert await asyncio.to_thread(store_is_released, cfg.db_path)
    assert not cfg.files.admin_secret.exists()
    assert list(cfg.files.pids.glob("*.pid")) == []  # no tool left running
    states = stage_states(cfg)
    assert states["native"][0] in ("queued", "done") and states["maxquant"][0] == "queued"  # nothing left "running"


async def test_a_configuration_error_found_at_start_up_is_exit_code_2(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg = await prepare_lab(tmp_path)
    settings = lab_settings(tmp_path)
    settings["watch"] = [{"path": str(tmp_path / "instrument"), "pipeline": "lab-qc/no-such-pipeline",
                          "owner": "op@lab.org"}]
    settings["paths"] = {"data_dir": str(cfg.data_dir), "log_dir": str(cfg.log_dir)}
    code = await asyncio.wait_for(Daemon(config_from_dict(settings)).run(), 60)
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "configuration error: watch[0].pipeline: no pipeline 'lab-qc/no-such-pipeline'" in err
    assert await asyncio.to_thread(store_is_released, cfg.db_path)


async def test_systemd_hears_ready_watchdog_pings_and_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = await prepare_lab(tmp_path)
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        systemd.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))  # what systemd gives a Type=notify service
        monkeypatch.setenv("WATCHDOG_USEC", "400000")  # WatchdogSec=0.4: a ping at least every 0.2 s
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        daemon, task = await started(cfg)
        await asyncio.sleep(1.0)
        daemon.request_stop()
        assert await asyncio.wait_for(task, 60) == EXIT_OK
        heard = []
        while True:
            try:
                heard.append(systemd.recv(4096).decode())
            except BlockingIOError:
                break
    assert heard[0] == "READY=1\nSTATUS=serving" and heard[-1] == "STOPPING=1"
    assert heard[1:-1] and set(heard[1:-1]) == {"WATCHDOG=1"}
    assert len(heard[1:-1]) >= 3  # every 0.2 s for about a second
    assert our_tasks() == []  # the pinger ended with the daemon
