"""The ``qcdaemon`` command line: thin wrappers over the daemon, the parsers and the admin operations."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qcdaemon import __version__
from qcdaemon.config import Config, load_config
from qcdaemon.errors import ConfigError, QcdaemonError, StoreBusy

MIN_PASSWORD = 12  # characters (docs: README, "Command line")
CONFIG_ENV = "QCDAEMON_CONFIG"


def site_config_path() -> Path:
    """Where ``qcdaemon service install`` puts the service's configuration (qcdaemon.system)."""
    if os.name == "nt":
        return Path(os.environ.get("ProgramData", r"C:\ProgramData")) / "qcdaemon" / "config.toml"  # noqa: SIM112
    return Path("/etc/qcdaemon/config.toml")


SITE_CONFIG = site_config_path()


def find_config(given: str | None) -> tuple[str | None, str]:
    """The configuration file and how it was found: ``--config``, then ``$QCDAEMON_CONFIG``, then the
    service's configuration path; None: the embedded defaults."""
    if given:
        return given, "--config"
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV], f"${CONFIG_ENV}"
    if SITE_CONFIG.is_file():
        return str(SITE_CONFIG), "the service's configuration path"
    return None, "no configuration file"


def _config(args: argparse.Namespace, *, announce: bool = True) -> Config:
    path, how = find_config(getattr(args, "config", None) or getattr(args, "global_config", None))
    try:
        cfg = load_config(path, mode="service" if getattr(args, "service", False) else "foreground")
    except PermissionError as exc:
        raise ConfigError(f"{path} ({how}) is not readable by this user: {exc.strerror}; run the command as "
                          "the daemon's user, or name another file with --config") from None
    if path is None:
        cfg = with_bundled_rawtools(cfg)
    if announce:
        source = f"config {cfg.source} ({how})" if cfg.source else "embedded defaults (no configuration file)"
        print(f"qcdaemon: data dir {cfg.data_dir}; {source}", file=sys.stderr)
    return cfg


def with_bundled_rawtools(cfg: Config) -> Config:
    """The embedded defaults run the bundled RawTools (pyRawTools under mono) when both are installed."""
    from qcdaemon.tools.rawtools import default_rawtools_command

    if cfg.engine.rawtools.command:
        return cfg
    command = default_rawtools_command()
    if command is None:
        return cfg
    rawtools = dataclasses.replace(cfg.engine.rawtools, command=command)
    return dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, rawtools=rawtools))


def _read_password(args: argparse.Namespace, *, required: bool) -> str | None:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
        if not pw:
            raise QcdaemonError("no password on standard input")
    elif not required:
        return None
    elif not sys.stdin.isatty():
        raise QcdaemonError("no terminal to ask for a password: use --password-stdin")
    else:
        try:
            pw = getpass.getpass("Password: ")
            again = getpass.getpass("Again: ")
        except EOFError:  # Ctrl-D at the prompt
            print(file=sys.stderr)
            raise QcdaemonError("no password given (end of input); nothing was changed") from None
        if pw != again:
            raise QcdaemonError("the passwords differ")
    if len(pw) < MIN_PASSWORD:
        raise QcdaemonError(f"the password is too short: use at least {MIN_PASSWORD} characters")
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
    """Everything ``run`` checks at start-up short of starting: the file, the transport, and each
    [[watch]]'s pipeline and owner (in the store read-only, or asked of the running daemon)."""
    from qcdaemon.config import transport_problem
    from qcdaemon.config_qc import qc_warnings

    cfg = _config(args)
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
    from qcdaemon.system.doctor import read_watch_targets

    found = read_watch_targets(cfg.db_path, [WatchConfig("", q.pipeline, "") for q in cfg.qc]) if cfg.qc else None
    return [f"qc[{i}].pipeline: no pipeline {q.pipeline!r} (use project-slug/pipeline-slug or a uuid; see qcdaemon "
            "list pipelines)" for i, (q, t) in enumerate(zip(cfg.qc, found or [], strict=False)) if not t["pipeline_found"]]


def watch_targets(cfg: Config) -> list[dict[str, Any]]:
    """Per [[watch]]: pipeline_found, owner_found, owner_sees; read-only from the store when no daemon
    holds it, else from the running daemon (which checks its own configuration)."""
    from qcdaemon.system.doctor import read_watch_targets

    if not cfg.watch:
        return []
    found = read_watch_targets(cfg.db_path, cfg.watch)
    if found is None:  # the daemon holds the store: ask it, about this configuration's watches
        watches = [{"path": w.path, "pipeline": w.pipeline, "owner": w.owner} for w in cfg.watch]
        return list(_op_via_daemon(cfg, "watch_check", {"watches": watches}, StoreBusy(f"{cfg.db_path} is in use")))
    return found


