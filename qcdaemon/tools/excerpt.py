"""Error excerpts of a tool's logs: the part worth showing in the UI (pure; behaviour spec 2.8)."""

from __future__ import annotations

import os
from pathlib import Path

EXCERPT_MAX_CHARS = 16_000
_MARKERS = ("Unhandled Exception", "System.Exception")


def excerpt_text(text: str, *, tail: bool = False) -> str | None:
    """The readable part of a tool's log: the .NET exception if any, else 20 non-empty lines.

    With an ``Unhandled Exception``/``System.Exception`` line: from the non-empty line before it
    through the next 15 non-empty lines.  Otherwise the first (or, with ``tail``, the last) 20
    non-empty lines.  None when there is nothing but whitespace.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    for i, line in enumerate(lines):
        if any(marker in line for marker in _MARKERS):
            return "\n".join(lines[max(i - 1, 0): i + 16])
    return "\n".join(lines[-20:] if tail else lines[:20])


def _read_limited(path: Path, *, tail: bool) -> str:
    try:
        with open(path, "rb") as f:
            if tail:
                f.seek(max(f.seek(0, os.SEEK_END) - EXCERPT_MAX_CHARS, 0))
            return f.read(EXCERPT_MAX_CHARS).decode("utf-8", errors="replace")
    except OSError:
        return ""


def read_excerpt(stdout_path: Path, stderr_path: Path) -> str | None:
    """Excerpt of stderr (its head); if stderr is empty, of stdout (its tail: errors come last)."""
    return excerpt_text(_read_limited(stderr_path, tail=False)) or excerpt_text(
        _read_limited(stdout_path, tail=True), tail=True
    )
