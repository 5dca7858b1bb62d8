"""Reading MaxQuant's tab-separated tables: values, flags, reporter channels, streaming rows.

Shared by the MaxQuant parsers; a malformed table raises :class:`~qcdaemon.errors.ParseError`
naming the file and the problem.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qcdaemon.errors import ParseError

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_INTEGER = re.compile(r"[+-]?\d+\Z")
_REPORTER = re.compile(r"Reporter intensity corrected (\d+)(?: (.+))?\Z")


def number(text: str | None) -> float | None:
    """A finite float, or ``None`` for empty, ``NaN``, infinite or non-numeric text."""
    if text is None or not _NUMBER.match(text := text.strip()):
        return None
    x = float(text)
    return x if math.isfinite(x) else None


#: Integers beyond this are read as floats (JSON clients lose precision past 2**53 anyway), and
#: no count or intensity a tool reports is physically beyond MAX_MAGNITUDE (see :func:`bounded`).
MAX_EXACT_INT = 2**53
MAX_MAGNITUDE = 1e16


def value(text: str | None) -> int | float | str | None:
    """A cell as int, float or str; empty and ``NaN``/infinite numbers as ``None``; an integer too
    large for a float's exact range as a float."""
    if text is None or not (text := text.strip()) or text in ("NaN", "Infinity", "-Infinity"):
        return None
    if _INTEGER.match(text):
        n = int(text)
        return n if abs(n) <= MAX_EXACT_INT else float(n)
    return number(text) if _NUMBER.match(text) else text


def bounded(path: Path, name: str, x: object, *, nonnegative: bool = True) -> None:
    """Refuse a number outside physical bounds: a negative count, or a magnitude no instrument
    or search reports (e.g. a 29-digit integer): the output is malformed, not a measurement."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return
    if not math.isfinite(x) or abs(x) > MAX_MAGNITUDE or (nonnegative and x < 0):
        raise ParseError(f"{path}: {name} = {x!r} is outside physical bounds; not accepted")


def is_flag(text: str | None) -> bool:
    """MaxQuant marks flags with ``+``."""
    return text is not None and text.strip() == "+"


def reporter_channels(header: Sequence[str]) -> list[list[int]]:
    """Column indices of ``Reporter intensity corrected <n>[ <experiment>]`` grouped by channel,
    channels ascending; within a channel the generic column first, then file order."""
    groups: dict[int, list[tuple[bool, int]]] = {}
    for i, name in enumerate(header):
        if m := _REPORTER.match(name):
            groups.setdefault(int(m[1]), []).append((m[2] is not None, i))
    return [[i for _, i in sorted(groups[n])] for n in sorted(groups)]


def _decode(path: Path, raw: bytes, lineno: int) -> str:
    if b"\x00" in raw:
        raise ParseError(f"{path}: binary data (NUL byte) on line {lineno}; not a text table")
    raw = raw.rstrip(b"\r\n")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass
class Table:
    """An open tab-separated table: header, name -> first index, and a row iterator."""

    path: Path
    header: list[str]
    index: dict[str, int]
    lines: Iterator[bytes]

    def get(self, row: list[str], name: str) -> str | None:
        """The cell of column ``name`` (``None`` if the table has no such column)."""
        i = self.index.get(name)
        return None if i is None else row[i]

    def rows(self) -> Iterator[list[str]]:
        """Data rows as lists of cells; blank lines skipped, ragged rows rejected."""
        for lineno, raw in enumerate(self.lines, start=2):
            if not (line := _decode(self.path, raw, lineno)):
                continue
            cells = line.split("\t")
            if len(cells) != len(self.header):
                raise ParseError(f"{self.path}: line {lineno} has {len(cells)} fields, "
                                 f"the header has {len(self.header)}")
            yield cells


def _check_header(path: Path, header: list[str], required: Iterable[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        hint = " (no tab in the header: not a tab-separated table)" if len(header) == 1 else ""
        raise ParseError(f"{path}: required column(s) {', '.join(map(repr, missing))} "
                         f"missing{hint}")


@contextmanager
def open_table(path: Path, required: Iterable[str]) -> Iterator[Table]:
    """Open a MaxQuant table (plain or gzip) and check its header has ``required`` columns."""
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as fh:
            first = fh.readline()
            if not first.strip():
                raise ParseError(f"{path}: empty file (no header line)")
            text = _decode(path, first, 1).lstrip("\ufeff")
            header = [c.strip() for c in text.split("\t")]
            _check_header(path, header, required)
            twice = sorted({c for i, c in enumerate(header) if c and c in header[:i]})
            if twice:
                raise ParseError(f"{path}: duplicated column(s) {', '.join(map(repr, twice))}; "
                                 "which one holds the value is unknown")
            index: dict[str, int] = {}
            for i, name in enumerate(header):
                index.setdefault(name, i)
            yield Table(path, header, index, iter(fh))
    except (OSError, EOFError, zlib.error) as exc:
        raise ParseError(f"{path}: cannot read: {exc}") from exc


def find_table(txt_dir: Path, name: str) -> Path | None:
    """``txt_dir/name``, else ``txt_dir/name.gz``, else ``None``."""
    for candidate in (txt_dir / name, txt_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


class Moments:
    """Running mean and population standard deviation (Welford), ``None`` values ignored."""

    def __init__(self) -> None:
        self.n, self._mean, self._m2 = 0, 0.0, 0.0

    def add(self, x: float | None) -> None:
        if x is None:
            return
        self.n += 1
        delta = x - self._mean
        self._mean += delta / self.n
        self._m2 += delta * (x - self._mean)

    def mean(self) -> float | None:
        return self._mean if self.n else None

    def sd(self) -> float | None:
        return math.sqrt(self._m2 / self.n) if self.n else None


class ChannelCounter:
    """Per channel, distinct non-empty ids of rows whose channel intensity (max over the
    channel's columns) is > 0 (spec 3.3)."""

    def __init__(self, channels: list[list[int]], id_index: int) -> None:
        self._channels, self._id = channels, id_index
        self._seen: list[set[str]] = [set() for _ in channels]

    def add(self, row: list[str]) -> None:
        if not (ident := row[self._id].strip()):
            return
        for cols, seen in zip(self._channels, self._seen, strict=True):
            if max((number(row[c]) or 0.0) for c in cols) > 0:
                seen.add(ident)

    def counts(self) -> list[int]:
        return [len(seen) for seen in self._seen]