def cmd_parse(args: argparse.Namespace) -> int:
    if args.kind == "maxquant":
        from qcdaemon.tools.maxquant_parse import parse_maxquant

        _print(parse_maxquant(Path(args.path)))
    elif args.kind == "rawtools":
        from qcdaemon.tools.rawtools_parse import parse_rawtools

        p = Path(args.path)
        qc = p / "rawtools_qc" if (p / "rawtools_qc").is_dir() else None
        _print(parse_rawtools(p / "rawtools" if (p / "rawtools").is_dir() else p, qc))
    elif args.kind == "search":
        from qcdaemon.search.cli import main_parse_search

        if not args.fasta:
            raise QcdaemonError("parse search needs --fasta FILE")
        try:
            params = json.loads(args.search_params) if args.search_params else None
        except ValueError as exc:
            raise QcdaemonError(f"--search-params is not a JSON object: {exc}") from None
        return main_parse_search(args.path, args.fasta, fdr=args.fdr, params=params, cache_dir=args.cache_dir,
                                 psms_out=args.psms)
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
    try:
        search = json.loads(args.search_params) if args.search_params else None
    except ValueError as exc:
        raise QcdaemonError(f"--search-params is not a JSON object: {exc}") from None
    _print(run_op(_config(args), "pipeline_add", project=args.project, name=args.name, fasta=args.fasta,
                  mqpar=args.mqpar, rawtools_args=args.rawtools_args, search=search))
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
    saved, whose = cfg.files.demo_password, cfg.files.demo_user
    if pw:  # the password alone (so that PASSWORD=$(cat demo-password.txt) works), and whose it is
        from qcdaemon.core.files import write_private

        write_private(saved, pw + "\n")
        write_private(whose, args.user + "\n")
    _print(report)
    try:
        user, known = whose.read_text().strip(), saved.read_text().strip()
    except OSError:
        user, known = "", ""
    if user == args.user and known:
        print(f"\nDemo sign-in: {user} / {known}   (the password is kept in {saved})")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    cfg = _config(args)
    runs = run_op(cfg, "runs", project=args.project, pipeline=args.pipeline, limit=args.limit)
    if args.json:
        _print(runs)
        return 0
    print(f"{'run':<7} {'state':<11} {'project/pipeline':<32} {'file':<40} stages")
    for r in runs:
        stages = "  ".join(f"{s['stage']}:{s['state']}" for s in r["stages"])
        where = cut(r["project"] + "/" + r["pipeline"], 32)
        print(f"{r['run_key']:<7} {r['state']:<11} {where:<32} {cut(r['name'], 40):<40} {stages}")
        if r.get("superseded_by"):
            print(f"{'':<7} superseded by {r['superseded_by']} (a later, complete version of the file)")
        for s in r["stages"]:
            if s["state"] in ("failed", "skipped", "done") and s["error"]:  # on a done stage: a note (kept outputs)
                lines = [ln.strip() for ln in s["error"].strip().splitlines() if ln.strip()][: args.error_lines]
                what = "note" if s["state"] == "done" else s["state"]
                print(f"{'':<7} {s['stage']} {what}: " + ("\n" + " " * 10).join(cut(ln, 160) for ln in lines))
    if not args.project:
        rejected = run_op(cfg, "rejected", limit=args.limit)
        if rejected:
            print(f"\nrejected files (not runs): {len(rejected)}")
            for f in rejected:
                path = f["path"] if len(f["path"]) <= 70 else "\u2026" + f["path"][-69:]  # keep the name
                print(f"  {path:<70} {f['reason']}")
    return 0


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, with a marker where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


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


