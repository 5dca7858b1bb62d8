"""``qcdaemon parse raw FILE.raw``: print the native metrics of one RAW file as JSON.

Output: one JSON object ``{"file": ..., "values": {...}, "chromatograms": {...}}``.
``DateAcquired`` is an ISO-8601 string; each chromatogram is its point count, or with
``--chromatograms`` its ``[[retention time (min), intensity], ...]`` list.

Exit status: 0 success, 1 the file cannot be opened, 2 it is not a readable RAW file, 3 it is
still being acquired (its header says acquisition in progress: not finished, not corrupt).
Standalone use: ``python -m qcdaemon.rawfile.cli FILE.raw [--chromatograms]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from qcdaemon.rawfile.native import CorruptRawFile, NativeResult, RawFileInAcquisition, compute_native_metrics

EXIT_OK, EXIT_UNREADABLE, EXIT_CORRUPT, EXIT_IN_ACQUISITION = 0, 1, 2, 3


def main_parse_raw(path: str, *, chromatograms: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Compute and print the metrics of ``path``; returns the process exit status."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        result = compute_native_metrics(Path(path))
    except RawFileInAcquisition as exc:
        print(f"error: {exc}", file=err)
        return EXIT_IN_ACQUISITION
    except CorruptRawFile as exc:
        print(f"error: {exc}", file=err)
        return EXIT_CORRUPT
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=err)
        return EXIT_UNREADABLE
    json.dump(to_jsonable(result, path, chromatograms=chromatograms), out, indent=2, allow_nan=False)
    out.write("\n")
    return EXIT_OK


def to_jsonable(result: NativeResult, path: str, *, chromatograms: bool = False) -> dict[str, Any]:
    """The JSON document printed by :func:`main_parse_raw`."""
    values = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in result.values.items()}
    chroms: dict[str, Any] = {
        name: ([[rt, intensity] for rt, intensity in points] if chromatograms else len(points))
        for name, points in result.chromatograms.items()
    }
    return {"file": str(path), "values": values, "chromatograms": chroms}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``parse raw`` (for the lead's CLI wiring)."""
    parser.add_argument("file", help="Thermo .raw file")
    parser.add_argument("--chromatograms", action="store_true", help="print chromatogram points, not counts")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qcdaemon parse raw", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return main_parse_raw(args.file, chromatograms=args.chromatograms)


if __name__ == "__main__":
    raise SystemExit(main())
