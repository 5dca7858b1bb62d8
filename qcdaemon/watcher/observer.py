"""watchdog glue: one observer per watch, whose callbacks only filter and relay paths.

Callbacks run in watchdog's observer thread. They do no I/O and touch no watcher state: they
match the file name and hand the path to ``deliver`` (which hops to the event loop with
``call_soon_threadsafe``). Events are hints only; the settle checker stats the file itself.
We match names ourselves instead of using ``PatternMatchingEventHandler``, whose watchdog 7
``PurePath.full_match`` semantics make ``*.raw`` miss ``sub/a.RAW`` (spec/platform.md 3.1).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from watchdog.events import (
    DirDeletedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from qcdaemon.config import WatchConfig
from qcdaemon.watcher.scan import matches

log = structlog.get_logger(__name__)

ObserverKind = Literal["native", "polling"]

# Asking only for these keeps inotify from reporting every open/close-nowrite by readers
# (RawTools reading a finished file would otherwise flood the queue).
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent,
    FileDeletedEvent, FileAttribEvent, DirDeletedEvent,
]
_HINT_TYPES = frozenset({"created", "modified", "closed", "deleted", "attrib"})


class Relay(FileSystemEventHandler):
    """Forwards the path of every matching, non-directory event to ``deliver`` (observer thread).

    created/modified/closed/attrib/deleted give ``src_path``; moved gives both ends (the
    destination is the candidate, the source may be a tracked file that is now gone).
    """

    def __init__(self, watch: WatchConfig, root: Path, deliver: Callable[[str], None],
                 gone: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._patterns = watch.patterns
        self._recursive = watch.recursive
        self._root = root
        self._deliver = deliver
        self._gone = gone

    def dispatch(self, event: FileSystemEvent) -> None:
        # the watched folder itself was deleted or moved away (inotify reports it as a file or a folder)
        if self._gone is not None and event.event_type in ("deleted", "moved") \
                and Path(os.fsdecode(event.src_path)) == self._root:
            self._gone()
            return
        if event.is_directory:
            return
        if event.event_type == "moved":
            raw_paths = [event.src_path, event.dest_path]
        elif event.event_type in _HINT_TYPES:
            raw_paths = [event.src_path]
        else:
            return
        for raw in raw_paths:
            p = os.fsdecode(raw)
            if not p:
                continue
            path = Path(p)
            if not matches(path, self._patterns):
                continue
            if not self._recursive and path.parent != self._root:
                continue
            self._deliver(p)


def start_observer(
    watch: WatchConfig, root: Path, deliver: Callable[[str], None], gone: Callable[[], None] | None = None
) -> tuple[BaseObserver, ObserverKind]:
    """Start an observer on ``root`` (blocking: inotify adds a watch per subfolder).

    ``watch.polling`` selects ``PollingObserver(timeout=poll_interval)`` (network shares). If the
    native observer cannot start for a reason other than a missing folder (e.g. the inotify watch
    limit), fall back to polling rather than watching nothing. Raises ``OSError`` if the folder
    is missing or unreadable.
    """
    kind: ObserverKind = "polling" if watch.polling else "native"
    try:
        return _start(kind, watch, root, deliver, gone), kind
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        raise
    except OSError as exc:
        if kind == "polling":
            raise
        log.warning("watch_native_observer_failed", path=str(root), error=str(exc))
        return _start("polling", watch, root, deliver, gone), "polling"


def _start(
    kind: ObserverKind, watch: WatchConfig, root: Path, deliver: Callable[[str], None],
    gone: Callable[[], None] | None = None,
) -> BaseObserver:
    obs: BaseObserver = PollingObserver(timeout=watch.poll_interval) if kind == "polling" else Observer()
    obs.schedule(
        Relay(watch, root, deliver, gone), str(root), recursive=watch.recursive, event_filter=_EVENT_FILTER
    )
    obs.start()  # starts the emitters first; raises if the folder cannot be watched
    return obs


def observer_healthy(obs: BaseObserver | None) -> bool:
    """False when absent, stopped, or its emitter died (watchdog stops an emitter whose root folder
    was deleted and does not restart it)."""
    if obs is None or not obs.is_alive():
        return False
    emitters = obs.emitters
    return bool(emitters) and all(e.is_alive() for e in emitters)


def stop_observer(obs: BaseObserver) -> None:
    """Stop and join (blocking; call in a thread). ``stop()`` also stops and joins the emitters."""
    obs.stop()
    if obs.is_alive():
        obs.join(timeout=10)


@dataclass
class WatchedFolder:
    """One watch entry's folder, its observer, and what :meth:`FolderWatcher.status` shows."""

    index: int
    watch: WatchConfig
    root: Path
    kind: ObserverKind
    observer: BaseObserver | None = None
    exists: bool = False
    error: str | None = None
    last_file_seen: Path | None = None
    last_seen_at: float | None = None

    async def ensure_observer(
        self, deliver: Callable[[str], None], still_running: Callable[[], bool],
        on_gone: Callable[[], None] | None = None,
    ) -> None:
        """Make sure a healthy observer watches the folder if it exists (blocking work in threads).

        Missing folder: stop any observer, record the error. Dead emitter (the folder was
        deleted and re-created): replace the observer. Never raises ``OSError``.
        """
        if not await asyncio.to_thread(os.path.isdir, self.root):
            await self.close()
            self.set_error("watch folder not found", exists=False)
            return
        self.exists = True
        if observer_healthy(self.observer):
            return
        await self.close()
        try:
            obs, kind = await asyncio.to_thread(start_observer, self.watch, self.root, deliver, on_gone)
        except OSError as exc:
            gone = isinstance(exc, (FileNotFoundError, NotADirectoryError))
            self.set_error(f"observer failed: {exc}", exists=not gone)
            return
        if not still_running():  # the watcher was stopped meanwhile
            await asyncio.to_thread(stop_observer, obs)
            return
        self.observer, self.kind, self.error = obs, kind, None
        log.info("watch_observing", path=str(self.root), observer=kind, recursive=self.watch.recursive)

    async def close(self) -> None:
        """Stop and join the observer, if any."""
        if self.observer is not None:
            obs, self.observer = self.observer, None
            await asyncio.to_thread(stop_observer, obs)

    def set_error(self, error: str, *, exists: bool) -> None:
        if error != self.error:
            log.warning("watch_folder_unavailable", path=str(self.root), error=error)
        self.error, self.exists = error, exists

    def status(self, pending: int) -> dict[str, Any]:
        return {
            "path": str(self.root),
            "pipeline": self.watch.pipeline,
            "exists": self.exists,
            "observer": self.kind,
            "last_file_seen": str(self.last_file_seen) if self.last_file_seen else None,
            "last_seen_at": self.last_seen_at,
            "pending": pending,
            "error": self.error,
        }
