"""The one clock: naive UTC datetimes as the store keeps them, and wall-clock seconds.

Every "now" in qcdaemon comes from here, so tests can reason about one definition of time.
"""

from __future__ import annotations

import datetime as dt
import time


def utcnow() -> dt.datetime:
    """Now in UTC without tzinfo (DuckDB ``TIMESTAMP`` columns hold UTC, naive)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def wall() -> float:
    """Seconds since the epoch (for signed tokens, rate limits and file ages)."""
    return time.time()
