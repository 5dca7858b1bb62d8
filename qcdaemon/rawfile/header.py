"""File-level metadata read straight from the RAW file's binary structures.

opentfraw does not expose the instrument identification block ("InstID": instrument name,
serial number, software version), and its ``instrument_model`` is a guess from the device
family (``LTQ Orbitrap Velos`` where Thermo's reader says ``Orbitrap Velos Pro``).  RawTools
reports ``IRawData.GetInstrumentData().Name``, so we read that block ourselves:

    FileHeader (1356 B) -> SeqRow -> ASInfo -> RawFileInfo preamble (run-header addresses)
    -> RunHeader of the MS controller (fixed size per file version) -> InstID

Layout after the public format notes of OpenTFRaw (``docs/format``), checked on the four
files in ``tests/data/raw``.  Every read is bounded; a structure that does not parse gives
``None`` fields (the caller falls back to opentfraw), it never raises past :func:`read_header`
except for the three checks that decide "this is not a RAW file at all".
"""

from __future__ import annotations

import datetime as dt
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from qcdaemon.rawfile.magic import RAW_MAGIC, RAW_MAGIC_LEN

FILE_HEADER_SIZE = 1356
KNOWN_VERSIONS = frozenset({8, 47, 57, 60, 62, 63, 64, 66})
_MAX_STRING_CHARS = 32768  # a longer Pascal string means we are reading garbage
_FILETIME_EPOCH = dt.datetime(1601, 1, 1)
# RunHeader sizes and field offsets (bytes from the RunHeader start) per file version.
_RUN_HEADER_SIZE_V64 = 7576
_RUN_HEADER_SIZE_OLD = 7408
_RH_NTRAILER = 7376
_RH_DATA_ADDR = 7416


class HeaderError(ValueError):
    """The first bytes do not describe a Thermo RAW file (bad magic, size or version)."""


@dataclass(frozen=True)
class StreamLayout:
    """Where the MS controller's per-scan streams are (absolute offsets), from its RunHeader."""

    first_scan: int
    last_scan: int
    scan_events: int  # trailer scan events: one scan event per scan, in scan order
    scan_events_end: int  # the stream that follows (trailer extra); the events end there


@dataclass(frozen=True)
class RawHeader:
    version: int
    created: dt.datetime | None  # acquisition start (audit tag), instrument wall clock, naive
    instrument_model: str | None = None
    instrument_name: str | None = None
    serial_number: str | None = None
    software_version: str | None = None
    in_acquisition: bool = False  # RawFileInfo "IsInAcquisition": the instrument is still writing
    streams: StreamLayout | None = None