def cmd_delete(args: argparse.Namespace) -> int:
    _print(run_op(_config(args), "delete_run", run_key=args.run_key))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.what == "watches":
        rows: list[dict[str, Any]] = [
            {"path": w.path, "pipeline": w.pipeline, "owner": w.owner, "exists": Path(w.path).is_dir(),
             "patterns": list(w.patterns), "recursive": w.recursive, "polling": w.polling} for w in cfg.watch
        ]
    else:
        rows = run_op(cfg, f"list_{args.what}")
    if args.json:
        _print(rows)
        return 0
    columns = {"projects": ["slug", "name", "members"], "pipelines": ["project", "slug", "uuid", "path_as_str"],
               "users": ["email", "is_admin"], "watches": ["path", "pipeline", "owner", "exists"]}[args.what]
    table = [[", ".join(v) if isinstance(v, list) else str(v) for v in (r[c] for c in columns)] for r in rows]
    widths = [min(max([len(c), *(len(t[i]) for t in table)]), 60) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for t in table:
        print("  ".join(cut(v, w).ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())
    if not rows:
        print(f"(no {args.what})")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    import shutil

    target = Path(args.target).resolve()
    made = Path(run_op(_config(args), "snapshot")["snapshot"])
    part = target.with_name(target.name + ".part")
    try:
        # the copy is as private as the database: created 0600, never readable by others in between
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.chmod(part, 0o600)
        with os.fdopen(fd, "wb") as out, open(made, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        part.replace(target)
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
    p = argparse.ArgumentParser(
        prog="qcdaemon", description="Instrument-side QC daemon for Thermo RAW files.",
        epilog=f"Configuration: --config FILE, else ${CONFIG_ENV}, else {SITE_CONFIG} if it exists, else the "
               "embedded defaults. Every command says on stderr which data dir it uses.",
    )
    p.add_argument("--version", action="version", version=f"qcdaemon {__version__}")
    p.add_argument("--config", dest="global_config", metavar="FILE", help="configuration file (also accepted after the command)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Any, help: str, under: Any = sub, config: bool = True) -> argparse.ArgumentParser:
        sp = under.add_parser(name, help=help, description=help)
        if config:
            sp.add_argument("--config", metavar="FILE", help=f"configuration file (TOML); default: ${CONFIG_ENV}, "
                                                           f"then {SITE_CONFIG}, then the embedded defaults")
        sp.set_defaults(func=func)
        return sp

    sp = add("run", cmd_run, "run the daemon in the foreground")
    sp.add_argument("--service", action="store_true", help="service mode: site-wide dirs, JSON logs to file")
    add("check-config", cmd_check_config,
        "check the configuration as 'run' does at start-up (file, transport, each watch's pipeline, owner, folder)")

    grp = sub.add_parser("parse", help="print one run's QC values as JSON (no daemon, no store)",
                         description="print one run's QC values as JSON").add_subparsers(
                             dest="kind", required=True, metavar="KIND")
    sp = add("maxquant", cmd_parse, "MaxQuant's QC values from its txt/ output folder", grp, config=False)
    sp.add_argument("path", metavar="TXT_DIR", help="MaxQuant's combined/txt folder (summary.txt, proteinGroups.txt, ...)")
    sp = add("rawtools", cmd_parse, "RawTools' QC values from its output folder", grp, config=False)
    sp.add_argument("path", metavar="DIR", help="a folder with RawTools' outputs (or rawtools/ and rawtools_qc/ in it)")
    sp = add("raw", cmd_parse, "the native (ID-free) metrics of one Thermo RAW file", grp, config=False)
    sp.add_argument("path", metavar="FILE.raw", help="Thermo .raw file")
    sp.add_argument("--chromatograms", action="store_true", help="print the chromatogram points, not only their counts")
    sp = add("search", cmd_parse, "identification QC values of one RAW file searched with Sage", grp, config=False)
    sp.add_argument("path", metavar="FILE.raw", help="Thermo .raw file")
    sp.add_argument("--fasta", required=True, metavar="FILE", help="protein database, FASTA or FASTA.gz")
    sp.add_argument("--fdr", type=float, help="false discovery rate as a fraction (default 0.01)")
    sp.add_argument("--search-params", metavar="JSON", help="search parameters, see docs/search.md")
    sp.add_argument("--cache-dir", metavar="DIR", help="folder for the search database manifests")
    sp.add_argument("--psms", metavar="OUT.parquet", help="also write the PSM table")

    grp = sub.add_parser("user", help="users").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("add", cmd_user_add, "add a user", grp)
    sp.add_argument("email", help="the user's e-mail (their sign-in name)")
    sp.add_argument("--admin", action="store_true", help="an admin sees and changes everything")
    sp.add_argument("--password-stdin", action="store_true",
                    help=f"read the password from the first line of standard input (at least {MIN_PASSWORD} characters)")

    grp = sub.add_parser("project", help="projects").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("add", cmd_project_add, "add a project", grp)
    sp.add_argument("name", help="the project's name; its slug is made from it")
    sp.add_argument("--description", default="", help="a line about the project")
    sp.add_argument("--member", action="append", metavar="EMAIL", help="e-mail of a member (repeatable)")
    sp = add("add-member", cmd_member_add, "add a member to a project", grp)
    sp.add_argument("project", help="project slug")
    sp.add_argument("email", help="the member's e-mail")

    grp = sub.add_parser("pipeline", help="pipelines").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("add", cmd_pipeline_add, "add a pipeline to a project", grp)
    sp.add_argument("--project", required=True, help="project slug")
    sp.add_argument("--name", required=True, help="the pipeline's name; its slug is made from it")
    sp.add_argument("--fasta", metavar="FILE", help="protein sequences (FASTA) for MaxQuant")
    sp.add_argument("--mqpar", metavar="FILE", help="MaxQuant parameter template (mqpar.xml)")
    sp.add_argument("--rawtools-args", metavar="ARGS", help="RawTools arguments (default: -p -q -x -u -l -m -r TMT11 -chro 12TB)")
    sp.add_argument("--search-params", metavar="JSON",
                    help="the pipeline's own search parameters over [engine.search], e.g. '{\"tmt\": \"tmt11\"}'")

    grp = sub.add_parser("token", help="API tokens").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("create", cmd_token_create, "print the user's API token (creating it if needed)", grp)
    sp.add_argument("email", help="the user's e-mail")

    sp = add("list", cmd_list, "list projects, pipelines (with uuids), users or watched folders")
    sp.add_argument("what", choices=["projects", "pipelines", "users", "watches"], help="what to list")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sp = add("bootstrap-demo", cmd_bootstrap_demo, "create the seeded demo project (idempotent)")
    sp.add_argument("--user", default="user@email.com", metavar="EMAIL", help="the demo user (default: %(default)s)")
    sp.add_argument("--password-stdin", action="store_true",
                    help="read the demo user's password from standard input (default: generate one)")

    sp = add("runs", cmd_runs, "list runs with their stage states, skip and failure reasons, and rejected files")
    sp.add_argument("--project", metavar="SLUG", help="only this project's runs (with --pipeline)")
    sp.add_argument("--pipeline", metavar="SLUG", help="only this pipeline's runs (with --project)")
    sp.add_argument("--limit", type=int, default=50, help="at most this many runs, newest first (default: %(default)s)")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sp.add_argument("--error-lines", type=int, default=4, help="lines of each failed stage's error excerpt")
    sp = add("retry", cmd_retry, "re-queue a run's failed or cancelled stages")
    sp.add_argument("run_key", help="the run, e.g. rf12")
    sp.add_argument("--stage", action="append", choices=["native", "rawtools", "maxquant"],
                    help="only this stage (repeatable); it must be failed or cancelled")
    sp = add("cancel", cmd_cancel, "cancel a run's queued and running stages")
    sp.add_argument("run_key", help="the run, e.g. rf12")
    grp = sub.add_parser("qc", help="quality control: verdicts, status, guide sets, annotations, rules"
                         ).add_subparsers(dest="sub", required=True)
    sp = add("status", cmd_qc, "instrument status per pipeline (OK, WARNING, DANGER, ...)", grp)
    sp.add_argument("--project", metavar="SLUG", help="only this project's pipelines")
    sp.add_argument("--pipeline", metavar="SLUG", help="only this pipeline (with --project)")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def scoped(name: str, help: str) -> argparse.ArgumentParser:
        p = add(name, cmd_qc, help, grp)
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

    sp = add("delete", cmd_delete, "delete a run with its values and its files in the data folder (admin)")
    sp.add_argument("run_key", help="the run, e.g. rf12")
    sp = add("snapshot", cmd_snapshot, "write a consistent copy of the database (works while running; mode 0600)")
    sp.add_argument("target", metavar="FILE", help="where to write the copy")
    sp = add("alerts", cmd_alerts, "list alerts, acknowledge one (ack ID), or send a test message (test CHANNEL)")
    sp.add_argument("action", choices=["list", "ack", "test"], help="what to do")
    sp.add_argument("target", nargs="?", help="(ack) the alert id; (test) the channel name")
    sp.add_argument("--state", choices=["open", "resolved"], help="(list) only open or only resolved alerts")
    sp.add_argument("--limit", type=int, default=50, help="(list) at most this many alerts (default: %(default)s)")
    sp.add_argument("--json", action="store_true", help="(list) print JSON instead of a table")
    sp = add("doctor", cmd_doctor, "check the installation and print a table")
    sp.add_argument("--service", action="store_true", help="check the service-mode locations (site dirs)")

    sp = add("service", cmd_service, "install, remove or inspect the system service")
    sp.add_argument("action", choices=["install", "uninstall", "status"], help="what to do")
    sp.add_argument("--user", help="(install) the account the service runs as")
    sp.add_argument("--dry-run", action="store_true", help="print every file and command, change nothing")
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
