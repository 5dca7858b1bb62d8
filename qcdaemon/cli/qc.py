"""``qcdaemon qc ACTION``: verdicts, instrument status, guide sets, annotations, exclusions and rules."""

from __future__ import annotations

import argparse
from typing import Any

from qcdaemon.cli.common import Subparsers, add_command, add_group, cli_config, json_arg, print_json
from qcdaemon.cli.remote import run_op
from qcdaemon.config import Config


def cmd_qc(args: argparse.Namespace) -> int:
    cfg = cli_config(args)
    scope = {"project": args.project, "pipeline": args.pipeline}
    if args.sub == "status":
        result = run_op(cfg, "qc_status", **scope)
        if not args.json:
            for p in result:
                latest = p["latest_run"]["run"] if p["latest_run"] else "-"
                print(f"{p['status']:<13} {p['project'] + '/' + p['pipeline']:<40} {latest:<8} {p['reason'][:120]}")
            return 0
    elif args.sub == "verdicts":
        result = run_op(cfg, "qc_verdicts", **scope, run_keys=args.run or None)
        if not args.json:
            for r in result["runs"]:
                print(f"{r['run_key']:<8} {r['verdict'] or '-':<16} {r['name'][:40]:<40} {(r.get('summary') or '')[:160]}")
            return 0
    else:
        result = _qc_change(cfg, args, scope)
    print_json(result)
    return 0


def _qc_change(cfg: Config, args: argparse.Namespace, scope: dict[str, Any]) -> Any:
    """The actions that read or change a pipeline's guide sets, annotations, exclusions and rules."""
    if args.sub == "guide-sets":
        return run_op(cfg, "qc_guide_sets", **scope)
    if args.sub == "guide-set-add":
        return run_op(cfg, "qc_guide_set_add", **scope, label=args.label, start=args.start, end=args.end,
                      run_keys=args.run or None)
    if args.sub == "guide-set-rm":
        return run_op(cfg, "qc_guide_set_delete", **scope, guide_set=args.guide_set)
    if args.sub == "annotate":
        return run_op(cfg, "qc_annotate", **scope, kind=args.kind, time=args.time, text=args.text,
                      author=args.author)
    if args.sub == "exclude":
        return run_op(cfg, "qc_exclude", **scope, metric=args.metric, run_keys=args.run_keys,
                      reason=args.reason, undo=args.undo)
    if args.sub == "rules":
        return run_op(cfg, "qc_rules", **scope, metric=args.metric, rules=json_arg(args.rules, "rules"),
                      overrides=json_arg(args.metric_overrides, "--metric-overrides"))
    return run_op(cfg, "qc_recompute", **scope)


def register(sub: Subparsers) -> None:
    grp = add_group(sub, "qc", "quality control: verdicts, status, guide sets, annotations, rules", metavar=None)
    sp = add_command(grp, "status", cmd_qc, "instrument status per pipeline (OK, WARNING, DANGER, ...)")
    sp.add_argument("--project", metavar="SLUG", help="only this project's pipelines")
    sp.add_argument("--pipeline", metavar="SLUG", help="only this pipeline (with --project)")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def scoped(name: str, help: str) -> argparse.ArgumentParser:
        p = add_command(grp, name, cmd_qc, help)
        p.add_argument("project", help="project slug")
        p.add_argument("pipeline", help="pipeline slug")
        return p

    sp = scoped("verdicts", "each run's verdict and reasons")
    sp.add_argument("--run", action="append", help="only this run key (repeatable)")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    scoped("guide-sets", "the guide sets in force (stored and automatic)")
    sp = scoped("guide-set-add", "add a guide set by acquisition times (UTC) or run keys")
    sp.add_argument("--label", default="", help="a name for the guide set")
    sp.add_argument("--start", help="ISO 8601, e.g. 2026-03-01T00:00:00Z")
    sp.add_argument("--end", help="ISO 8601, e.g. 2026-03-31T23:59:59Z")
    sp.add_argument("--run", action="append", help="a run key of the guide set (repeatable)")
    sp = scoped("guide-set-rm", "remove a stored guide set")
    sp.add_argument("guide_set", help="its id, e.g. gs3")
    sp = scoped("annotate", "record an event (column change, maintenance, ...)")
    sp.add_argument("kind", help="what happened, e.g. column-change, maintenance, calibration")
    sp.add_argument("time", help="ISO 8601; without an offset it is UTC")
    sp.add_argument("--text", default="", help="a free-text note")
    sp.add_argument("--author", help="e-mail of the user the annotation is by")
    sp = scoped("exclude", "leave runs out of one metric's limits")
    sp.add_argument("metric", help="the metric's name, e.g. MS2_ScanRate")
    sp.add_argument("run_keys", nargs="+", help="the runs, e.g. rf12 rf13")
    sp.add_argument("--reason", default="", help="why they are left out")
    sp.add_argument("--undo", action="store_true", help="take the runs back into the limits")
    sp = scoped("rules", "set a metric's rules (JSON; null: the defaults)")
    sp.add_argument("metric", help="the metric's name")
    sp.add_argument("rules", help='e.g. \'[{"rule": "levey_jennings", "warn": 2, "fail": 3}]\' or null')
    sp.add_argument("--metric-overrides", help='catalogue fields as JSON, e.g. \'{"direction": "higher"}\'')
    scoped("recompute", "recompute every verdict of the pipeline")
