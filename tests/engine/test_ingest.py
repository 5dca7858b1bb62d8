"""engine/ingest.py in-process: settled files become runs exactly once (the ledger), on a real store.

The events are the watcher's own ``FileEvent`` values for real files; the e2e tests cover the same
rules through a daemon process and its watcher.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from labkit import RAW, TEST_DATA, Lab, open_lab

from qcdaemon.config import config_from_dict
from qcdaemon.engine.ingest import Ingest
from qcdaemon.errors import ConfigError
from qcdaemon.store import Store
from qcdaemon.watcher.settle import FileEvent


def settled(lab: Lab, path: Path) -> FileEvent:
    st = path.stat()
    return FileEvent("settled", path, st.st_size, st.st_mtime_ns, lab.cfg.watch[0])


async def runs(lab: Lab) -> list[tuple[str, int]]:
    pipeline = await lab.store.call(Store.find_pipeline, "lab-qc/exploris")
    assert pipeline is not None
    return sorted((r["name"], r["size"]) for r in await lab.store.call(Store.runs_of, pipeline["id"]))


async def test_a_settled_file_is_one_run_however_often_it_is_reported(tmp_path: Path) -> None:
    async with open_lab(tmp_path, watch=True) as lab:
        ingest = Ingest(lab.svc, lab.cfg)
        await ingest.resolve()
        target = lab.instrument / "qc.raw"
        shutil.copyfile(RAW, target)
        await ingest.on_event(settled(lab, target))
        await ingest.on_event(settled(lab, target))  # reported again (a sweep, a restart): the same version
        assert await runs(lab) == [("qc.raw", RAW.stat().st_size)]

        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched: same bytes
        await ingest.on_event(settled(lab, target))
        assert len(await runs(lab)) == 1

        other = TEST_DATA / "raw" / "small.RAW"
        shutil.copyfile(other, target)  # the old name with new content: a new version, a new run
        await ingest.on_event(settled(lab, target))
        assert await runs(lab) == sorted([("qc.raw", RAW.stat().st_size), ("qc.raw", other.stat().st_size)])
        pipeline = await lab.store.call(Store.find_pipeline, "lab-qc/exploris")
        assert pipeline is not None
        assert {(r["stored_path"], r["source"]) for r in await lab.store.call(Store.runs_of, pipeline["id"])} == {
            (str(target), "watch")}


async def test_a_file_that_is_no_raw_file_is_rejected_with_the_reason(tmp_path: Path) -> None:
    async with open_lab(tmp_path, watch=True) as lab:
        ingest = Ingest(lab.svc, lab.cfg)
        await ingest.resolve()
        text = lab.instrument / "notes.raw"
        text.write_bytes(b"this is a text file, not an acquisition\n" * 10)
        await ingest.on_event(settled(lab, text))
        assert await runs(lab) == []
        ledger = {r["path"]: r for r in await lab.store.call(Store.ledger)}
        assert ledger[str(text)]["state"] == "rejected"
        assert "not a Thermo RAW file" in ledger[str(text)]["reason"]


async def test_a_file_that_changed_after_it_settled_is_left_for_its_next_report(tmp_path: Path) -> None:
    async with open_lab(tmp_path, watch=True) as lab:
        ingest = Ingest(lab.svc, lab.cfg)
        await ingest.resolve()
        target = lab.instrument / "growing.raw"
        shutil.copyfile(RAW, target)
        event = settled(lab, target)
        with open(target, "ab") as f:  # the instrument writes on after the event was made
            f.write(b"\0" * 1024)
        await ingest.on_event(event)
        assert await runs(lab) == []
        await ingest.on_event(settled(lab, target))  # the watcher reports the new version once it settles
        assert await runs(lab) == [("growing.raw", RAW.stat().st_size + 1024)]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("pipeline", "lab-qc/nope", "watch[0].pipeline: no pipeline 'lab-qc/nope'"),
    ("owner", "ghost@lab.org", "watch[0].owner: no user 'ghost@lab.org'"),
])
async def test_a_watch_naming_no_pipeline_or_owner_stops_start_up(tmp_path: Path, key: str, value: str,
                                                                  message: str) -> None:
    async with open_lab(tmp_path, watch=True) as lab:
        watch = {"path": str(lab.instrument), "pipeline": "lab-qc/exploris", "owner": "op@lab.org", key: value}
        settings = {"paths": {"data_dir": str(lab.cfg.data_dir), "log_dir": str(lab.cfg.log_dir)}, "watch": [watch]}
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            await Ingest(lab.svc, config_from_dict(settings)).resolve()
