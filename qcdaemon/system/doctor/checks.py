"""One row of ``qcdaemon doctor``: a check's name, status and detail."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GiB, MiB = 1 << 30, 1 << 20


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str
