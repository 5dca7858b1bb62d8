"""MaxQuant's tab-separated tables read into Arrow string columns, and the cell conversions of
:mod:`~qcdaemon.tools.tsv` (``number``, ``value``, ``is_flag``) done a whole column at a time.

Each conversion gives exactly what the per-cell function gives: the cases Arrow cannot decide
alike (a non-ASCII cell, a number whose JSON text is not the cell's own text, a string JSON would
escape) are handed to the per-cell function, so they are slower, never different.  The reader
falls back to :class:`~qcdaemon.tools.tsv.Table`'s rows where Arrow refuses the file (a ragged
row, bytes that are not UTF-8, a broken gzip stream): those rows then raise the same
:class:`~qcdaemon.errors.ParseError` (or decode the latin-1 line) as before.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from qcdaemon.tools.tsv import MAX_EXACT_INT, Table, number, value

# the characters str.strip() removes (str.isspace), so a column is trimmed as each cell was
_WHITESPACE = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())
_NUMBER_ASCII = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"  # tsv._NUMBER on ASCII text
_NULL_TEXTS = pa.array(["", "NaN", "Infinity", "-Infinity"])  # value() -> None
# a text tsv._NUMBER matches starts with one of these (and holds no ';', unlike MaxQuant's ID lists)
_NUMBER_START = pa.array(list("0123456789+-."))

BLOCK_BYTES = 1 << 20  # Arrow reads a table in blocks of this size: memory stays bounded


def strip(col: pa.Array) -> pa.Array:
    return pc.utf8_trim(col, characters=_WHITESPACE)


def flags(col: pa.Array | None, n: int) -> pa.Array:
    """``is_flag`` of each cell; all false for a missing column."""
    if col is None:
        return pa.array(np.zeros(n, dtype=bool))
    return pc.equal(strip(col), "+")


def _patched(col: pa.Array, out: pa.Array, todo: pa.Array, cell: object, typ: pa.DataType) -> pa.Array:
    """``out`` with the cells of ``todo`` replaced by the per-cell function's answer."""
    if not pc.any(todo).as_py():
        return out
    values = out.to_pylist()
    raw = col.to_pylist()
    for i in np.flatnonzero(todo.to_numpy(zero_copy_only=False)):
        values[i] = cell(raw[i])  # type: ignore[operator]
    return pa.array(values, typ)


_DIGIT_BYTES = np.zeros(256, dtype=bool)
_DIGIT_BYTES[list(b"0123456789")] = True
_ID_LIST_BYTES = _DIGIT_BYTES.copy()
_ID_LIST_BYTES[ord(";")] = True
_NUMERIC_BYTES = _DIGIT_BYTES.copy()
_NUMERIC_BYTES[list(b"+-.eE")] = True


def _bytes_in(s: pa.Array, allowed: np.ndarray) -> bool:
    """Every byte of every cell is one of ``allowed`` (a 256-entry table): a test on the data
    buffer before a cast that would fail (Arrow's failing cast costs a millisecond)."""
    offsets, data = s.buffers()[1], s.buffers()[2]
    if data is None or not data.size or offsets is None:
        return True
    ends = np.frombuffer(offsets, np.int32)[s.offset:s.offset + len(s) + 1]
    return bool(allowed[np.frombuffer(data, np.uint8)[ends[0]:ends[-1]]].all())


def _nullish(s: pa.Array) -> pa.Array:
    return pc.is_in(s, value_set=_NULL_TEXTS)


