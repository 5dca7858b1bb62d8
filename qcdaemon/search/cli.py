"""``qcdaemon parse search FILE.raw --fasta F [--fdr Q]``: print a run's identification QC values as JSON.

Output: ``{"file", "fasta", "values": {...}, "database": {...}, "seconds": {...}}``; with ``--psms OUT``
the per-run PSM table is also written as Parquet.  The engine runs this module as its low-priority
child process (``python -m qcdaemon.search.cli``), where ``--memory-mb`` also caps the process's data
segment (POSIX ``RLIMIT_DATA``), so a database too large for the PC fails the stage, not the PC.

Exit status: 0 success (also when nothing was identified: ``SearchNote`` says why), 1 a file cannot
be read, 2 bad input (not a RAW file, corrupt FASTA, bad parameters), 3 the search failed or sagepy
is not installed, 4 nothing to search (the RAW file holds no usable MS2 spectrum).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

import pyarrow.parquet as pq

from ..errors import ConfigError
from ..rawfile.reader import CorruptRawFile
from .database import DatabaseCache, DatabaseInfo
from .errors import CorruptFasta, NoMs2Spectra, SearchError
from .metrics import psm_table, search_values
from .params import SearchParams
from .sage import run_search

try:
    import resource
except ImportError:  # Windows: the Job Object of the runner caps the process instead
    resource = None  # type: ignore[assignment]

EXIT_OK, EXIT_UNREADABLE, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NO_MS2 = 0, 1, 2, 3, 4


def main_parse_search(raw: str, fasta: str, *, fdr: float | None = None, params: dict[str, Any] | None = None,
                      cache_dir: str | None = None, psms_out: str | None = None,
                      out: TextIO | None = None, err: TextIO | None = None, cache: DatabaseCache | None = None) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        p = SearchParams.from_mapping(params or {})
        if fdr is not None:
            p = p.replace(fdr=fdr)
        result = run_search(raw, fasta, p, cache=cache if cache is not None else DatabaseCache(cache_dir))
    except NoMs2Spectra as exc:
        print(f"error: {exc}", file=err)
        return EXIT_NO_MS2
    except (ConfigError, CorruptRawFile, CorruptFasta) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_BAD_INPUT
    except SearchError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: cannot read {exc.filename or raw}: {exc.strerror or exc}", file=err)
        return EXIT_UNREADABLE
    if psms_out:
        try:
            pq.write_table(psm_table(result), psms_out)
        except OSError as exc:
            print(f"error: cannot write {psms_out}: {exc}", file=err)
            return EXIT_FAILED
    doc = {
        "file": str(raw), "fasta": str(fasta), "values": search_values(result),
        "database": asdict(result.database), "seconds": result.seconds,
    }
    json.dump(doc, out, indent=2, allow_nan=False)
    out.write("\n")
    print(database_note(result.database), file=err)
    return EXIT_OK


def database_note(info: DatabaseInfo) -> str:
    """The search log's line on the database: reused (held by this process) or built, and its size."""
    how = "reused (held by the warm search worker)" if info.reused else f"built in {info.build_seconds:.1f} s"
    return (f"database {info.key[:12]} of {info.fasta_name}: {how}, {info.peptides} peptides, "
            f"{info.fragments} fragments")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``parse search`` (shared with ``qcdaemon parse``)."""
    parser.add_argument("--fasta", help="protein database (FASTA, plain or .gz)")
    parser.add_argument("--fdr", type=float, help="false discovery rate, a fraction (default 0.01)")
    parser.add_argument("--search-params", metavar="JSON", help="search parameters as a JSON object (see docs/search.md)")
    parser.add_argument("--cache-dir", help="folder for the search database manifests")
    parser.add_argument("--psms", metavar="OUT.parquet", help="also write the PSM table")


def limit_memory(mb: int) -> None:
    if mb and resource is not None and hasattr(resource, "RLIMIT_DATA"):
        limit = mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qcdaemon parse search", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="Thermo .raw file")
    add_arguments(parser)
    parser.add_argument("--memory-mb", type=int, default=0, help="cap this process's data segment (POSIX)")
    args = parser.parse_args(argv)
    if not args.fasta:
        parser.error("--fasta is required")
    try:
        params = json.loads(args.search_params) if args.search_params else {}
    except ValueError as exc:
        parser.error(f"--search-params is not JSON: {exc}")
    limit_memory(args.memory_mb)
    return main_parse_search(args.file, args.fasta, fdr=args.fdr, params=params, cache_dir=args.cache_dir,
                             psms_out=args.psms)


if __name__ == "__main__":
    raise SystemExit(main())
