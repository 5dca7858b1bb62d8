"""Tool logs kept at a bounded size (issue 12): the head and the tail of a long log, the middle cut.

A tool's stdout/stderr go straight to files while it runs; once it has exited, :func:`cap_log`
shrinks a file over ``max_bytes`` to its first ``head`` and last ``tail`` bytes with a line saying
how much was cut.  The runner calls it for each log file after the tool ends (never on a file a
stage still has to parse, such as the native stage's JSON on stdout).
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_LOG_BYTES = 4 * 1024 * 1024
KEEP_HEAD = 1024 * 1024
KEEP_TAIL = 2 * 1024 * 1024


def cap_log(path: Path, max_bytes: int = MAX_LOG_BYTES, head: int = KEEP_HEAD, tail: int = KEEP_TAIL) -> int:
    """Shrink ``path`` to head + marker + tail when it is larger than ``max_bytes``; returns the
    bytes cut (0 when nothing was done).  Replaces the file atomically; blocking."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size <= max_bytes or head + tail >= size:
        return 0
    cut = size - head - tail
    tmp = path.with_name(f".{path.name}.cap")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read(head))
        dst.write(f"\n[... {cut} bytes of this log cut by qcdaemon (log cap {max_bytes} bytes) ...]\n".encode())
        src.seek(size - tail)
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    os.replace(tmp, path)
    return cut
