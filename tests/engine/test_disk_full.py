"""A full disk (issue 12), on a real small file system (tmpfs with ``size=``; needs root, as CI runs).

- A stage whose outcome cannot be recorded (the database cannot write its log) is not left
  ``running`` for ever: once space returns, the engine puts it back in the queue by itself, with
  no restart, and the run finishes.
- A stage does not start while free space is below ``[engine] min_free_mb``; it waits in the queue.
- An upload that fills the disk is a 507, and leaves no partial file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_DATA, make_config
from liveserver import free_port, live_server, raw_request

from qcdaemon.core import security
from qcdaemon.engine.workers import Engine
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import AsyncStore, Store

RAW = TEST_DATA / "raw" / "Angiotensin_325-HCD.raw"
FS_MB = 48


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of FS_MB MiB mounted for the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_MB}m", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


class Filler:
    """Keeps the file system full (whatever others free) until stopped; then frees the space."""

    def __init__(self, fs: Path) -> None:
        self.path = fs / "filler"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while not self.stop.is_set():
                try:
                    os.write(fd, b"\0" * 4096)
                except OSError:
                    try:
                        os.write(fd, b"\0")
                    except OSError:
                        time.sleep(0.001)
        finally:
            os.close(fd)

    def free(self) -> None:
        self.stop.set()
        self.thread.join()
        self.path.unlink()


def fill(fs: Path) -> Path:
    """Fill the file system to the last byte; returns the filler file (delete it to free the space)."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


async def lab(fs: Path, **engine: Any) -> tuple[QcService, AsyncStore, dict[str, Any]]:
    cfg = make_config(fs / "data", engine={"rawtools": {"command": []}, "maxquant": {"command": []}, **engine})
    store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)
    svc = QcService(store, cfg, security.load_or_create_key(cfg.data_dir / "secret.key"))
    await svc.add_user("op@lab.org", "operator-pass")
    await svc.add_project("Lab QC", "", members=["op@lab.org"])
    pipeline = await svc.add_pipeline("lab-qc", "Exploris")
    return svc, store, pipeline


async def new_run(svc: QcService, pipeline: dict[str, Any], name: str = "a.raw") -> dict[str, Any]:
    dest = Path(pipeline["path"]) / "inputs" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RAW, dest)
    return await svc.new_run(pipeline, name, source="upload", owner_id=None, stored_path=str(dest),
                             size=dest.stat().st_size, sha256="0" * 64)


async def stage_row(store: AsyncStore, run_id: int, stage: str = "native") -> dict[str, Any]:
    return next(s for s in await store.call(Store.stages, run_id) if s["stage"] == stage)


