"""Watcher tests: the settle state machine on a fake clock, and real watchdog observers (native
and polling) on real files in tmp_path. Waits are deadlines (``eventually``), never assertions
made after a fixed sleep."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import watchdog.utils

from qcdaemon.config import WatchConfig
from qcdaemon.watcher import FileEvent, FolderWatcher, matches, scan_folder, winshare
from qcdaemon.watcher.settle import SettleTracker

# watchdog's inotify emitter warns (harmlessly) when a freshly created nested folder is added
# twice; under filterwarnings=error that warning would kill its thread instead.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")

# ------------------------------------------------------------------------------------ helpers


def wc(path: Path, **kw: object) -> WatchConfig:
    kw.setdefault("settle_seconds", 0.3)
    kw.setdefault("poll_interval", 0.1)
    owner = "lab@example.org"
    return WatchConfig(path=str(path), pipeline="proj/pipe", owner=owner, **kw)  # type: ignore[arg-type]


async def eventually(pred: Callable[[], object], timeout: float = 5.0, what: str = "") -> object:
    """Poll ``pred`` until truthy or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        await asyncio.sleep(0.02)


class Recorder:
    def __init__(self) -> None:
        self.events: list[FileEvent] = []

    async def __call__(self, ev: FileEvent) -> None:
        self.events.append(ev)

    def of(self, kind: str, name: str | None = None) -> list[FileEvent]:
        return [e for e in self.events if e.kind == kind and (name is None or e.path.name == name)]

    def names(self) -> set[str]:
        return {e.path.name for e in self.events}


def write(path: Path, data: bytes = b"x" * 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, watchdog.utils.BaseThread) and t.is_alive()]


MakeWatcher = Callable[..., Awaitable[FolderWatcher]]


@pytest.fixture(params=["native", "polling"])
def polling(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "polling")


@pytest.fixture
async def make_watcher() -> AsyncIterator[MakeWatcher]:
    """Start FolderWatchers; stop them all at teardown and check no observer thread leaked."""
    made: list[FolderWatcher] = []

    async def make(watches: Sequence[WatchConfig], on_event: Recorder, **kw: object) -> FolderWatcher:
        w = FolderWatcher(watches, on_event, **kw)  # type: ignore[arg-type]
        made.append(w)
        await w.start()
        return w

    yield make
    for w in made:
        await w.stop()
    assert watchdog_threads() == []


