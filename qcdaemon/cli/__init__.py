"""The ``qcdaemon`` command line: thin wrappers over the daemon, the parsers and the admin operations.

One module per command group declares its sub-commands and holds their handlers (``lifecycle``,
``parse``, ``admin``, ``runs``, ``qc``, ``alerts``); ``common`` is what they share (the configuration's
discovery, the password prompt, output), ``remote`` runs an admin operation on the store or through the
running daemon.  :func:`main` is the ``qcdaemon`` entry point.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from qcdaemon import __version__
from qcdaemon.cli import admin, alerts, lifecycle, parse, qc, runs
from qcdaemon.cli.common import CONFIG_ENV, SITE_CONFIG
from qcdaemon.errors import ConfigError, QcdaemonError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qcdaemon", description="Instrument-side QC daemon for Thermo RAW files.",
        epilog=f"Configuration: --config FILE, else ${CONFIG_ENV}, else {SITE_CONFIG} if it exists, else the "
               "embedded defaults. Every command says on stderr which data dir it uses.",
    )
    p.add_argument("--version", action="version", version=f"qcdaemon {__version__}")
    p.add_argument("--config", dest="global_config", metavar="FILE", help="configuration file (also accepted after the command)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # in the order `qcdaemon --help` lists them
    lifecycle.register_daemon(sub)  # run, check-config
    parse.register(sub)
    admin.register_accounts(sub)  # user, project, pipeline, token, list, bootstrap-demo
    runs.register(sub)  # runs, retry, cancel
    qc.register(sub)
    admin.register_data(sub)  # delete, snapshot
    alerts.register(sub)
    lifecycle.register_system(sub)  # doctor, service
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"qcdaemon: configuration error: {exc}", file=sys.stderr)
        return 2
    except QcdaemonError as exc:
        print(f"qcdaemon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `qcdaemon runs | head`
        sys.stderr.close()
        return 0
