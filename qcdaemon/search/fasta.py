"""Read and check a protein FASTA file (plain or gzip-compressed) before Sage digests it.

Sage accepts almost any text and silently digests nothing from a broken file, so the checks that
make a corrupt database a clear failure happen here: the file decodes as text, starts with a ``>``
header, every record has a non-empty sequence of amino-acid letters (IUPAC one-letter codes plus
``*`` as a stop), and there is at least one record.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import CorruptFasta

_SEQUENCE = re.compile(r"^[A-Za-z*]+$")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Fasta:
    path: Path
    data: bytes  # the file's bytes as stored (compressed if it is gzipped): the cache key hashes these
    text: str  # the decompressed FASTA text, as given to Sage
    proteins: int
    residues: int
    decoys: int  # entries whose accession already starts with the decoy tag


def read_fasta(path: Path | str, *, decoy_tag: str = "rev_") -> Fasta:
    """Read ``path``; raises :class:`CorruptFasta` with the reason, OSError when it cannot be read."""
    path = Path(path)
    data = path.read_bytes()
    raw = data
    if data[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptFasta(f"{path.name}: truncated or corrupt gzip file ({exc})") from None
    if b"\x00" in raw:
        raise CorruptFasta(f"{path.name}: binary data, not a FASTA text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFasta(f"{path.name}: not a text file (byte {exc.start} is not UTF-8)") from None
    proteins, residues, decoys = _check(path.name, text, decoy_tag)
    return Fasta(path, data, text, proteins, residues, decoys)


def _check(name: str, text: str, decoy_tag: str) -> tuple[int, int, int]:
    proteins = residues = decoys = 0
    header: str | None = None
    length = 0
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            if header is not None and length == 0:
                raise CorruptFasta(f"{name}: line {number - 1}: record {header[:60]!r} has no sequence")
            header, length = line[1:], 0
            proteins += 1
            decoys += header.startswith(decoy_tag)
            continue
        if header is None:
            raise CorruptFasta(f"{name}: line {number}: sequence before the first '>' header (not a FASTA file?)")
        if not _SEQUENCE.match(line):
            bad = next(c for c in line if not (c.isalpha() or c == "*"))
            raise CorruptFasta(f"{name}: line {number}: {bad!r} is not an amino-acid letter")
        length += len(line)
        residues += len(line)
    if header is not None and length == 0:
        raise CorruptFasta(f"{name}: the last record {header[:60]!r} has no sequence")
    if proteins == 0:
        raise CorruptFasta(f"{name}: no FASTA record ('>' header) in the file")
    return proteins, residues, decoys
