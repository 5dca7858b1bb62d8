"""The states of a stage and of a run (stored as their string values)."""

from __future__ import annotations

from enum import StrEnum


class StageState(StrEnum):
    """queued -> running -> done | failed | skipped | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


ACTIVE_STAGE_STATES = frozenset({StageState.QUEUED, StageState.RUNNING})
TERMINAL_STAGE_STATES = frozenset({StageState.DONE, StageState.FAILED, StageState.SKIPPED, StageState.CANCELLED})


class RunState(StrEnum):
    """Derived from the run's stages after every change (``QueueQueries._refresh_run``)."""

    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
