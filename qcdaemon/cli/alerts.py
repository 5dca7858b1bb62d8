"""``qcdaemon alerts``: list alerts, acknowledge one, send a test message."""

from __future__ import annotations

import argparse

from qcdaemon.cli.common import Subparsers, add_command, cli_config, print_json
from qcdaemon.cli.remote import run_op
from qcdaemon.errors import QcdaemonError


def cmd_alerts(args: argparse.Namespace) -> int:
    cfg = cli_config(args)
    if args.action != "list" and not args.target:
        raise QcdaemonError(f"alerts {args.action}: give the {'alert id' if args.action == 'ack' else 'channel name'}")
    if args.action == "test":
        result = run_op(cfg, "alerts_test", channel=args.target)
        print_json(result)
        return 0 if result["sent"] else 1
    if args.action == "ack":
        print_json(run_op(cfg, "alerts_ack", alert_id=args.target))
        return 0
    alerts = run_op(cfg, "alerts_list", state=args.state, limit=args.limit)
    if args.json:
        print_json(alerts)
        return 0
    print(f"{'id':<5} {'state':<9} {'ack':<4} {'opened (UTC)':<20} {'rule':<20} title")
    for a in alerts:
        print(f"{a['id']:<5} {a['state']:<9} {'yes' if a['acknowledged_at'] else '':<4} {a['opened_at'][:19]:<20} "
              f"{a['rule'][:20]:<20} {a['title']}")
    return 0


def register(sub: Subparsers) -> None:
    sp = add_command(sub, "alerts", cmd_alerts,
                     "list alerts, acknowledge one (ack ID), or send a test message (test CHANNEL)")
    sp.add_argument("action", choices=["list", "ack", "test"], help="what to do")
    sp.add_argument("target", nargs="?", help="(ack) the alert id; (test) the channel name")
    sp.add_argument("--state", choices=["open", "resolved"], help="(list) only open or only resolved alerts")
    sp.add_argument("--limit", type=int, default=50, help="(list) at most this many alerts (default: %(default)s)")
    sp.add_argument("--json", action="store_true", help="(list) print JSON instead of a table")