def _try_cast(s: pa.Array, typ: pa.DataType) -> pa.Array | None:
    try:
        return pc.cast(s, typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def numbers(col: pa.Array | None, n: int) -> pa.Array:
    """``number`` of each cell: a finite float or null; all null for a missing column."""
    if col is None:
        return pa.nulls(n, pa.float64())
    if _bytes_in(col, _NUMERIC_BYTES):  # digits, signs, points, exponents only: no space to strip
        empty = np.diff(np.frombuffer(col.buffers()[1], np.int32)[col.offset:col.offset + len(col) + 1]) == 0
        fast = _try_cast(pc.if_else(pa.array(empty), "0", col) if empty.any() else col, pa.float64())
        if fast is not None:
            bad = empty | ~np.isfinite(fast.to_numpy(zero_copy_only=False))
            return pc.if_else(pa.array(bad), pa.scalar(None, pa.float64()), fast) if bad.any() else fast
    s = strip(col)
    null = _nullish(s)
    filled = pc.if_else(null, "0", s)
    x = _try_cast(filled, pa.float64()) if _bytes_in(filled, _NUMERIC_BYTES) else None
    todo = None
    if x is None:  # a column with text in it: the cells tsv._NUMBER matches, per cell where not ASCII
        ascii_ = pc.string_is_ascii(s)
        ok = pc.and_(ascii_, pc.match_substring_regex(s, _NUMBER_ASCII))
        x = pc.cast(pc.if_else(ok, s, pa.scalar(None, pa.string())), pa.float64())
        todo = pc.invert(ascii_)
    x = pc.if_else(pc.and_(pc.is_finite(x), pc.invert(null)), x, pa.scalar(None, pa.float64()))
    return x if todo is None else _patched(col, x, todo, number, pa.float64())


def _json_cell(text: str | None) -> str:
    return json.dumps(value(text))


def _canonical_ints(s: pa.Array, digits: pa.Array) -> pa.Array:
    """Cells that are the text of an integer within 2**53 (their JSON text is themselves)."""
    subset = pc.filter(s, digits)
    ints = _try_cast(subset, pa.int64())
    if ints is None:
        return pa.array(np.zeros(len(s), dtype=bool))
    canon = pc.and_(pc.equal(pc.cast(ints, pa.string()), subset), pc.less_equal(pc.abs(ints), MAX_EXACT_INT))
    out = np.zeros(len(s), dtype=bool)
    out[np.flatnonzero(digits.to_numpy(zero_copy_only=False))] = canon.to_numpy(zero_copy_only=False)
    return pa.array(out)


def _canonical_floats(s: pa.Array) -> pa.Array | None:
    """For a column Arrow reads as numbers: cells whose JSON text (``repr`` of the float, ``str`` of
    an integer) is the cell itself; ``None`` if some cell is no number.  Arrow writes a double as
    its shortest round-trip digits, as ``repr`` does: where that text has a point and no exponent
    and the value is
    in ``repr``'s fixed-notation range (1e-4 <= |x| < 1e16, or 0), the two texts are the same."""
    x = _try_cast(s, pa.float64())
    if x is None:
        return None
    ax = pc.abs(x)
    fixed = pc.and_(pc.or_(pc.equal(ax, 0.0), pc.and_(pc.greater_equal(ax, 1e-4), pc.less(ax, 1e16))),
                    pc.and_(pc.match_substring(s, "."), pc.invert(pc.match_substring(s, "e"))))
    same = pc.and_(fixed, pc.equal(pc.cast(x, pa.string()), s))
    return pc.or_(same, _canonical_ints(s, pc.ascii_is_decimal(s)))


def _id_list_json(col: pa.Array) -> pa.Array:
    """:func:`json_texts` of a column of digits and ';' only (counts, ids, MaxQuant's id lists),
    decided on the bytes: empty -> null; a ';' -> the text quoted; digits -> the integer (the
    text itself when it has no leading zero and at most 15 digits, else per cell)."""
    offsets = np.frombuffer(col.buffers()[1], np.int32)[col.offset:col.offset + len(col) + 1]
    data = col.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    semis = np.concatenate(([0], np.cumsum(raw == ord(";"))))
    lengths = np.diff(offsets)
    empty = lengths == 0
    listed = (semis[offsets[1:]] - semis[offsets[:-1]]) > 0
    first = raw[np.minimum(offsets[:-1], max(len(raw) - 1, 0))] if len(raw) else np.zeros(len(col), np.uint8)
    canon = ~empty & ~listed & (lengths <= 15) & ((first != ord("0")) | (lengths == 1))
    out = col
    if listed.any():
        out = pc.if_else(pa.array(listed), pc.binary_join_element_wise('"', col, '"', ""), col)
    if empty.any():
        out = pc.if_else(pa.array(empty), "null", out)
    return _patched(col, out, pa.array(~(empty | listed | canon)), _json_cell, pa.string())


def json_texts(col: pa.Array | None, n: int) -> pa.Array:
    """``json.dumps(value(cell))`` of each cell; ``null`` for a missing column."""
    if col is None:
        return pa.array(["null"] * n, pa.string())
    if _bytes_in(col, _ID_LIST_BYTES):
        return _id_list_json(col)
    s = strip(col)
    null = _nullish(s)
    filled = pc.if_else(null, "0", s)
    if _bytes_in(filled, _DIGIT_BYTES):  # a column of counts or ids
        as_is: pa.Array | None = _canonical_ints(filled, pa.array(np.ones(n, dtype=bool)))
    else:
        as_is = _canonical_floats(filled) if _bytes_in(filled, _NUMERIC_BYTES) else None
    quoted = pa.array(np.zeros(n, dtype=bool))
    if as_is is None:  # text (or mixed): plain ASCII text that cannot be a number is quoted as it is
        digits = pc.ascii_is_decimal(filled)
        as_is = _canonical_ints(filled, digits)
        plain = pc.and_(pc.ascii_is_printable(filled), pc.invert(pc.or_(pc.match_substring(filled, '"'),
                                                                         pc.match_substring(filled, "\\"))))
        maybe_number = pc.and_(pc.is_in(pc.utf8_slice_codeunits(filled, 0, 1), value_set=_NUMBER_START),
                               pc.invert(pc.match_substring(filled, ";")))
        quoted = pc.and_(plain, pc.invert(pc.or_(digits, maybe_number)))
    out = pc.if_else(null, "null", pc.if_else(as_is, s, pc.binary_join_element_wise('"', s, '"', "")))
    todo = pc.invert(pc.or_(null, pc.or_(as_is, quoted)))
    return _patched(col, out, todo, _json_cell, pa.string())


def reporter_lists(channels: list[pa.Array], n: int) -> pa.Array:
    """Per row the list of its channels' numbers (nulls inside), as ``list<double>``."""
    if not channels:
        return pa.array([[] for _ in range(n)], pa.list_(pa.float64()))
    mat = np.column_stack([c.to_numpy(zero_copy_only=False) for c in channels])  # nulls -> NaN
    flat = pa.array(mat.ravel(), pa.float64(), from_pandas=True)  # NaN -> null (number() never gives NaN)
    return pc.cast(pa.FixedSizeListArray.from_arrays(flat, len(channels)), pa.list_(pa.float64()))


# ------------------------------------------------------------------------------------ reading
class _Watched(io.RawIOBase):
    """The file's bytes as Arrow reads them, watched for what the row reader treats apart: a NUL
    byte (binary data) or bytes that are not UTF-8 (a latin-1 line).  Either makes the read
    ``suspect``: the rows are then taken from the row reader instead."""

    def __init__(self, fh: BinaryIO) -> None:
        super().__init__()
        self._fh = fh
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.suspect = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = self._fh.read(-1 if size is None else size)
        if not self.suspect:
            if b"\x00" in chunk:
                self.suspect = True
            elif not chunk.isascii() or self._utf8.getstate()[0] or not chunk:
                try:
                    self._utf8.decode(chunk, final=not chunk)
                except UnicodeDecodeError:
                    self.suspect = True
        return chunk

    def readinto(self, b: Any) -> int:  # pragma: no cover - Arrow calls read()
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def _reader_pool() -> pa.MemoryPool:
    """The CSV reader's own pool: mimalloc, not the process's default.  The daemon allocates Arrow
    memory from the system pool (``store/memory.py``, so that ``malloc_trim`` returns it after big
    reads); the reader's block buffers from glibc raised the peak of a 200,000-group parse from 353
    to 452 MB (tests/tools/test_parse_memory.py, bound 400).  mimalloc reuses them across blocks."""
    try:
        return pa.mimalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without mimalloc
        return pa.default_memory_pool()


_READER_POOL = _reader_pool()


def _arrow_batches(path: Path, width: int, include: list[int], block_bytes: int
                   ) -> Iterator[tuple[_Watched, list[pa.Array]]]:
    names = [f"c{i}" for i in range(width)]
    with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as fh:
        watched = _Watched(fh)  # type: ignore[arg-type]
        reader = pcsv.open_csv(
            pa.PythonFile(watched, mode="r"),
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=block_bytes, use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False, escape_char=False,
                                            newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(column_types={names[i]: pa.string() for i in include},
                                                include_columns=[names[i] for i in include],
                                                strings_can_be_null=False, quoted_strings_can_be_null=False),
            memory_pool=_READER_POOL,
        )
        try:
            for batch in reader:
                yield watched, list(batch.columns)
        finally:
            reader.close()


def _python_batches(table: Table, include: list[int], skip: int, rows_per_batch: int) -> Iterator[list[pa.Array]]:
    batch: list[list[str]] = []
    for k, row in enumerate(table.rows()):  # raises the ParseError of a malformed line
        if k < skip:
            continue
        batch.append(row)
        if len(batch) >= rows_per_batch:
            yield [pa.array([r[i] for r in batch], pa.string()) for i in include]
            batch = []
    if batch:
        yield [pa.array([r[i] for r in batch], pa.string()) for i in include]


def _spread(width: int, include: list[int], cols: list[pa.Array]) -> list[pa.Array | None]:
    out: list[pa.Array | None] = [None] * width
    for i, c in zip(include, cols, strict=True):
        out[i] = c
    return out


def string_batches(table: Table, columns: Iterable[int] | None = None, block_bytes: int = BLOCK_BYTES,
                   rows_per_batch: int = 50_000) -> Iterator[list[pa.Array | None]]:
    """The data rows of an open table (its header read and checked) as batches of string columns,
    one per header field (``None`` for a field not in ``columns``; all fields by default); blank
    lines skipped.  Arrow reads the file (every field of every row is counted, whichever are
    converted); where it refuses it (a ragged row, a broken gzip stream) or the bytes hold a NUL or
    are not UTF-8, the rest is read row by row from ``table`` (the rows already given skipped),
    which raises the per-line ParseError of a malformed file or decodes a latin-1 line."""
    width = len(table.header)
    include = sorted(set(range(width) if columns is None else columns))
    done = 0
    try:
        for watched, cols in _arrow_batches(table.path, width, include, block_bytes):
            if watched.suspect:
                break
            done += len(cols[0]) if cols else 0
            yield _spread(width, include, cols)
        else:
            return
    except (pa.ArrowException, OSError, EOFError, zlib.error):
        pass
    for cols in _python_batches(table, include, done, rows_per_batch):
        yield _spread(width, include, cols)
