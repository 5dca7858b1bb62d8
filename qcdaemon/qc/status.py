"""Instrument status per pipeline, in QCloud's vocabulary (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .guidesets import Run, as_utc
from .reasons import FAIL, NOT_ENOUGH, WARN, Verdict

__all__ = ["instrument_status"]


def instrument_status(latest: Run | None, verdict: Verdict | None, *, now: dt.datetime | None = None,
                      last_file: dt.datetime | None = None, offline_after: dt.timedelta | None = None,
                      ) -> dict[str, Any]:
    """QCloud's vocabulary: OK, WARNING, DANGER, NO_DATA, OFFLINE, NO_THRESHOLD, with the reason
    and the latest run. OFFLINE: no new file for ``offline_after`` (when configured)."""
    def out(status: str, reason: str) -> dict[str, Any]:
        return {"status": status, "reason": reason,
                "latest_run": None if latest is None else {
                    "run": latest.key, "acquired": as_utc(latest.acquired).isoformat(),
                    "verdict": verdict.status if verdict else None}}

    if latest is None:
        return out("NO_DATA", "no runs yet")
    seen = last_file or latest.acquired
    if offline_after is not None and now is not None and as_utc(now) - as_utc(seen) > offline_after:
        hours = (as_utc(now) - as_utc(seen)).total_seconds() / 3600
        return out("OFFLINE", f"no new file for {hours:.1f} h (limit {offline_after.total_seconds() / 3600:g} h)")
    if verdict is None:
        return out("NO_DATA", "the latest run has no verdict yet (no QC values so far)")
    if verdict.status == FAIL:
        return out("DANGER", verdict.summary())
    if verdict.status == WARN:
        return out("WARNING", verdict.summary())
    if verdict.status == NOT_ENOUGH:
        return out("NO_THRESHOLD", verdict.summary() or "not enough runs for limits")
    return out("OK", f"{len(verdict.checked)} metrics within limits")
