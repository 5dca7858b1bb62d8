"""Recognising a Thermo RAW file from its first bytes (used to validate uploads).

A Thermo RAW file starts with the 16-bit magic ``0xA101`` (bytes ``01 A1``) followed by the
signature ``Finnigan`` in UTF-16LE.  That is all this module checks: it says "this claims to be a
RAW file", not "this RAW file is intact" (:func:`qcdaemon.engine.native.compute_native_metrics`
raises :class:`~qcdaemon.engine.native.CorruptRawFile` for the latter).
"""

from __future__ import annotations

RAW_MAGIC = b"\x01\xa1" + "Finnigan".encode("utf-16-le")

#: How many leading bytes :func:`looks_like_thermo_raw` needs to decide (18).
RAW_MAGIC_LEN = len(RAW_MAGIC)


def looks_like_thermo_raw(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file, at least :data:`RAW_MAGIC_LEN`) is a RAW header.

    Fewer than :data:`RAW_MAGIC_LEN` bytes never match: a file that short cannot be a RAW file.
    """
    return bytes(head[:RAW_MAGIC_LEN]) == RAW_MAGIC
