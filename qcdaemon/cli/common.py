"""What every command shares: where the configuration comes from, the password prompt, output helpers
and the one way a sub-command is declared (with its ``--config`` option)."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qcdaemon.config import Config, load_config
from qcdaemon.errors import ConfigError, QcdaemonError

MIN_PASSWORD = 12  # characters (docs: README, "Command line")
CONFIG_ENV = "QCDAEMON_CONFIG"

Handler = Callable[[argparse.Namespace], int]


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


def cli_config(args: argparse.Namespace, *, announce: bool = True) -> Config:
    """The command's configuration (see :func:`find_config`); says on stderr which data dir it uses."""
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


def read_password(args: argparse.Namespace, *, required: bool) -> str | None:
    """From the first line of stdin (``--password-stdin``), else asked twice at the terminal."""
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


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, with a marker where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise QcdaemonError(f"{what}: not valid JSON: {text[:80]!r}") from None


def search_params(text: str | None) -> dict[str, Any] | None:
    """``--search-params``: a JSON object, or None when not given."""
    try:
        return json.loads(text) if text else None
    except ValueError as exc:
        raise QcdaemonError(f"--search-params is not a JSON object: {exc}") from None


Subparsers = Any  # argparse's _SubParsersAction, which it does not export


def add_command(under: Subparsers, name: str, func: Handler, help: str, *, config: bool = True) -> argparse.ArgumentParser:
    """Declare the sub-command ``name`` run by ``func``; with its own ``--config`` unless ``config`` is False."""
    sp: argparse.ArgumentParser = under.add_parser(name, help=help, description=help)
    if config:
        sp.add_argument("--config", metavar="FILE", help=f"configuration file (TOML); default: ${CONFIG_ENV}, "
                                                       f"then {SITE_CONFIG}, then the embedded defaults")
    sp.set_defaults(func=func)
    return sp


def add_group(under: Subparsers, name: str, help: str, *, dest: str = "sub", metavar: str | None = "ACTION",
              description: str | None = None) -> Subparsers:
    """A command with actions of its own (``qcdaemon user add``): the subparsers to add them to."""
    kwargs: dict[str, Any] = {"help": help}
    if description is not None:
        kwargs["description"] = description
    group = under.add_parser(name, **kwargs)
    if metavar is None:
        return group.add_subparsers(dest=dest, required=True)
    return group.add_subparsers(dest=dest, required=True, metavar=metavar)
