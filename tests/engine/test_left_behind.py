"""Nothing left behind (issue 12): start-up reconciliation, empty files, all-skipped runs, symlinks."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_DATA, make_config

from qcdaemon.config import WatchConfig
from qcdaemon.core import security
from qcdaemon.core.paths import pipeline_inputs
from qcdaemon.engine.ingest import Ingest
from qcdaemon.engine.reconcile import prune_work_folders, reconcile
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import AsyncStore, Store
from qcdaemon.store.rows import LedgerKey
from qcdaemon.watcher.settle import FileEvent

RAW = TEST_DATA / "raw" / "Angiotensin_325-HCD.raw"


@pytest.fixture
async def lab(tmp_path: Path) -> Any:
    instrument = tmp_path / "instrument"
    instrument.mkdir()
    cfg = make_config(tmp_path / "data", engine={"native": False, "rawtools": {"command": []},
                                                 "maxquant": {"command": []}})
    store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)
    svc = QcService(store, cfg, security.load_or_create_key(cfg.data_dir / "secret.key"))
    await svc.add_user("op@lab.org", "operator-pass")
    await svc.add_project("Lab QC", "", members=["op@lab.org"])
    pipeline = await svc.add_pipeline("lab-qc", "Exploris")
    yield svc, store, pipeline, instrument
    await asyncio.to_thread(store.close)


async def _upload(svc: QcService, pipeline: dict[str, Any], name: str) -> tuple[dict[str, Any], Path]:
    dest = pipeline_inputs(Path(pipeline["path"])) / uuid.uuid4().hex / name
    dest.parent.mkdir(parents=True)
    shutil.copyfile(RAW, dest)
    run = await svc.new_run(pipeline, name, source="upload", owner_id=None, stored_path=str(dest),
                            size=dest.stat().st_size, sha256="0" * 64)
    return run, dest


async def test_startup_reconciliation_clears_what_a_kill_left(lab):
    svc, store, pipeline, instrument = lab
    cfg = svc.cfg
    kept_run, kept = await _upload(svc, pipeline, "kept.raw")
    # a kill between moving an upload into inputs/<id>/ and committing its run
    orphan = pipeline_inputs(Path(pipeline["path"])) / uuid.uuid4().hex / "orphan.raw"
    orphan.parent.mkdir(parents=True)
    shutil.copyfile(RAW, orphan)
    empty_dir = pipeline_inputs(Path(pipeline["path"])) / uuid.uuid4().hex
    empty_dir.mkdir()
    cfg.files.incoming.mkdir(parents=True, exist_ok=True)
    (cfg.files.incoming / "abc.part").write_bytes(b"partial")
    # work folders: of a run that does not exist, of an old finished run, of a failed run
    gone = cfg.files.work_of("rf999")
    (gone / "x").mkdir(parents=True)
    done_run, _ = await _upload(svc, pipeline, "done.raw")
    failed_run, _ = await _upload(svc, pipeline, "failed.raw")
    await store.call(Store.execute, "UPDATE runs SET state = 'failed' WHERE id = ?", [failed_run["id"]])
    old = time.time() - 10 * 24 * 3600
    for run in (done_run, failed_run, kept_run):
        folder = cfg.files.work_of(run["run_key"])
        (folder / "native-stage").mkdir(parents=True)
        if run is not kept_run:
            os.utime(folder, (old, old))
    # ledger rows in impossible states
    watched = instrument / "w.raw"
    await store.call(Store.ledger_note, str(instrument), str(watched), 10, 1, "settling")
    key = LedgerKey(watch_path=str(instrument), path=str(instrument / "lost.raw"), size=1, mtime_ns=1, sha256="ab")
    await store.call(Store.ledger_final, key, "queued")
    await store.call(Store.execute, "UPDATE files SET run_id = 999 WHERE path = ?", [key["path"]])
    key2 = LedgerKey(watch_path=str(instrument), path=str(instrument / "k.raw"), size=1, mtime_ns=1, sha256="cd")
    await store.call(Store.ledger_final, key2, "queued")
    await store.call(Store.execute, "UPDATE files SET run_id = ? WHERE path = ?", [done_run["id"], key2["path"]])

    result = await reconcile(store, cfg)
    print(f"\nreconciled: {result}")

    assert kept.read_bytes() == RAW.read_bytes()  # a run's file stays
    assert not orphan.exists() and not orphan.parent.exists() and not empty_dir.exists()
    assert not list(cfg.files.incoming.glob("*.part"))
    assert not gone.exists()
    assert not cfg.files.work_of(done_run["run_key"]).exists()  # finished, older than the retention
    assert cfg.files.work_of(failed_run["run_key"]).exists()  # its logs are kept
    assert cfg.files.work_of(kept_run["run_key"]).exists()  # recent
    rows = {r["path"]: r for r in await store.call(Store.ledger, 100)}
    assert str(watched) not in rows  # the watcher's pending note: it reports the file again
    assert rows[key["path"]]["state"] == "rejected" and rows[key["path"]]["run_id"] is None
    assert rows[key2["path"]]["state"] == done_run["state"] == "done"
    assert result["orphan_inputs"] == 2 and result["partial_uploads"] == 1 and result["work_folders"] == 2
    assert (await reconcile(store, cfg)) == dict.fromkeys(result, 0)  # nothing left to do the second time
    # while running, the engine's hourly prune removes only work folders past the retention
    folder = cfg.files.work_of(done_run["run_key"])
    (folder / "maxquant").mkdir(parents=True)
    os.utime(folder, (old, old))
    assert await prune_work_folders(store, cfg) == 1 and not folder.exists()
    assert cfg.files.work_of(kept_run["run_key"]).exists() and kept.exists()


async def test_a_run_whose_stages_are_all_skipped_is_done_in_the_ledger(lab):
    svc, store, pipeline, instrument = lab
    f = instrument / "skipped.raw"
    shutil.copyfile(RAW, f)
    st = f.stat()
    key = LedgerKey(watch_path=str(instrument), path=str(f), size=st.st_size, mtime_ns=st.st_mtime_ns, sha256="ef")
    run = await svc.new_run(pipeline, f.name, source="watch", owner_id=None, stored_path=str(f), size=st.st_size,
                            sha256="ef", ledger=key)
    assert all(s["state"] == "skipped" for s in await store.call(Store.stages, run["id"]))
    (row,) = [r for r in await store.call(Store.ledger, 10) if r["path"] == str(f)]
    assert row["state"] == run["state"] == "done"


async def _ingest(svc: QcService, instrument: Path, path: Path) -> Ingest:
    cfg = dataclasses.replace(svc.cfg, watch=(WatchConfig(path=str(instrument), pipeline="lab-qc/exploris",
                                                           owner="op@lab.org", settle_seconds=0.1),))
    ingest = Ingest(svc, cfg)
    await ingest.resolve()
    st = os.lstat(path)
    ev = FileEvent(kind="settled", path=path, size=os.stat(path).st_size if path.exists() else st.st_size,
                   mtime_ns=st.st_mtime_ns, watch=cfg.watch[0])
    await asyncio.wait_for(ingest.on_event(ev), 10)
    return ingest


async def test_an_empty_raw_file_is_rejected_not_pending(lab):
    svc, store, pipeline, instrument = lab
    empty = instrument / "empty.raw"
    empty.write_bytes(b"")
    await _ingest(svc, instrument, empty)
    (row,) = [r for r in await store.call(Store.ledger, 10) if r["path"] == str(empty)]
    assert row["state"] == "rejected" and "empty" in row["reason"] and row["run_id"] is None
    assert await store.call(Store.queue_depth) == {"queued": 0, "running": 0}


async def test_a_symlink_is_rejected_without_opening_its_target(lab, tmp_path):
    svc, store, pipeline, instrument = lab
    target = tmp_path / "elsewhere.fifo"
    os.mkfifo(target)  # opening it for reading would block: the ingest must not open it
    link = instrument / "link.raw"
    link.symlink_to(target)
    await _ingest(svc, instrument, link)  # returns (within the wait_for) without reading the target
    (row,) = [r for r in await store.call(Store.ledger, 10) if r["path"] == str(link)]
    assert row["state"] == "rejected" and "symbolic link" in row["reason"]
    runs = await store.call(Store.runs_of, pipeline["id"])
    assert runs == []
