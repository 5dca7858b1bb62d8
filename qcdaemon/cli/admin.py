"""Accounts and the data: ``user``, ``project``, ``pipeline``, ``token``, ``list``, ``bootstrap-demo``,
``delete`` and ``snapshot``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from qcdaemon.cli.common import (
    MIN_PASSWORD,
    Subparsers,
    add_command,
    add_group,
    cli_config,
    cut,
    print_json,
    read_password,
    search_params,
)
from qcdaemon.cli.remote import run_op
from qcdaemon.errors import QcdaemonError


def cmd_user_add(args: argparse.Namespace) -> int:
    cfg = cli_config(args)
    print_json(run_op(cfg, "user_add", email=args.email, password=read_password(args, required=True),
                      admin=args.admin))
    return 0


def cmd_project_add(args: argparse.Namespace) -> int:
    print_json(run_op(cli_config(args), "project_add", name=args.name, description=args.description,
                      members=args.member or []))
    return 0


def cmd_pipeline_add(args: argparse.Namespace) -> int:
    search = search_params(args.search_params)
    print_json(run_op(cli_config(args), "pipeline_add", project=args.project, name=args.name, fasta=args.fasta,
                      mqpar=args.mqpar, rawtools_args=args.rawtools_args, search=search))
    return 0


def cmd_member_add(args: argparse.Namespace) -> int:
    print_json(run_op(cli_config(args), "member_add", project=args.project, email=args.email))
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    print(run_op(cli_config(args), "token_create", email=args.email)["token"])
    return 0


def cmd_bootstrap_demo(args: argparse.Namespace) -> int:
    cfg = cli_config(args)
    report = run_op(cfg, "bootstrap_demo", email=args.user, password=read_password(args, required=False))
    pw = report.pop("generated_password", None)
    saved, whose = cfg.files.demo_password, cfg.files.demo_user
    if pw:  # the password alone (so that PASSWORD=$(cat demo-password.txt) works), and whose it is
        from qcdaemon.core.files import write_private

        write_private(saved, pw + "\n")
        write_private(whose, args.user + "\n")
    print_json(report)
    try:
        user, known = whose.read_text().strip(), saved.read_text().strip()
    except OSError:
        user, known = "", ""
    if user == args.user and known:
        print(f"\nDemo sign-in: {user} / {known}   (the password is kept in {saved})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    cfg = cli_config(args)
    if args.what == "watches":
        rows: list[dict[str, Any]] = [
            {"path": w.path, "pipeline": w.pipeline, "owner": w.owner, "exists": Path(w.path).is_dir(),
             "patterns": list(w.patterns), "recursive": w.recursive, "polling": w.polling} for w in cfg.watch
        ]
    else:
        rows = run_op(cfg, f"list_{args.what}")
    if args.json:
        print_json(rows)
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


def cmd_delete(args: argparse.Namespace) -> int:
    print_json(run_op(cli_config(args), "delete_run", run_key=args.run_key))
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    import shutil

    target = Path(args.target).resolve()
    made = Path(run_op(cli_config(args), "snapshot")["snapshot"])
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
    print_json({"snapshot": str(target), "bytes": target.stat().st_size})
    return 0


def _register_user_and_project(sub: Subparsers) -> None:
    grp = add_group(sub, "user", "users")
    sp = add_command(grp, "add", cmd_user_add, "add a user")
    sp.add_argument("email", help="the user's e-mail (their sign-in name)")
    sp.add_argument("--admin", action="store_true", help="an admin sees and changes everything")
    sp.add_argument("--password-stdin", action="store_true",
                    help=f"read the password from the first line of standard input (at least {MIN_PASSWORD} characters)")

    grp = add_group(sub, "project", "projects")
    sp = add_command(grp, "add", cmd_project_add, "add a project")
    sp.add_argument("name", help="the project's name; its slug is made from it")
    sp.add_argument("--description", default="", help="a line about the project")
    sp.add_argument("--member", action="append", metavar="EMAIL", help="e-mail of a member (repeatable)")
    sp = add_command(grp, "add-member", cmd_member_add, "add a member to a project")
    sp.add_argument("project", help="project slug")
    sp.add_argument("email", help="the member's e-mail")


def register_accounts(sub: Subparsers) -> None:
    """user, project, pipeline, token, list, bootstrap-demo."""
    _register_user_and_project(sub)
    grp = add_group(sub, "pipeline", "pipelines")
    sp = add_command(grp, "add", cmd_pipeline_add, "add a pipeline to a project")
    sp.add_argument("--project", required=True, help="project slug")
    sp.add_argument("--name", required=True, help="the pipeline's name; its slug is made from it")
    sp.add_argument("--fasta", metavar="FILE", help="protein sequences (FASTA) for MaxQuant")
    sp.add_argument("--mqpar", metavar="FILE", help="MaxQuant parameter template (mqpar.xml)")
    sp.add_argument("--rawtools-args", metavar="ARGS", help="RawTools arguments (default: -p -q -x -u -l -m -r TMT11 -chro 12TB)")
    sp.add_argument("--search-params", metavar="JSON",
                    help="the pipeline's own search parameters over [engine.search], e.g. '{\"tmt\": \"tmt11\"}'")

    grp = add_group(sub, "token", "API tokens")
    sp = add_command(grp, "create", cmd_token_create, "print the user's API token (creating it if needed)")
    sp.add_argument("email", help="the user's e-mail")

    sp = add_command(sub, "list", cmd_list, "list projects, pipelines (with uuids), users or watched folders")
    sp.add_argument("what", choices=["projects", "pipelines", "users", "watches"], help="what to list")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sp = add_command(sub, "bootstrap-demo", cmd_bootstrap_demo, "create the seeded demo project (idempotent)")
    sp.add_argument("--user", default="user@email.com", metavar="EMAIL", help="the demo user (default: %(default)s)")
    sp.add_argument("--password-stdin", action="store_true",
                    help="read the demo user's password from standard input (default: generate one)")


def register_data(sub: Subparsers) -> None:
    """delete, snapshot."""
    sp = add_command(sub, "delete", cmd_delete, "delete a run with its values and its files in the data folder (admin)")
    sp.add_argument("run_key", help="the run, e.g. rf12")
    sp = add_command(sub, "snapshot", cmd_snapshot,
                     "write a consistent copy of the database (works while running; mode 0600)")
    sp.add_argument("target", metavar="FILE", help="where to write the copy")
