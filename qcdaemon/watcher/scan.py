"""Read-only folder listing: pattern matching, the start-up/periodic scan, and ``os.stat`` helpers.

Nothing here writes, renames, locks or creates anything: only ``os.scandir`` and ``os.stat``.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import structlog

from qcdaemon.config import WatchConfig

log = structlog.get_logger(__name__)

Sig = tuple[int, int]
"""What "unchanged" is judged on: ``(st_size, st_mtime_ns)``."""


def _norm_pattern(pattern: str) -> str:
    # watchdog 7 users write "**/*.raw" (PurePath.full_match); we match the name only, so a
    # leading "**/" would never match. Accept it as a synonym of the bare name pattern.
    p = pattern.strip().lower()
    while p.startswith("**/"):
        p = p[3:]
    return p


def matches(path: Path, patterns: Sequence[str]) -> bool:
    """Case-insensitive ``fnmatch`` of the file *name* against any of ``patterns``.

    ``X.RAW`` matches ``*.raw`` on every OS (``fnmatch.fnmatch`` would be case-sensitive on
    Linux); directories in the path play no part.
    """
    name = path.name.lower()
    return any(fnmatch.fnmatchcase(name, _norm_pattern(p)) for p in patterns)


def watch_root(watch: WatchConfig) -> Path:
    """The absolute folder of a watch (``~`` expanded, symlinks not resolved)."""
    return Path(os.path.abspath(os.path.expanduser(watch.path)))


def stat_signature(path: Path) -> Sig | None:
    """``(size, mtime_ns)`` from ``os.stat``, or None when the path is absent or not a regular file.

    Uses ``os.stat`` and never ``DirEntry.stat()``: on Windows the directory entry is stale for
    files that are still open for writing (python/cpython#85278). Other ``OSError``s (share
    unreachable, access denied) propagate: they say nothing about whether the file exists.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime_ns)


def scan_folder(watch: WatchConfig) -> Iterator[tuple[Path, os.stat_result]]:
    """Yield ``(absolute path, os.stat result)`` for each matching regular file under the watch.

    Descends into subfolders only when ``watch.recursive``; symlinked folders are not followed.
    Unreadable subfolders and files that vanish mid-scan are skipped (logged). The root itself
    must be listable: if it is missing or unreadable the ``OSError`` propagates on the first
    ``next()``, so callers can tell "empty" from "not there".
    """
    root = watch_root(watch)
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError as exc:
            if folder == root:
                raise
            log.warning("scan_dir_unreadable", path=str(folder), error=str(exc))
            continue
        with it:
            yield from _scan_entries(it, watch, stack)


def _scan_entries(
    it: Iterator[os.DirEntry[str]], watch: WatchConfig, stack: list[Path]
) -> Iterator[tuple[Path, os.stat_result]]:
    while True:
        try:
            entry = next(it)
        except StopIteration:
            return
        except OSError as exc:  # the listing itself broke off (e.g. share dropped)
            log.warning("scan_dir_interrupted", error=str(exc))
            return
        try:
            if entry.is_dir(follow_symlinks=False):
                if watch.recursive:
                    stack.append(Path(entry.path))
                continue
            path = Path(entry.path)
            if not matches(path, watch.patterns):
                continue
            if entry.is_symlink() and not watch.follow_symlinks:
                continue  # [[watch]] follow_symlinks = false: a link is not a file of the folder
            st = os.stat(path)
        except OSError:
            continue  # vanished or unreadable between listing and stat
        if stat.S_ISREG(st.st_mode):
            yield path, st


def scan_signatures(
    watch: WatchConfig, clock: Callable[[], float]
) -> list[tuple[Path, Sig, float]]:
    """Blocking helper for a sweep: every match with its signature and the clock after its stat."""
    return [(p, (st.st_size, st.st_mtime_ns), clock()) for p, st in scan_folder(watch)]


def stat_many(
    paths: Sequence[Path], clock: Callable[[], float]
) -> list[tuple[Sig | OSError | None, float]]:
    """Blocking helper for the settle check: ``stat_signature`` of each path (errors returned, not
    raised) with the clock reading taken after each stat."""
    out: list[tuple[Sig | OSError | None, float]] = []
    for p in paths:
        res: Sig | OSError | None
        try:
            res = stat_signature(p)
        except OSError as exc:
            res = exc
        out.append((res, clock()))
    return out
