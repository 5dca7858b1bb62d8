"""The ``qcdaemon`` command line: thin wrappers over the daemon, the parsers and the admin operations."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qcdaemon import __version__
from qcdaemon.config import Config, load_config
from qcdaemon.errors import ConfigError, QcdaemonError, StoreBusy


def _config(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or getattr(args, "global_config", None)
    return load_config(path, mode="service" if getattr(args, "service", False) else "foreground")


def _read_password(args: argparse.Namespace, *, required: bool) -> str | None:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
        if not pw:
            raise QcdaemonError("no password on standard input")
        return pw
    if not required:
        return None
    if not sys.stdin.isatty():
        raise QcdaemonError("no terminal to ask for a password: use --password-stdin")
    pw = getpass.getpass("Password: ")
    if pw != getpass.getpass("Again: "):
        raise QcdaemonError("the passwords differ")
    if len(pw) < 8:
        raise QcdaemonError("use at least 8 characters")
    return pw


# -- admin operations: directly on the store, or through the running daemon ---------------------


async def _op_direct(cfg: Config, op: str, args: dict[str, Any]) -> Any:
    from qcdaemon.core.security import load_or_create_key
    from qcdaemon.service.adminops import OPS
    from qcdaemon.service.qcservice import QcService
    from qcdaemon.store import AsyncStore

    store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)
    try:
        svc = QcService(store, cfg, load_or_create_key(cfg.files.secret_key))
        return await OPS[op](svc, **args)
    finally:
        await asyncio.to_thread(store.close)


def _op_via_daemon(cfg: Config, op: str, args: dict[str, Any], busy: StoreBusy) -> Any:
    import ssl

    from qcdaemon.service.adminops import read_daemon_info

    info = read_daemon_info(cfg.data_dir)
    secret_file = cfg.files.admin_secret
    if info is None or not secret_file.exists():
        raise QcdaemonError(f"{busy}; and no running qcdaemon answers for {cfg.data_dir}. Stop the other process.")
    try:
        secret = secret_file.read_text().strip()
    except PermissionError:
        raise QcdaemonError(
            f"the daemon is running but {secret_file} is not readable by this user: run the command as the "
            "daemon's user (e.g. sudo -u qcdaemon qcdaemon ...)"
        ) from None
    req = urllib.request.Request(
        info["admin_url"], data=json.dumps({"op": op, "args": args}).encode(), method="POST",
        headers={"X-Qcdaemon-Admin": secret, "Content-Type": "application/json", "Host": "127.0.0.1"},
    )
    ctx = ssl._create_unverified_context() if info["admin_url"].startswith("https") else None  # loopback only
    try:
        with urllib.request.urlopen(req, timeout=120, context=ctx) as resp:
            return json.loads(resp.read())["result"]
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = exc.reason
        raise QcdaemonError(f"the running daemon refused: {detail}") from None
    except urllib.error.URLError as exc:
        raise QcdaemonError(f"{busy}; the daemon at {info['admin_url']} does not answer ({exc.reason})") from None


def run_op(cfg: Config, op: str, **args: Any) -> Any:
    try:
        return asyncio.run(_op_direct(cfg, op, args))
    except StoreBusy as busy:
        return _op_via_daemon(cfg, op, args, busy)


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# -- commands ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from qcdaemon.daemon import run_forever

    return run_forever(_config(args), service=args.service)


def cmd_check_config(args: argparse.Namespace) -> int:
    from qcdaemon.config import transport_problem

    cfg = _config(args)
    problem = transport_problem(cfg)
    if problem:
        raise ConfigError(problem)
    print(f"configuration OK ({cfg.source or 'embedded defaults'}); data in {cfg.data_dir}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    if args.kind == "maxquant":
        from qcdaemon.tools.maxquant_parse import parse_maxquant

        _print(parse_maxquant(Path(args.path)))
    elif args.kind == "rawtools":
        from qcdaemon.tools.rawtools_parse import parse_rawtools

        p = Path(args.path)
        qc = p / "rawtools_qc" if (p / "rawtools_qc").is_dir() else None
        _print(parse_rawtools(p / "rawtools" if (p / "rawtools").is_dir() else p, qc))
    else:
        from qcdaemon.rawfile.cli import main_parse_raw

        return main_parse_raw(args.path, chromatograms=args.chromatograms)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    cfg = _config(args)
    _print(run_op(cfg, "user_add", email=args.email, password=_read_password(args, required=True),
                  admin=args.admin))
    return 0


def cmd_project_add(args: argparse.Namespace) -> int:
    _print(run_op(_config(args), "project_add", name=args.name, description=args.description,
                  members=args.member or []))
    return 0


def cmd_pipeline_add(args: argparse.Namespace) -> int:
    _print(run_op(_config(args), "pipeline_add", project=args.project, name=args.name, fasta=args.fasta,
                  mqpar=args.mqpar, rawtools_args=args.rawtools_args))
    return 0


def cmd_member_add(args: argparse.Namespace) -> int:
    _print(run_op(_config(args), "member_add", project=args.project, email=args.email))
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    print(run_op(_config(args), "token_create", email=args.email)["token"])
    return 0


def cmd_bootstrap_demo(args: argparse.Namespace) -> int:
    cfg = _config(args)
    report = run_op(cfg, "bootstrap_demo", email=args.user, password=_read_password(args, required=False))
    pw = report.pop("generated_password", None)
    saved = cfg.files.demo_password
    if pw:
        from qcdaemon.core.files import write_private

        write_private(saved, f"{args.user} {pw}\n")
    _print(report)
    try:
        user, _, known = saved.read_text().strip().partition(" ")
    except OSError:
        user, known = "", ""
    if user == args.user and known:
        print(f"\nDemo sign-in: {user} / {known}   (kept in {saved})")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    runs = run_op(_config(args), "runs", project=args.project, pipeline=args.pipeline, limit=args.limit)
    if args.json:
        _print(runs)
        return 0
    print(f"{'run':<7} {'state':<11} {'project/pipeline':<32} {'file':<40} stages")
    for r in runs:
        stages = "  ".join(f"{s['stage']}:{s['state']}" for s in r["stages"])
        print(f"{r['run_key']:<7} {r['state']:<11} {r['project'] + '/' + r['pipeline']:<32} {r['name'][:40]:<40} {stages}")
        for s in r["stages"]:
            if s["state"] in ("failed", "done") and s["error"]:  # on a done stage: a note (kept outputs)
                lines = [ln.strip() for ln in s["error"].strip().splitlines() if ln.strip()][: args.error_lines]
                what = "failed" if s["state"] == "failed" else "note"
                print(f"{'':<7} {s['stage']} {what}: " + ("\n" + " " * 10).join(ln[:160] for ln in lines))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    _print(run_op(_config(args), "retry", run_key=args.run_key, stages=args.stage or None))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    _print(run_op(_config(args), "cancel", run_key=args.run_key))
    return 0


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise QcdaemonError(f"{what}: not valid JSON: {text[:80]!r}") from None


def cmd_qc(args: argparse.Namespace) -> int:
    cfg = _config(args)
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
    elif args.sub == "guide-sets":
        result = run_op(cfg, "qc_guide_sets", **scope)
    elif args.sub == "guide-set-add":
        result = run_op(cfg, "qc_guide_set_add", **scope, label=args.label, start=args.start, end=args.end,
                        run_keys=args.run or None)
    elif args.sub == "guide-set-rm":
        result = run_op(cfg, "qc_guide_set_delete", **scope, guide_set=args.guide_set)
    elif args.sub == "annotate":
        result = run_op(cfg, "qc_annotate", **scope, kind=args.kind, time=args.time, text=args.text,
                        author=args.author)
    elif args.sub == "exclude":
        result = run_op(cfg, "qc_exclude", **scope, metric=args.metric, run_keys=args.run_keys,
                        reason=args.reason, undo=args.undo)
    elif args.sub == "rules":
        result = run_op(cfg, "qc_rules", **scope, metric=args.metric, rules=_json_arg(args.rules, "rules"),
                        overrides=_json_arg(args.metric_overrides, "--metric-overrides"))
    else:  # recompute
        result = run_op(cfg, "qc_recompute", **scope)
    _print(result)
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    import shutil

    target = Path(args.target).resolve()
    made = Path(run_op(_config(args), "snapshot")["snapshot"])
    try:
        shutil.copyfile(made, target.with_name(target.name + ".part"))
        target.with_name(target.name + ".part").replace(target)
    except PermissionError as exc:
        raise QcdaemonError(f"the snapshot is in {made}, but it cannot be copied to {target}: {exc.strerror}") from None
    made.unlink(missing_ok=True)
    _print({"snapshot": str(target), "bytes": target.stat().st_size})
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.action != "list" and not args.target:
        raise QcdaemonError(f"alerts {args.action}: give the {'alert id' if args.action == 'ack' else 'channel name'}")
    if args.action == "test":
        result = run_op(cfg, "alerts_test", channel=args.target)
        _print(result)
        return 0 if result["sent"] else 1
    if args.action == "ack":
        _print(run_op(cfg, "alerts_ack", alert_id=args.target))
        return 0
    alerts = run_op(cfg, "alerts_list", state=args.state, limit=args.limit)
    if args.json:
        _print(alerts)
        return 0
    print(f"{'id':<5} {'state':<9} {'ack':<4} {'opened (UTC)':<20} {'rule':<20} title")
    for a in alerts:
        print(f"{a['id']:<5} {a['state']:<9} {'yes' if a['acknowledged_at'] else '':<4} {a['opened_at'][:19]:<20} "
              f"{a['rule'][:20]:<20} {a['title']}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from qcdaemon.system.doctor import run_doctor

    return run_doctor(_config(args))


def cmd_service(args: argparse.Namespace) -> int:
    from qcdaemon import system as svc

    if args.action == "install":
        return svc.install(args.config, args.user, args.dry_run)
    if args.action == "uninstall":
        return svc.uninstall(args.purge, args.dry_run)
    return svc.status()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qcdaemon", description="Instrument-side QC daemon for Thermo RAW files.")
    p.add_argument("--version", action="version", version=f"qcdaemon {__version__}")
    p.add_argument("--config", dest="global_config", metavar="FILE", help="configuration file (also accepted after the command)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help: str, under: Any = sub) -> argparse.ArgumentParser:
        sp = under.add_parser(name, help=help)
        sp.add_argument("--config", help="configuration file (TOML); default: embedded defaults")
        sp.set_defaults(func=func)
        return sp

    sp = add("run", cmd_run, "run the daemon in the foreground")
    sp.add_argument("--service", action="store_true", help="service mode: site-wide dirs, JSON logs to file")
    add("check-config", cmd_check_config, "validate the configuration and exit")
    sp = add("parse", cmd_parse, "print one run's QC values as JSON")
    sp.add_argument("kind", choices=["maxquant", "rawtools", "raw"])
    sp.add_argument("path")
    sp.add_argument("--chromatograms", action="store_true", help="(raw) include the chromatogram points")

    grp = sub.add_parser("user", help="users").add_subparsers(dest="sub", required=True)
    sp = add("add", cmd_user_add, "add a user", grp)
    sp.add_argument("email")
    sp.add_argument("--admin", action="store_true")
    sp.add_argument("--password-stdin", action="store_true")

    grp = sub.add_parser("project", help="projects").add_subparsers(dest="sub", required=True)
    sp = add("add", cmd_project_add, "add a project", grp)
    sp.add_argument("name")
    sp.add_argument("--description", default="")
    sp.add_argument("--member", action="append", help="e-mail of a member (repeatable)")
    sp = add("add-member", cmd_member_add, "add a member to a project", grp)
    sp.add_argument("project", help="project slug")
    sp.add_argument("email")

    grp = sub.add_parser("pipeline", help="pipelines").add_subparsers(dest="sub", required=True)
    sp = add("add", cmd_pipeline_add, "add a pipeline to a project", grp)
    sp.add_argument("--project", required=True, help="project slug")
    sp.add_argument("--name", required=True)
    sp.add_argument("--fasta")
    sp.add_argument("--mqpar", help="MaxQuant parameter template (mqpar.xml)")
    sp.add_argument("--rawtools-args")

    grp = sub.add_parser("token", help="API tokens").add_subparsers(dest="sub", required=True)
    sp = add("create", cmd_token_create, "print the user's API token (creating it if needed)", grp)
    sp.add_argument("email")

    sp = add("bootstrap-demo", cmd_bootstrap_demo, "create the seeded demo project (idempotent)")
    sp.add_argument("--user", default="user@email.com")
    sp.add_argument("--password-stdin", action="store_true")

    sp = add("runs", cmd_runs, "list runs with their stage states")
    sp.add_argument("--project")
    sp.add_argument("--pipeline")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--error-lines", type=int, default=4, help="lines of each failed stage's error excerpt")
    sp = add("retry", cmd_retry, "re-queue a run's failed stages")
    sp.add_argument("run_key")
    sp.add_argument("--stage", action="append")
    sp = add("cancel", cmd_cancel, "cancel a run's queued and running stages")
    sp.add_argument("run_key")
    grp = sub.add_parser("qc", help="quality control: verdicts, status, guide sets, annotations, rules"
                         ).add_subparsers(dest="sub", required=True)
    sp = add("status", cmd_qc, "instrument status per pipeline (OK, WARNING, DANGER, ...)", grp)
    sp.add_argument("--project")
    sp.add_argument("--pipeline")
    sp.add_argument("--json", action="store_true")

    def scoped(name: str, help: str) -> argparse.ArgumentParser:
        p = add(name, cmd_qc, help, grp)
        p.add_argument("project")
        p.add_argument("pipeline")
        return p

    sp = scoped("verdicts", "each run's verdict and reasons")
    sp.add_argument("--run", action="append", help="only this run key (repeatable)")
    sp.add_argument("--json", action="store_true")
    scoped("guide-sets", "the guide sets in force (stored and automatic)")
    sp = scoped("guide-set-add", "add a guide set by acquisition times (UTC) or run keys")
    sp.add_argument("--label", default="")
    sp.add_argument("--start", help="ISO 8601, e.g. 2026-03-01T00:00:00Z")
    sp.add_argument("--end")
    sp.add_argument("--run", action="append", help="a run key of the guide set (repeatable)")
    sp = scoped("guide-set-rm", "remove a stored guide set")
    sp.add_argument("guide_set", help="its id, e.g. gs3")
    sp = scoped("annotate", "record an event (column change, maintenance, ...)")
    sp.add_argument("kind")
    sp.add_argument("time", help="ISO 8601; without an offset it is UTC")
    sp.add_argument("--text", default="")
    sp.add_argument("--author", help="e-mail of the user the annotation is by")
    sp = scoped("exclude", "leave runs out of one metric's limits")
    sp.add_argument("metric")
    sp.add_argument("run_keys", nargs="+")
    sp.add_argument("--reason", default="")
    sp.add_argument("--undo", action="store_true", help="take the runs back into the limits")
    sp = scoped("rules", "set a metric's rules (JSON; null: the defaults)")
    sp.add_argument("metric")
    sp.add_argument("rules", help='e.g. \'[{"rule": "levey_jennings", "warn": 2, "fail": 3}]\' or null')
    sp.add_argument("--metric-overrides", help='catalogue fields as JSON, e.g. \'{"direction": "higher"}\'')
    scoped("recompute", "recompute every verdict of the pipeline")

    sp = add("snapshot", cmd_snapshot, "write a consistent copy of the database (works while running)")
    sp.add_argument("target")
    sp = add("alerts", cmd_alerts, "list alerts, acknowledge one (ack ID), or send a test message (test CHANNEL)")
    sp.add_argument("action", choices=["list", "ack", "test"])
    sp.add_argument("target", nargs="?", help="(ack) the alert id; (test) the channel name")
    sp.add_argument("--state", choices=["open", "resolved"])
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--json", action="store_true")
    sp = add("doctor", cmd_doctor, "check the installation and print a table")
    sp.add_argument("--service", action="store_true", help="check the service-mode locations (site dirs)")

    sp = add("service", cmd_service, "install, remove or inspect the system service")
    sp.add_argument("action", choices=["install", "uninstall", "status"])
    sp.add_argument("--user", help="(install) the account the service runs as")
    sp.add_argument("--dry-run", action="store_true")
    sp.add_argument("--purge", action="store_true", help="(uninstall) also remove data, logs and config")
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