def listing(root: Path) -> list[tuple[str, bool, int, int, str]]:
    """Everything under root (root included): name, is_dir, size, mtime_ns, content hash."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            p = Path(dirpath, name) if name else Path(dirpath)
            st = os.stat(p)
            digest = "" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            out.append((str(p.relative_to(root)), p.is_dir(), st.st_size, st.st_mtime_ns, digest))
    return sorted(set(out))


# ------------------------------------------------------------------------------------ pure parts


def test_matches_is_case_insensitive_on_the_name_only() -> None:
    assert matches(Path("/data/X.RAW"), ("*.raw",))
    assert matches(Path("/data/sub/a.Raw"), ("*.raw",))
    assert not matches(Path("/data/x.txt"), ("*.raw",))
    assert not matches(Path("/data.raw/x.txt"), ("*.raw",))
    assert matches(Path("/d/QC_01.raw"), ("qc_*.RAW",))
    assert matches(Path("/d/sub/a.raw"), ("**/*.raw",))  # watchdog-7 style pattern accepted
    assert matches(Path("/d/a.mzML"), ("*.raw", "*.mzml"))


def test_scan_folder_recursion_and_unreadable_dirs(tmp_path: Path) -> None:
    write(tmp_path / "a.raw")
    write(tmp_path / "B.RAW")
    write(tmp_path / "notes.txt")
    write(tmp_path / "sub" / "deep" / "c.raw")
    (tmp_path / "dir.raw").mkdir()  # a folder with a matching name is not a file
    rec = {p.name for p, _ in scan_folder(wc(tmp_path))}
    assert rec == {"a.raw", "B.RAW", "c.raw"}
    flat = {p.name for p, _ in scan_folder(wc(tmp_path, recursive=False))}
    assert flat == {"a.raw", "B.RAW"}
    found = dict(scan_folder(wc(tmp_path)))
    assert found[tmp_path / "a.raw"].st_size == 1000
    assert all(p.is_absolute() for p in found)

    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        write(locked / "hidden.raw")
        locked.chmod(0)
        try:
            assert {p.name for p, _ in scan_folder(wc(tmp_path))} == {"a.raw", "B.RAW", "c.raw"}
        finally:
            locked.chmod(0o755)

    with pytest.raises(FileNotFoundError):
        list(scan_folder(wc(tmp_path / "missing")))


def test_settle_tracker_rules_on_a_fake_clock(tmp_path: Path) -> None:
    w = wc(tmp_path, settle_seconds=10.0)
    t = SettleTracker()
    key = (0, tmp_path / "a.raw")
    obs = t.observe(key, w, (100, 1), at=0.0)
    assert obs.event is not None and obs.event.kind == "seen" and not obs.ready
    assert t.next_due() == 10.0 and t.pending_count(0) == 1
    # unchanged but too early: not ready, due at stable_since + settle
    assert t.observe(key, w, (100, 1), at=5.0) == (None, False)
    assert t.next_due() == 10.0
    # grew: the window restarts, no new "seen" while pending
    assert t.observe(key, w, (200, 2), at=9.0) == (None, False)
    assert t.observe(key, w, (200, 2), at=18.9).ready is False
    assert t.observe(key, w, (200, 2), at=19.0).ready is True
    # a probe saying "still open" defers it; the file stays pending
    t.defer(key, 20.0)
    assert t.next_due() == 20.0 and t.pending_count(0) == 1
    assert t.observe(key, w, (200, 2), at=20.0).ready is True
    ev = t.settle(key, (200, 2))
    assert ev is not None and (ev.kind, ev.size, ev.mtime_ns) == ("settled", 200, 2)
    assert t.settle(key, (200, 2)) is None  # exactly once
    assert t.next_due() is None and t.pending_count(0) == 0  # nothing pending: no timer
    assert t.observe(key, w, (200, 2), at=30.0) == (None, False)
    # stale observation (taken before the newest applied one) is ignored
    assert t.observe(key, w, (999, 9), at=25.0) == (None, False)
    # rewritten after settling: "seen" again, then settles again
    obs = t.observe(key, w, (300, 3), at=40.0)
    assert obs.event is not None and obs.event.kind == "seen" and obs.event.size == 300
    assert t.observe(key, w, (300, 3), at=50.0).ready
    assert t.settle(key, (300, 3)) is not None
    # a settled file that vanishes is forgotten silently; a pending one is "gone"
    assert t.observe(key, w, None, at=60.0) == (None, False)
    assert t.observe(key, w, (1, 1), at=61.0).event.kind == "seen"  # type: ignore[union-attr]
    gone = t.observe(key, w, None, at=62.0).event
    assert gone is not None and (gone.kind, gone.size) == ("gone", 1)


def test_settle_tracker_never_on_first_sighting_and_empty_files_settle(tmp_path: Path) -> None:
    w0 = wc(tmp_path, settle_seconds=0.0)
    t = SettleTracker()
    k = (0, tmp_path / "a.raw")
    assert t.observe(k, w0, (10, 1), at=100.0).ready is False  # settle_seconds=0 still needs 2 looks
    assert t.next_due() == 100.0 + t.min_recheck
    assert t.observe(k, w0, (10, 1), at=100.25).ready is True
    empty = (0, tmp_path / "empty.raw")
    t.observe(empty, wc(tmp_path, settle_seconds=1.0), (0, 5), at=0.0)
    assert t.observe(empty, wc(tmp_path, settle_seconds=1.0), (0, 5), at=0.5).ready is False
    # an empty file settles like any other (it is then rejected, never pending for ever; issue 12)
    assert t.observe(empty, wc(tmp_path, settle_seconds=1.0), (0, 5), at=50.0).ready is True


def test_settle_tracker_event_during_a_stat_is_not_lost(tmp_path: Path) -> None:
    w = wc(tmp_path, settle_seconds=10.0)
    t = SettleTracker()
    k = (0, tmp_path / "a.raw")
    t.observe(k, w, (1, 1), at=0.0)
    # a check stats at 10.0; a write event arrives at 10.1 before that result is applied
    assert t.hint(k, at=10.1, due=10.3)
    assert t.observe(k, w, (1, 1), at=10.0).ready  # (the probe then finds it changed)
    t.defer(k, 11.0)
    assert t.next_due() == 10.3  # the event's re-check survives
    assert t.observe(k, w, (2, 2), at=10.3) == (None, False)
    assert t.next_due() == 20.3  # hint consumed by a newer stat
    assert not t.hint((0, tmp_path / "untracked.raw"), at=1.0, due=1.2)


def test_windows_share_probe_decision() -> None:
    assert winshare.interpret(True, 0) is True
    assert winshare.interpret(False, winshare.ERROR_SHARING_VIOLATION) is False
    assert winshare.interpret(False, winshare.ERROR_LOCK_VIOLATION) is False
    with pytest.raises(OSError):
        winshare.interpret(False, 5)  # access denied is an error, not "finished"
    long = "C:\\" + "d\\" * 200 + "a.raw"
    assert winshare._extended(long).startswith("\\\\?\\C:\\")
    assert winshare._extended("\\\\srv\\share\\" + "d\\" * 200).startswith("\\\\?\\UNC\\srv\\share\\")
    assert winshare._extended("C:\\a.raw") == "C:\\a.raw"
    if sys.platform != "win32":
        assert winshare.default_share_probe() is None


# ------------------------------------------------------------------------------------ real observers


def slow_writer(path: Path, chunks: int = 10, interval: float = 0.3) -> None:
    """Like an instrument: keep the file open and append a flushed chunk every ``interval``."""
    with open(path, "wb") as f:
        for _ in range(chunks):
            f.write(os.urandom(4096))
            f.flush()
            time.sleep(interval)


async def test_growing_file_settles_exactly_once_after_writer_stops(
    tmp_path: Path, polling: bool, make_watcher: MakeWatcher
) -> None:
    rec = Recorder()
    w = await make_watcher([wc(tmp_path, settle_seconds=1.0, polling=polling)], rec)
    target = tmp_path / "run01.raw"
    writer = threading.Thread(target=slow_writer, args=(target,))
    writer.start()
    try:
        await eventually(lambda: rec.of("seen", "run01.raw"), 3, "seen")
        while writer.is_alive():
            assert not rec.of("settled"), "released while the file was still growing"
            await asyncio.sleep(0.05)
    finally:
        writer.join()
    size = target.stat().st_size
    await eventually(lambda: rec.of("settled", "run01.raw"), 1.0 + 2.0, "settled")
    await w.sweep()
    await eventually(lambda: w.status()[0]["pending"] == 0, 2)
    settled = rec.of("settled", "run01.raw")
    assert len(settled) == 1 and settled[0].size == size == 40960
    assert settled[0].mtime_ns == target.stat().st_mtime_ns
    assert len(rec.of("seen", "run01.raw")) == 1 and not rec.of("gone")
    # nothing pending: no settle timer is scheduled (the loop is left alone)
    assert w._timer is None and w._check_task is None and w._tracker.next_due() is None


async def test_startup_scan_and_file_dropped_while_stopped(
    tmp_path: Path, polling: bool, make_watcher: MakeWatcher
) -> None:
    write(tmp_path / "a.raw")
    write(tmp_path / "B.RAW")
    write(tmp_path / "notes.txt")
    write(tmp_path / "sub" / "c.raw")
    rec = Recorder()
    w = await make_watcher([wc(tmp_path, polling=polling)], rec)
    await eventually(lambda: len(rec.of("settled")) == 3, 3, "3 settled")
    assert rec.names() == {"a.raw", "B.RAW", "c.raw"}
    assert all(e.path.is_absolute() and e.watch.pipeline == "proj/pipe" for e in rec.events)
    await w.stop()
    write(tmp_path / "late.raw")
    await w.start()  # same instance, restarted
    await eventually(lambda: rec.of("settled", "late.raw"), 3, "late.raw settled")
    assert len(rec.of("settled")) == 4  # the others were not released again
    assert await w.sweep() == 4


async def test_events_are_matched_case_insensitively(
    tmp_path: Path, polling: bool, make_watcher: MakeWatcher
) -> None:
    rec = Recorder()
    w = await make_watcher([wc(tmp_path, polling=polling)], rec)
    write(tmp_path / "x.txt")
    write(tmp_path / "X.RAW")
    (tmp_path / "tmp.part").write_bytes(b"y" * 10)
    (tmp_path / "tmp.part").rename(tmp_path / "moved.raw")  # temp name moved into place
    await eventually(lambda: rec.of("settled", "X.RAW") and rec.of("settled", "moved.raw"), 3)
    assert await w.sweep() == 2
    await eventually(lambda: w.status()[0]["pending"] == 0, 2)
    assert rec.names() == {"X.RAW", "moved.raw"}


@pytest.mark.parametrize("recursive", [False, True])
async def test_recursive_flag(
    tmp_path: Path, polling: bool, recursive: bool, make_watcher: MakeWatcher
) -> None:
    write(tmp_path / "sub" / "pre.raw")
    write(tmp_path / "pre.raw")
    rec = Recorder()
    w = await make_watcher([wc(tmp_path, polling=polling, recursive=recursive)], rec)
    write(tmp_path / "sub" / "post.raw")
    write(tmp_path / "newsub" / "deeper" / "post2.raw")
    write(tmp_path / "post.raw")
    top = {"pre.raw", "post.raw"}
    want = top | {"post2.raw"} if recursive else top
    # post.raw / post2.raw must come from events (no sweep yet)
    await eventually(lambda: {e.path.name for e in rec.of("settled")} >= want, 4, f"settled {want}")
    await w.sweep()
    await eventually(lambda: w.status()[0]["pending"] == 0, 2)
    settled = [e.path.relative_to(tmp_path).as_posix() for e in rec.of("settled")]
    expected = {"pre.raw", "post.raw"}
    if recursive:
        expected |= {"sub/pre.raw", "sub/post.raw", "newsub/deeper/post2.raw"}
    assert sorted(settled) == sorted(expected)


async def test_missing_folder_is_not_fatal_and_is_picked_up_by_sweep(
    tmp_path: Path, polling: bool, make_watcher: MakeWatcher
) -> None:
    folder = tmp_path / "instrument" / "data"
    rec = Recorder()
    w = await make_watcher([wc(folder, polling=polling)], rec)
    st = w.status()[0]
    assert st["exists"] is False and st["error"] and st["pending"] == 0
    assert await w.sweep() == 0
    write(folder / "first.raw")
    assert await w.sweep() == 1
    await eventually(lambda: rec.of("settled", "first.raw"), 3)
    st = w.status()[0]
    assert st["exists"] is True and st["error"] is None
    write(folder / "second.raw")  # no sweep: the observer started by the sweep must see it
    await eventually(lambda: rec.of("settled", "second.raw"), 3)


async def test_file_removed_before_settling_is_gone(
    tmp_path: Path, polling: bool, make_watcher: MakeWatcher
) -> None:
    rec = Recorder()
    await make_watcher([wc(tmp_path, polling=polling, settle_seconds=2.0)], rec)
    f = write(tmp_path / "aborted.raw")
    await eventually(lambda: rec.of("seen", "aborted.raw"), 3)
    f.unlink()
    await eventually(lambda: rec.of("gone", "aborted.raw"), 3)
    assert not rec.of("settled")


async def test_rewritten_file_is_seen_and_settled_again(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    rec = Recorder()
    await make_watcher([wc(tmp_path)], rec)
    f = write(tmp_path / "qc.raw", b"a" * 100)
    await eventually(lambda: rec.of("settled", "qc.raw"), 3)
    write(f, b"b" * 200)
    await eventually(lambda: len(rec.of("settled", "qc.raw")) == 2, 3)
    assert [(e.kind, e.size) for e in rec.events] == [
        ("seen", 100), ("settled", 100), ("seen", 200), ("settled", 200)
    ]


async def test_watched_folder_is_left_byte_identical(
    tmp_path: Path, polling: bool, make_watcher: MakeWatcher
) -> None:
    root = tmp_path / "watched"
    write(root / "a.raw", os.urandom(5000))
    write(root / "sub" / "b.RAW", os.urandom(3000))
    write(root / "sub" / "readme.txt", b"hello")
    write(root / "empty.raw", b"")
    os.utime(root / "a.raw", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    before = listing(root)
    rec = Recorder()
    w = await make_watcher([wc(root, polling=polling)], rec, share_probe=lambda p: True)
    await eventually(lambda: len(rec.of("settled")) == 3, 3)
    await w.sweep()
    await w.stop()
    assert listing(root) == before
    assert w.status()[0]["pending"] == 0  # empty.raw settles too (and is rejected by the ingest; issue 12)


async def test_share_probe_blocks_settling_until_writer_lets_go(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    calls: list[Path] = []
    open_for_writing = True

    def probe(path: Path) -> bool:
        calls.append(path)
        return not open_for_writing

    write(tmp_path / "acq.raw")
    rec = Recorder()
    w = await make_watcher([wc(tmp_path, settle_seconds=0.2)], rec, share_probe=probe)
    # stable and probed twice (initial + retry), still not released
    await eventually(lambda: len(calls) >= 2, 5, "probe retried")
    assert not rec.of("settled") and w.status()[0]["pending"] == 1
    assert calls[0] == tmp_path / "acq.raw"
    open_for_writing = False
    await eventually(lambda: rec.of("settled", "acq.raw"), 3)
    assert len(rec.of("settled")) == 1 and w.status()[0]["pending"] == 0


async def test_probe_errors_and_handler_errors_do_not_release_or_crash(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    def probe(path: Path) -> bool:
        if path.name == "denied.raw":
            raise PermissionError("access denied")
        return True

    class Flaky(Recorder):
        async def __call__(self, ev: FileEvent) -> None:
            await super().__call__(ev)
            raise RuntimeError("service hiccup")

    write(tmp_path / "denied.raw")
    write(tmp_path / "ok.raw")
    rec = Flaky()
    w = await make_watcher([wc(tmp_path, settle_seconds=0.2)], rec, share_probe=probe)
    # a deadline, not a wait: it returns as soon as ok.raw settles (3 s was too short on a loaded machine,
    # where the start-up scan, the stat and the probe each wait for a thread of the default executor)
    await eventually(lambda: rec.of("settled", "ok.raw"), 30, "ok.raw settled")
    assert not rec.of("settled", "denied.raw") and w.status()[0]["pending"] == 1


async def test_status_reports_each_watch(tmp_path: Path, make_watcher: MakeWatcher) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    rec = Recorder()
    w = await make_watcher(
        [wc(a, settle_seconds=60.0), wc(b, polling=True)], rec
    )
    before = time.time()
    write(a / "long_run.raw")
    await eventually(lambda: w.status()[0]["pending"] == 1, 3)
    sa, sb = w.status()
    assert set(sa) == {
        "path", "pipeline", "exists", "observer", "last_file_seen", "last_seen_at", "pending", "error"
    }
    assert sa["path"] == str(a) and sa["pipeline"] == "proj/pipe" and sa["exists"] is True
    assert sa["observer"] == "native" and sa["error"] is None
    assert sa["last_file_seen"] == str(a / "long_run.raw")
    assert before - 1 <= sa["last_seen_at"] <= time.time() + 1
    assert sb == {
        "path": str(b), "pipeline": "proj/pipe", "exists": False, "observer": "polling",
        "last_file_seen": None, "last_seen_at": None, "pending": 0, "error": "watch folder not found",
    }
    assert [e.kind for e in rec.events] == ["seen"]


async def test_a_raw_file_whose_header_says_acquisition_in_progress_is_not_released(
    tmp_path: Path, make_watcher: MakeWatcher
) -> None:
    """Stable size and mtime are not enough: the header's IsInAcquisition flag holds the file."""
    source = Path(__file__).resolve().parents[1] / "data" / "raw-outside" / "msdk_tsq_quantum.raw"
    data = bytearray(source.read_bytes())
    offset = 1788  # RawFileInfo.IsInAcquisition of this file (Thermo's reader: InAcquisition = true when 1)
    assert data[offset:offset + 4] == b"\0\0\0\0"
    data[offset] = 1
    folder = tmp_path / "instrument"
    folder.mkdir()
    write(folder / "acquiring.raw", bytes(data))
    write(folder / "finished.raw", source.read_bytes())
    rec = Recorder()
    w = await make_watcher([wc(folder, settle_seconds=0.2)], rec)
    await eventually(lambda: rec.of("settled", "finished.raw"), 5)
    await asyncio.sleep(1.0)  # several settle periods: still held
    assert not rec.of("settled", "acquiring.raw") and w.status()[0]["pending"] == 1
    data[offset] = 0  # the instrument closes the run
    write(folder / "acquiring.raw", bytes(data))
    await eventually(lambda: rec.of("settled", "acquiring.raw"), 10)
    assert w.status()[0]["pending"] == 0
