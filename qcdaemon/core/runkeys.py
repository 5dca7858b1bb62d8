"""Run keys: ``rf12`` names run 12 in the API, the CLI, the logs and the work folders."""

from __future__ import annotations

import re

_RUN_KEY = re.compile(r"rf([0-9]{1,18})")


def run_key(run_id: int) -> str:
    return f"rf{run_id}"


def run_id_of(key: str) -> int | None:
    """The run id in ``key``, or None when ``key`` is not a run key."""
    m = _RUN_KEY.fullmatch(key)
    return int(m.group(1)) if m else None


def is_run_key(key: str) -> bool:
    return _RUN_KEY.fullmatch(key) is not None
