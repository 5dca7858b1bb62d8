"""The settle state machine: when is a growing RAW file finished?

Pure logic, no I/O and no clock of its own: callers feed it observations ``(size, mtime_ns)``
stamped with their clock and ask which files are due for a re-check. This is what the unit tests
drive with a fake clock; :class:`~qcdaemon.watcher.folder_watcher.FolderWatcher` supplies the
real stats, timers and the Windows share probe.

Rules:
- a file is never ready on the observation that first sees it (or sees it changed);
- ready = an observation finds ``(size, mtime_ns)`` unchanged since ``stable_since`` and
  ``at - stable_since >= settle_seconds`` and ``size > 0``; the caller then asks the share probe
  and calls :meth:`SettleTracker.settle` or :meth:`SettleTracker.defer`;
- "seen" once per new file, and again when a settled file changes; "settled" once per
  ``(path, size, mtime_ns)`` while the file is tracked; "gone" when a pending file disappears (a
  settled file that disappears is forgotten silently, so if it comes back it is new again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from qcdaemon.config import WatchConfig
from qcdaemon.watcher.scan import Sig

MIN_RECHECK = 0.25
"""Never re-stat one file more often than this (keeps ``settle_seconds = 0`` from spinning)."""

PROBE_RETRY = 1.0
"""Re-probe a stable file this soon after the share probe said a writer still has it open."""

Key = tuple[int, Path]
"""(index of the watch in the watcher's list, absolute path): nested watches track separately."""

EventKind = Literal["seen", "settled", "gone"]

Listener = Callable[[str, Key, WatchConfig, Sig], None]
"""``listener(kind, key, watch, sig)`` hears every change of a tracked file: "new" (first seen),
"changed" (size or mtime moved), "settled", "removed". Growth observations for stalled-acquisition
alerts; it must not block (it runs on the watcher's loop)."""


@dataclass(frozen=True)
class FileEvent:
    """What the watcher tells the service about one file.

    ``seen``: first sighting, or it changed again after being reported settled;
    ``settled``: finished, hand it over; ``gone``: vanished before settling.
    ``size``/``mtime_ns`` are the values the event refers to (the last known ones for ``gone``).
    """

    kind: EventKind
    path: Path
    size: int
    mtime_ns: int
    watch: WatchConfig


class Observation(NamedTuple):
    event: FileEvent | None
    ready: bool


_NOTHING = Observation(None, False)


@dataclass
class _Track:
    path: Path
    watch: WatchConfig
    sig: Sig
    stable_since: float  # clock time at which ``sig`` was first observed
    observed_at: float  # clock time of the newest observation applied (older ones are stale)
    due: float | None  # next re-check; None = no timer needed (settled)
    settled: bool = False
    hint: tuple[float, float] | None = None  # (when, due) of the latest event hint


class SettleTracker:
    """Per-file settle state for all watches; see the module docstring for the rules."""

    def __init__(self, *, min_recheck: float = MIN_RECHECK, probe_retry: float = PROBE_RETRY) -> None:
        self._tracks: dict[Key, _Track] = {}
        self.min_recheck = min_recheck
        self.probe_retry = probe_retry
        self.listener: Listener | None = None

    def _tell(self, kind: str, key: Key, watch: WatchConfig, sig: Sig) -> None:
        if self.listener is not None:
            self.listener(kind, key, watch, sig)

    def _wait(self, watch: WatchConfig) -> float:
        return max(watch.settle_seconds, self.min_recheck)

    def observe(self, key: Key, watch: WatchConfig, sig: Sig | None, at: float) -> Observation:
        """Apply one ``os.stat`` result (None = absent) taken at clock time ``at``.

        Returns the event to emit (if any) and whether the file is ready for the share probe.
        Observations older than the newest one applied for this file are ignored.
        """
        t = self._tracks.get(key)
        if t is not None and at < t.observed_at:
            return _NOTHING
        if sig is None:
            if t is None:
                return _NOTHING
            del self._tracks[key]
            self._tell("removed", key, t.watch, t.sig)
            return Observation(None if t.settled else _event("gone", t), False)
        if t is None:
            t = _Track(key[1], watch, sig, stable_since=at, observed_at=at, due=at + self._wait(watch))
            self._tracks[key] = t
            self._tell("new", key, watch, sig)
            return Observation(_event("seen", t), False)
        t.observed_at = at
        changed = sig != t.sig
        obs = self._compare(t, sig, at)
        if changed:
            self._tell("changed", key, watch, sig)
        if t.hint is not None:
            if t.hint[0] > at:  # an event came after this stat was taken: keep its earlier check
                t.due = t.hint[1] if t.due is None else min(t.due, t.hint[1])
            else:
                t.hint = None
        return obs

    def _compare(self, t: _Track, sig: Sig, at: float) -> Observation:
        watch = t.watch
        if sig != t.sig:
            was_settled = t.settled
            t.sig, t.stable_since, t.settled = sig, at, False
            t.due = at + self._wait(watch)
            return Observation(_event("seen", t) if was_settled else None, False)
        if t.settled:
            t.due = None
            return _NOTHING
        if sig[0] > 0 and at - t.stable_since >= watch.settle_seconds:
            t.due = at  # the caller probes now, then settle() or defer() moves this on
            return Observation(None, True)
        if sig[0] > 0:
            t.due = max(t.stable_since + watch.settle_seconds, at + self.min_recheck)
        else:  # empty file: keep looking, slowly
            t.due = at + self._wait(watch)
        return _NOTHING

    def settle(self, key: Key, sig: Sig) -> FileEvent | None:
        """Mark a ready file settled (the probe agreed); None if it changed meanwhile."""
        t = self._tracks.get(key)
        if t is None or t.settled or t.sig != sig:
            return None
        t.settled = True
        t.due = t.hint[1] if t.hint else None  # an event since the last stat: look once more
        self._tell("settled", key, t.watch, sig)
        return _event("settled", t)

    def defer(self, key: Key, until: float) -> None:
        """Re-check a pending file no earlier than ``until`` (probe said busy, or stat failed)."""
        t = self._tracks.get(key)
        if t is not None and not t.settled:
            t.due = min(until, t.hint[1]) if t.hint else until

    def hint(self, key: Key, at: float, due: float) -> bool:
        """Something happened to ``key`` at ``at`` (a watchdog event): re-check it by ``due``.

        A stat taken before ``at`` but applied after it cannot push the check back past ``due``.
        Returns False when the file is not tracked (the caller must stat it to start tracking).
        """
        t = self._tracks.get(key)
        if t is None:
            return False
        t.due = due if t.due is None else min(t.due, due)
        t.hint = (at, due) if t.hint is None else (max(at, t.hint[0]), min(due, t.hint[1]))
        return True

    def due_keys(self, now: float) -> list[Key]:
        return [k for k, t in self._tracks.items() if t.due is not None and t.due <= now]

    def next_due(self) -> float | None:
        """Earliest re-check time, or None when nothing needs a timer (nothing pending)."""
        return min((t.due for t in self._tracks.values() if t.due is not None), default=None)

    def keys_for(self, watch_index: int) -> list[Key]:
        return [k for k in self._tracks if k[0] == watch_index]

    def pending_count(self, watch_index: int) -> int:
        return sum(1 for k, t in self._tracks.items() if k[0] == watch_index and not t.settled)

    def is_tracked(self, key: Key) -> bool:
        return key in self._tracks

    def watch_of(self, key: Key) -> WatchConfig | None:
        t = self._tracks.get(key)
        return t.watch if t is not None else None


def _event(kind: EventKind, t: _Track) -> FileEvent:
    return FileEvent(kind=kind, path=t.path, size=t.sig[0], mtime_ns=t.sig[1], watch=t.watch)
