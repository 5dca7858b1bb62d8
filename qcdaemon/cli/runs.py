"""``runs``, ``retry`` and ``cancel``: what the engine did with each file, and changing it."""

from __future__ import annotations

import argparse
from typing import Any

from qcdaemon.cli.common import Subparsers, add_command, cli_config, cut, print_json
from qcdaemon.cli.remote import run_op
from qcdaemon.config import Config


def cmd_runs(args: argparse.Namespace) -> int:
    cfg = cli_config(args)
    runs = run_op(cfg, "runs", project=args.project, pipeline=args.pipeline, limit=args.limit)
    if args.json:
        print_json(runs)
        return 0
    print(f"{'run':<7} {'state':<11} {'project/pipeline':<32} {'file':<40} stages")
    for r in runs:
        _print_run(r, args.error_lines)
    if not args.project:
        _print_rejected(cfg, args.limit)
    return 0


def _print_run(r: dict[str, Any], error_lines: int) -> None:
    stages = "  ".join(f"{s['stage']}:{s['state']}" for s in r["stages"])
    where = cut(r["project"] + "/" + r["pipeline"], 32)
    print(f"{r['run_key']:<7} {r['state']:<11} {where:<32} {cut(r['name'], 40):<40} {stages}")
    if r.get("superseded_by"):
        print(f"{'':<7} superseded by {r['superseded_by']} (a later, complete version of the file)")
    for s in r["stages"]:
        if s["state"] in ("failed", "skipped", "done") and s["error"]:  # on a done stage: a note (kept outputs)
            lines = [ln.strip() for ln in s["error"].strip().splitlines() if ln.strip()][:error_lines]
            what = "note" if s["state"] == "done" else s["state"]
            print(f"{'':<7} {s['stage']} {what}: " + ("\n" + " " * 10).join(cut(ln, 160) for ln in lines))


def _print_rejected(cfg: Config, limit: int) -> None:
    rejected = run_op(cfg, "rejected", limit=limit)
    if rejected:
        print(f"\nrejected files (not runs): {len(rejected)}")
        for f in rejected:
            path = f["path"] if len(f["path"]) <= 70 else "\u2026" + f["path"][-69:]  # keep the name
            print(f"  {path:<70} {f['reason']}")


def cmd_retry(args: argparse.Namespace) -> int:
    print_json(run_op(cli_config(args), "retry", run_key=args.run_key, stages=args.stage or None))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    print_json(run_op(cli_config(args), "cancel", run_key=args.run_key))
    return 0


def register(sub: Subparsers) -> None:
    sp = add_command(sub, "runs", cmd_runs,
                     "list runs with their stage states, skip and failure reasons, and rejected files")
    sp.add_argument("--project", metavar="SLUG", help="only this project's runs (with --pipeline)")
    sp.add_argument("--pipeline", metavar="SLUG", help="only this pipeline's runs (with --project)")
    sp.add_argument("--limit", type=int, default=50, help="at most this many runs, newest first (default: %(default)s)")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sp.add_argument("--error-lines", type=int, default=4, help="lines of each failed stage's error excerpt")
    sp = add_command(sub, "retry", cmd_retry, "re-queue a run's failed or cancelled stages")
    sp.add_argument("run_key", help="the run, e.g. rf12")
    sp.add_argument("--stage", action="append", choices=["native", "rawtools", "maxquant"],
                    help="only this stage (repeatable); it must be failed or cancelled")
    sp = add_command(sub, "cancel", cmd_cancel, "cancel a run's queued and running stages")
    sp.add_argument("run_key", help="the run, e.g. rf12")