async def until(cond: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if value := await cond():
                return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s: {what}")


@pytest.fixture
async def engine_lab(small_fs: Path) -> AsyncIterator[tuple[Path, QcService, AsyncStore, dict[str, Any], Engine]]:
    svc, store, pipeline = await lab(small_fs, min_free_mb=0)
    engine = Engine(svc, svc.cfg)
    try:
        yield small_fs, svc, store, pipeline, engine
    finally:
        await engine.stop(5)
        with contextlib.suppress(Exception):
            (small_fs / "filler").unlink(missing_ok=True)
            await asyncio.to_thread(store.close)


async def test_a_stage_whose_outcome_cannot_be_recorded_runs_again_when_space_returns(engine_lab):
    fs, svc, store, pipeline, engine = engine_lab
    run = await new_run(svc, pipeline)
    await engine.start()
    # the disk fills up while the native stage runs: its outcome cannot be written
    await until(lambda: _is(store, run["id"], "running"), 30, "the native stage to start")
    filler = Filler(fs)
    await asyncio.sleep(0.5)
    assert shutil.disk_usage(fs).free < (1 << 16)

    async def ended() -> bool:
        return engine.busy() == 0
    await until(ended, 60, "the stage to end in the engine")
    t_stuck = time.monotonic()
    await asyncio.sleep(2 * 5.0)  # the disk is still full
    row = await stage_row(store, run["id"])
    # either its outcome could not be recorded at all (still "running" in the store), or it waits
    # in the queue saying why; never failed or done on a full disk
    print(f"\non a full disk: {row['state']} ({row['error']}), {engine.busy()} running in the engine")
    assert row["state"] in ("running", "queued"), row
    if row["state"] == "queued":
        assert "disk is full" in (row["error"] or "")

    filler.free()  # space returns; no restart
    t_free = time.monotonic()
    done = await until(lambda: _is(store, run["id"], "done"), 90, "the run to finish once space returned")
    assert done
    row = await stage_row(store, run["id"])
    r = await store.call(Store.run, run["id"])
    print(f"\ndisk full: stuck after {t_stuck - t_free:+.1f} s, done {time.monotonic() - t_free:.1f} s after space "
          f"returned; attempts {row['attempts']}, run {r['state']}")
    assert r["state"] == "done" and row["error"] is None
    status = await store.call(Store.queue_depth)
    assert status == {"queued": 0, "running": 0}


async def _is(store: AsyncStore, run_id: int, state: str) -> bool:
    return (await stage_row(store, run_id))["state"] == state


async def test_retry_and_cancel_release_a_stuck_stage(engine_lab):
    fs, svc, store, pipeline, engine = engine_lab
    run = await new_run(svc, pipeline)
    # a stage the store says is running and no worker runs (as a failed write leaves it)
    await store.call(Store.execute, "UPDATE stages SET state = 'running', started_at = now() WHERE run_id = ?",
                     [run["id"]])
    svc.engine = engine  # the engine's workers are not started: nothing runs the stage
    user = None  # the administrator's CLI
    out = await svc.cancel(user, run["run_key"])
    assert out["cancelled"] and (await stage_row(store, run["id"]))["state"] == "cancelled"
    await store.call(Store.execute, "UPDATE stages SET state = 'running', started_at = now() WHERE run_id = ?",
                     [run["id"]])
    out = await svc.retry(user, run["run_key"])
    assert (await stage_row(store, run["id"]))["state"] == "queued"


async def test_the_engine_releases_a_stage_nobody_runs_by_itself(engine_lab):
    """What a failed write leaves (``running`` in the store, no worker): found and re-run, no restart."""
    _fs, svc, store, pipeline, engine = engine_lab
    await engine.start()
    svc.engine = None  # create the run without waking the workers, then make it look stuck
    run = await new_run(svc, pipeline)
    await store.call(Store.execute, "UPDATE stages SET state = 'running', attempts = 1,"
                     " started_at = now() - INTERVAL 1 MINUTE WHERE run_id = ? AND stage = 'native'", [run["id"]])
    svc.engine = engine
    t0 = time.monotonic()
    await until(lambda: _is(store, run["id"], "done"), 60, "the stuck stage to be re-run and done")
    print(f"\nstuck stage released and done in {time.monotonic() - t0:.1f} s")
    assert (await store.call(Store.run, run["id"]))["state"] == "done"


async def test_no_stage_starts_on_a_nearly_full_disk(small_fs):
    svc, store, pipeline = await lab(small_fs, min_free_mb=FS_MB * 4)  # more than the file system has
    engine = Engine(svc, svc.cfg)
    try:
        run = await new_run(svc, pipeline)
        await engine.start()
        await asyncio.sleep(3)
        row = await stage_row(store, run["id"])
        assert row["state"] == "queued" and row["attempts"] == 0 and row["error"] is None
    finally:
        await engine.stop(5)
        await asyncio.to_thread(store.close)


async def test_an_upload_that_fills_the_disk_is_507(small_fs):
    svc, store, pipeline = await lab(small_fs, min_free_mb=0)
    cfg = make_config(small_fs / "data", server={"port": free_port()}, engine={"min_free_mb": 0})
    svc.cfg = cfg
    token, _ = await svc.token_create(await store.call(Store.user_by_email, "op@lab.org"))
    world = type("W", (), {"svc": svc, "cfg": cfg})()
    port = cfg.server.port
    big = RAW.read_bytes() * (FS_MB * 3 * (1 << 20) // RAW.stat().st_size // 2)  # 1.5 times the file system
    b = b"qcdB"
    body = (b"--" + b + b'\r\nContent-Disposition: form-data; name="pid"\r\n\r\n' + pipeline["uuid"].encode()
            + b"\r\n--" + b + b'\r\nContent-Disposition: form-data; name="orig_file"; filename="big.raw"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + big + b"\r\n--" + b + b"--\r\n")
    head = (f"POST /api/upload/raw HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=qcdB\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    try:
        async with live_server(world):
            ans = await raw_request(port, head + body, timeout=60)
        assert ans is not None and ans.status == 507 and ans.is_json and "disk" in ans.json["detail"], ans
        assert not list((cfg.data_dir / "incoming").glob("*.part"))
        assert not list((Path(pipeline["path"]) / "inputs").glob("*")) if (
            Path(pipeline["path"]) / "inputs").exists() else True
        # with the reserve set, the upload is refused before a byte is written
        svc.cfg = make_config(small_fs / "data", server={"port": port}, engine={"min_free_mb": FS_MB * 2})
        world.cfg = svc.cfg
        async with live_server(world):
            ans = await raw_request(port, head + body[:200_000], timeout=30)
        assert ans is not None and ans.status == 507, ans
    finally:
        await asyncio.to_thread(store.close)
