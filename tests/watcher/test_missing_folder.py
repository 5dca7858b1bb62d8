"""A watched folder that is missing at start, appears later, goes and comes back: found within
seconds (not at the next 5-minute sweep), each change logged.  Real watchdog observers on real
folders; the scheduler's sweep is never called here."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from qcdaemon.config import WatchConfig
from qcdaemon.watcher import FileEvent, FolderWatcher
from qcdaemon.watcher.folder_watcher import MISSING_FIRST

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


async def eventually(pred: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


@pytest.mark.parametrize("polling", [False, True])
async def test_a_folder_that_appears_after_start_is_watched_within_seconds(tmp_path: Path, polling: bool) -> None:
    folder = tmp_path / "instrument" / "2026"
    events: list[FileEvent] = []

    async def record(ev: FileEvent) -> None:
        events.append(ev)

    w = FolderWatcher([WatchConfig(path=str(folder), pipeline="p/q", owner="a@b.org", settle_seconds=0.2,
                                   poll_interval=0.2, polling=polling)], record)
    with capture_logs() as logs:
        await w.start()
        try:
            assert w.status()[0]["exists"] is False
            assert next(e for e in logs if e["event"] == "watch_folder_missing")["path"] == str(folder)
            started = time.monotonic()
            folder.mkdir(parents=True)
            (folder / "a.raw").write_bytes(b"x" * 100)
            await eventually(lambda: [e for e in events if e.kind == "settled"], 10, "a.raw to settle")
            # the first look comes MISSING_FIRST seconds after start: far sooner than the 5-minute sweep
            assert time.monotonic() - started < MISSING_FIRST * 2 + 3
            assert w.status()[0]["exists"] is True
            assert [e["path"] for e in logs if e["event"] == "watch_folder_appeared"] == [str(folder)]

            shutil.rmtree(folder)  # the folder goes (a share unmounted, a folder renamed) ...
            await eventually(lambda: not w.status()[0]["exists"], 10, "the folder's absence to be noticed")
            await eventually(lambda: [e for e in logs if e["event"] == "watch_folder_gone"], 5, "the log line")
            folder.mkdir(parents=True)  # ... and comes back
            (folder / "b.raw").write_bytes(b"y" * 100)
            await eventually(lambda: [e for e in events if e.kind == "settled" and e.path.name == "b.raw"], 10,
                             "b.raw in the re-created folder")
            assert len([e for e in logs if e["event"] == "watch_folder_appeared"]) == 2
        finally:
            await w.stop()