class _Reader:
    """Bounded little-endian reads from a seekable binary file."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size, self.pos = fh, size, 0

    def seek(self, pos: int) -> None:
        if not 0 <= pos <= self.size:
            raise ValueError(f"offset {pos} outside the file ({self.size} bytes)")
        self.fh.seek(pos)
        self.pos = pos

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise ValueError(f"read of {n} bytes at {self.pos} runs past the end ({self.size} bytes)")
        data = self.fh.read(n)
        if len(data) != n:
            raise ValueError(f"short read at {self.pos}")
        self.pos += n
        return data

    def u32(self) -> int:
        return int(struct.unpack("<I", self.read(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.read(8))[0])

    def skip(self, n: int) -> None:
        self.seek(self.pos + n)

    def pascal(self) -> str:
        n = self.u32()
        if n > _MAX_STRING_CHARS:
            raise ValueError(f"implausible string length {n} at {self.pos - 4}")
        return self.read(2 * n).decode("utf-16-le", errors="replace").split("\x00", 1)[0]


def read_header(fh: BinaryIO, size: int) -> RawHeader:
    """Validate the file header and read what metadata we can; see the module docstring."""
    r = _Reader(fh, size)
    if size < FILE_HEADER_SIZE:
        raise HeaderError(f"{size} bytes is too short for a RAW file header ({FILE_HEADER_SIZE} bytes)")
    head = r.read(FILE_HEADER_SIZE)
    if head[:RAW_MAGIC_LEN] != RAW_MAGIC:
        raise HeaderError("not a Thermo RAW file (no 01 A1 'Finnigan' signature)")
    version = int(struct.unpack_from("<I", head, 0x24)[0])
    if version not in KNOWN_VERSIONS:
        raise HeaderError(f"unknown RAW file format version {version}")
    created = _filetime(int(struct.unpack_from("<Q", head, 0x28)[0]))
    in_acquisition = _in_acquisition(r, version)
    layout = _layout(r, version)
    if in_acquisition:  # its run header and indices are not final yet: nothing else to check
        return RawHeader(version=version, created=created, in_acquisition=True)
    if layout is not None:
        _check_not_truncated(*layout, size)
    try:
        run_header = _ms_run_header(r, version, *layout) if layout is not None else None
        streams = _streams(r, version, run_header) if run_header is not None else None
        strings = _instrument_strings(r, version, run_header) if run_header is not None else None
    except (ValueError, struct.error, OSError):
        streams = strings = None
    if strings is None:
        return RawHeader(version=version, created=created, streams=streams)
    model, name, serial, software = strings
    return RawHeader(version, created, model or None, name or None, serial or None, software or None,
                     streams=streams)


def file_in_acquisition(path: str | os.PathLike[str]) -> bool:
    """:func:`acquisition_in_progress` of the file at ``path`` (reads a few KB; OSError propagates)."""
    with open(path, "rb") as fh:
        return acquisition_in_progress(fh, os.fstat(fh.fileno()).st_size)


def acquisition_in_progress(fh: BinaryIO, size: int) -> bool:
    """True when the file's RawFileInfo says the instrument is still acquiring into it.

    Xcalibur sets ``IsInAcquisition`` when it creates the file and clears it when the run ends
    (Thermo's reader reports it as ``IRawDataPlus.InAcquisition``).  False for anything that is
    not a readable RAW header: deciding "not a RAW file" is the native reader's job.
    """
    try:
        r = _Reader(fh, size)
        head = r.read(FILE_HEADER_SIZE)
        version = int(struct.unpack_from("<I", head, 0x24)[0])
        if head[:RAW_MAGIC_LEN] != RAW_MAGIC or version not in KNOWN_VERSIONS:
            return False
        return _in_acquisition(r, version)
    except (ValueError, struct.error, OSError):
        return False


def _in_acquisition(r: _Reader, version: int) -> bool:
    """RawFileInfo preamble: i32 method flag, SYSTEMTIME (16 bytes), i32 IsInAcquisition."""
    if version < 57:
        return False
    start = r.pos
    try:
        _skip_seq_row_and_as_info(r, version)
        r.skip(20)
        return r.u32() != 0
    except (ValueError, struct.error, OSError):
        return False
    finally:
        r.seek(start)


def _check_not_truncated(data_addr: int, run_headers: list[int], size: int) -> None:
    """The run header is written last, at the end of the file: a cut file loses it first."""
    if run_headers and 0 < data_addr < size and min(run_headers) >= size:
        raise HeaderError(
            f"truncated: the run header (offset {min(run_headers)}) lies beyond the end of the file ({size} bytes)")


def _filetime(ticks: int) -> dt.datetime | None:
    if ticks <= 0:
        return None
    try:
        return _FILETIME_EPOCH + dt.timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def _skip_seq_row_and_as_info(r: _Reader, version: int) -> None:
    r.skip(64)  # injection data
    for _ in range(14):
        r.pascal()
    if version >= 57:
        r.pascal()
        r.pascal()
        r.skip(4)
    if version >= 60:
        for _ in range(15):
            r.pascal()
    r.skip(24)  # ASInfo preamble
    r.pascal()


def _run_header_addresses(r: _Reader, version: int) -> tuple[int, list[int]]:
    """(data address, run-header addresses) from the RawFileInfo preamble."""
    r.skip(20)  # method-file flag + acquisition date
    if version >= 64:
        r.skip(8)
        controllers = r.u32()
        r.skip(16 + 760)
        data_addr = r.u64()
        r.skip(8)
        addrs = []
        for _ in range(min(max(controllers, 2), 64)):
            addrs.append(r.u64())
            r.skip(8)
        return data_addr, [a for a in addrs[: max(controllers, 1)] if a]
    values = struct.unpack("<10I", r.read(40))
    return values[1], [a for a in (values[6], values[9])[: max(values[2], 1)] if a]


def _ms_run_header(r: _Reader, version: int, data_addr: int, addrs: list[int]) -> int | None:
    """The run header of the MS controller (the one holding scan events or the scan data)."""
    if version < 64:
        return addrs[0] if addrs else None
    for addr in addrs:
        r.seek(addr + _RH_NTRAILER)
        ntrailer = r.u32()
        r.seek(addr + _RH_DATA_ADDR)
        if ntrailer > 0 or r.u64() == data_addr:
            return addr
    return addrs[0] if addrs else None


def _layout(r: _Reader, version: int) -> tuple[int, list[int]] | None:
    """(data address, run-header addresses), or None where the structures do not parse."""
    if version < 57:
        return None
    try:
        _skip_seq_row_and_as_info(r, version)
        return _run_header_addresses(r, version)
    except (ValueError, struct.error, OSError):
        return None


def _streams(r: _Reader, version: int, run_header: int) -> StreamLayout | None:
    """Scan range (SampleInfo) and the trailer scan-event stream bounds of one RunHeader.

    SampleInfo: i16 revision, 2 bytes padding, i32 data set id, i32 first and i32 last scan.
    The stream addresses are u32 at 7368/7372 before version 64 and u64 at 7448/7456 from 64 on
    (the 64-bit block after the 7408-byte RunHeader: spectrum, packet, status log, error log,
    run header, trailer scan events, trailer extra).
    """
    r.seek(run_header + 8)
    first, last = r.u32(), r.u32()
    if version >= 64:
        r.seek(run_header + 7448)
        events, end = r.u64(), r.u64()
    else:
        r.seek(run_header + 7368)
        events, end = r.u32(), r.u32()
    if not (0 < events < end <= r.size):
        events = end = 0  # no scan-event stream (a file without scans)
    return StreamLayout(first, last, events, end)


def _instrument_strings(r: _Reader, version: int, run_header: int) -> tuple[str, str, str, str] | None:
    """(model, name, serial number, software version) from the MS controller's InstID block."""
    r.seek(run_header + (_RUN_HEADER_SIZE_V64 if version >= 64 else _RUN_HEADER_SIZE_OLD))
    r.skip(8)
    has_third_model = r.u32() > 0
    name, model = r.pascal(), r.pascal()  # Thermo: GetInstrumentData().Name, then .Model
    if has_third_model:
        r.pascal()
    serial, software = r.pascal(), r.pascal()
    if not _plausible(model) or not _plausible(name):
        return None
    return model, name, serial, software


def _plausible(text: str) -> bool:
    return 0 < len(text) <= 128 and text.isprintable()
