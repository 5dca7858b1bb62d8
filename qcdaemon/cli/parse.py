"""``qcdaemon parse KIND``: one run's QC values as JSON, with no daemon and no store."""

from __future__ import annotations

import argparse
from pathlib import Path

from qcdaemon.cli.common import Subparsers, add_command, add_group, print_json, search_params
from qcdaemon.errors import QcdaemonError


def cmd_parse(args: argparse.Namespace) -> int:
    if args.kind == "maxquant":
        from qcdaemon.tools.maxquant_parse import parse_maxquant

        print_json(parse_maxquant(Path(args.path)))
    elif args.kind == "rawtools":
        from qcdaemon.tools.rawtools_parse import parse_rawtools

        p = Path(args.path)
        qc = p / "rawtools_qc" if (p / "rawtools_qc").is_dir() else None
        print_json(parse_rawtools(p / "rawtools" if (p / "rawtools").is_dir() else p, qc))
    elif args.kind == "search":
        from qcdaemon.search.cli import main_parse_search

        if not args.fasta:
            raise QcdaemonError("parse search needs --fasta FILE")
        params = search_params(args.search_params)
        return main_parse_search(args.path, args.fasta, fdr=args.fdr, params=params, cache_dir=args.cache_dir,
                                 psms_out=args.psms)
    else:
        from qcdaemon.rawfile.cli import main_parse_raw

        return main_parse_raw(args.path, chromatograms=args.chromatograms)
    return 0


def register(sub: Subparsers) -> None:
    grp = add_group(sub, "parse", "print one run's QC values as JSON (no daemon, no store)", dest="kind",
                    metavar="KIND", description="print one run's QC values as JSON")
    sp = add_command(grp, "maxquant", cmd_parse, "MaxQuant's QC values from its txt/ output folder", config=False)
    sp.add_argument("path", metavar="TXT_DIR", help="MaxQuant's combined/txt folder (summary.txt, proteinGroups.txt, ...)")
    sp = add_command(grp, "rawtools", cmd_parse, "RawTools' QC values from its output folder", config=False)
    sp.add_argument("path", metavar="DIR", help="a folder with RawTools' outputs (or rawtools/ and rawtools_qc/ in it)")
    sp = add_command(grp, "raw", cmd_parse, "the native (ID-free) metrics of one Thermo RAW file", config=False)
    sp.add_argument("path", metavar="FILE.raw", help="Thermo .raw file")
    sp.add_argument("--chromatograms", action="store_true", help="print the chromatogram points, not only their counts")
    sp = add_command(grp, "search", cmd_parse, "identification QC values of one RAW file searched with Sage",
                     config=False)
    sp.add_argument("path", metavar="FILE.raw", help="Thermo .raw file")
    sp.add_argument("--fasta", required=True, metavar="FILE", help="protein database, FASTA or FASTA.gz")
    sp.add_argument("--fdr", type=float, help="false discovery rate as a fraction (default 0.01)")
    sp.add_argument("--search-params", metavar="JSON", help="search parameters, see docs/search.md")
    sp.add_argument("--cache-dir", metavar="DIR", help="folder for the search database manifests")
    sp.add_argument("--psms", metavar="OUT.parquet", help="also write the PSM table")
