"""``run``, ``check-config``, ``doctor`` and ``service``: the daemon and its installation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from qcdaemon.cli.common import Subparsers, add_command, cli_config
from qcdaemon.cli.remote import op_via_daemon
from qcdaemon.config import Config
from qcdaemon.errors import StoreBusy


def cmd_run(args: argparse.Namespace) -> int:
    from qcdaemon.daemon import run_forever

    return run_forever(cli_config(args), service=args.service)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Everything ``run`` checks at start-up short of starting: the file, the transport, and each
    [[watch]]'s pipeline and owner (in the store read-only, or asked of the running daemon)."""
    from qcdaemon.config import transport_problem
    from qcdaemon.config_qc import qc_warnings

    cfg = cli_config(args)
    problems = [p for p in [transport_problem(cfg)] if p]
    warnings: list[str] = []
    for i, w in enumerate(cfg.watch):
        if not Path(w.path).is_dir():
            warnings.append(f"watch[{i}].path: {w.path} does not exist (yet); the daemon starts and watches "
                            "for it to appear")
    for i, t in enumerate(watch_targets(cfg)):
        if not t["pipeline_found"]:
            problems.append(f"watch[{i}].pipeline: no pipeline {t['pipeline']!r} (use project-slug/pipeline-slug "
                            "or a uuid; see qcdaemon list pipelines)")
        if not t["owner_found"]:
            problems.append(f"watch[{i}].owner: no user {t['owner']!r}; add it with 'qcdaemon user add'")
        elif t["pipeline_found"] and not t["owner_sees"]:
            warnings.append(f"watch[{i}].owner: {t['owner']} is not a member of the pipeline's project; the "
                            "daemon makes them one at start")
    problems += qc_pipeline_problems(cfg)  # [[qc]] (issue 9)
    warnings += qc_warnings(cfg.qc)
    for warning in warnings:
        print(f"qcdaemon: warning: {warning}", file=sys.stderr)
    if problems:
        for p in problems:
            print(f"qcdaemon: configuration error: {p}", file=sys.stderr)
        return 2
    print(f"configuration OK ({cfg.source or 'embedded defaults'}); data in {cfg.data_dir}")
    return 0


def qc_pipeline_problems(cfg: Config) -> list[str]:
    """Each [[qc]] names an existing pipeline (read-only from the store; when the daemon holds it, the
    daemon checks at its next start)."""
    from qcdaemon.config import WatchConfig
    from qcdaemon.system.doctor.store import read_watch_targets

    found = read_watch_targets(cfg.db_path, [WatchConfig("", q.pipeline, "") for q in cfg.qc]) if cfg.qc else None
    return [f"qc[{i}].pipeline: no pipeline {q.pipeline!r} (use project-slug/pipeline-slug or a uuid; see qcdaemon "
            "list pipelines)" for i, (q, t) in enumerate(zip(cfg.qc, found or [], strict=False)) if not t["pipeline_found"]]


def watch_targets(cfg: Config) -> list[dict[str, Any]]:
    """Per [[watch]]: pipeline_found, owner_found, owner_sees; read-only from the store when no daemon
    holds it, else from the running daemon (which checks its own configuration)."""
    from qcdaemon.system.doctor.store import read_watch_targets

    if not cfg.watch:
        return []
    found = read_watch_targets(cfg.db_path, cfg.watch)
    if found is None:  # the daemon holds the store: ask it, about this configuration's watches
        watches = [{"path": w.path, "pipeline": w.pipeline, "owner": w.owner} for w in cfg.watch]
        return list(op_via_daemon(cfg, "watch_check", {"watches": watches}, StoreBusy(f"{cfg.db_path} is in use")))
    return found


def cmd_doctor(args: argparse.Namespace) -> int:
    from qcdaemon.system.doctor import run_doctor

    return run_doctor(cli_config(args))


def cmd_service(args: argparse.Namespace) -> int:
    from qcdaemon import system as svc

    if args.action == "install":
        return svc.install(args.config, args.user, args.dry_run)
    if args.action == "uninstall":
        return svc.uninstall(args.purge, args.dry_run)
    return svc.status()


def register_daemon(sub: Subparsers) -> None:
    sp = add_command(sub, "run", cmd_run, "run the daemon in the foreground")
    sp.add_argument("--service", action="store_true", help="service mode: site-wide dirs, JSON logs to file")
    add_command(sub, "check-config", cmd_check_config,
                "check the configuration as 'run' does at start-up (file, transport, each watch's pipeline, owner, folder)")


def register_system(sub: Subparsers) -> None:
    sp = add_command(sub, "doctor", cmd_doctor, "check the installation and print a table")
    sp.add_argument("--service", action="store_true", help="check the service-mode locations (site dirs)")
    sp = add_command(sub, "service", cmd_service, "install, remove or inspect the system service")
    sp.add_argument("action", choices=["install", "uninstall", "status"], help="what to do")
    sp.add_argument("--user", help="(install) the account the service runs as")
    sp.add_argument("--dry-run", action="store_true", help="print every file and command, change nothing")
    sp.add_argument("--purge", action="store_true", help="(uninstall) also remove data, logs and config")
