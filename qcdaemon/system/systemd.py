"""Linux: qcdaemon as a systemd system service (``qcdaemon service install|uninstall|status``).

The unit comes from the template ``qcdaemon.service.in`` beside this module; ``packaging/
qcdaemon.service`` at the top of the repository is the same template rendered with the defaults
(a test keeps the two equal).  Install is safe to re-run: an unchanged unit is left alone, a
changed one is rewritten, reloaded and the service restarted.
"""

from __future__ import annotations

import grp
import pwd
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from qcdaemon.config import Config
from qcdaemon.errors import ConfigError
from qcdaemon.system.plan import (
    Command,
    Host,
    RemoveTree,
    Step,
    WriteFile,
    execute,
    service_config,
    unpurged_dirs,
)

NAME = "qcdaemon"
UNIT = f"{NAME}.service"
DEFAULT_USER = NAME
DEFAULT_PYTHON = "/opt/qcdaemon/venv/bin/python"
DEFAULT_CONFIG = "/etc/qcdaemon/config.toml"
STATE_DIR, LOGS_DIR, CONFIG_DIR = Path("/var/lib/qcdaemon"), Path("/var/log/qcdaemon"), Path("/etc/qcdaemon")
STOP_MARGIN = 30  # TimeoutStopSec = engine.shutdown_timeout + this (server, store, scheduler)
_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_HOMES = (PurePosixPath("/root"), PurePosixPath("/home"))


def quote(arg: str, *, exec_line: bool = False) -> str:
    """One word for a unit file: specifiers (and, in Exec lines, $) escaped; quoted if needed."""
    s = arg.replace("%", "%%")
    if exec_line:
        s = s.replace("$", "$$")
    if _SAFE.fullmatch(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(
    *, python: str, config_path: str, user: str = DEFAULT_USER, group: str | None = None,
    timeout_stop_sec: int = 30 + STOP_MARGIN, read_write_paths: Sequence[str] = (),
) -> str:
    """The unit text. Pure: the same arguments always give the same bytes."""
    argv = [python, "-m", "qcdaemon", "run", "--service", "--config", config_path]
    values = {
        "exec_start": " ".join(quote(a, exec_line=True) for a in argv),
        "user": user,
        "group": group or user,
        "timeout_stop_sec": str(timeout_stop_sec),
        "read_write_paths": (
            "ReadWritePaths=" + " ".join(quote(p) for p in read_write_paths)
            if read_write_paths
            else "# ReadWritePaths= not needed: data and logs live in StateDirectory/LogsDirectory."
        ),
    }
    template = resources.files(__package__).joinpath("qcdaemon.service.in").read_text(encoding="utf-8")
    return re.sub(r"@([a-z_]+)@", lambda m: values[m.group(1)], template)


def render_default_unit() -> str:
    """What ``packaging/qcdaemon.service`` in the repository holds."""
    return render_unit(python=DEFAULT_PYTHON, config_path=DEFAULT_CONFIG)


def read_write_paths(cfg: Config) -> list[str]:
    """Data and log dirs the service writes that systemd does not already make writable."""
    out = []
    for key, path, managed in (("data_dir", cfg.data_dir, STATE_DIR), ("log_dir", cfg.log_dir, LOGS_DIR)):
        if not path.is_absolute():
            raise ConfigError(f"paths.{key}: {path} must be an absolute path for a service")
        if not path.is_relative_to(managed):
            out.append(str(path))
    return out


def unit_for(cfg: Config, *, python: str, config_path: str, user: str, group: str) -> str:
    return render_unit(
        python=python, config_path=config_path, user=user, group=group,
        timeout_stop_sec=cfg.engine.shutdown_timeout + STOP_MARGIN, read_write_paths=read_write_paths(cfg),
    )


def _primary_group(user: str) -> str | None:
    try:
        gid = pwd.getpwnam(user).pw_gid
    except KeyError:
        return None
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@dataclass
class SystemdHost(Host):
    unit_path: Path = Path("/etc/systemd/system") / UNIT
    config_dir: Path = CONFIG_DIR
    purge_dirs: tuple[Path, ...] = (STATE_DIR, LOGS_DIR, CONFIG_DIR)
    primary_group: Callable[[str], str | None] = field(default_factory=lambda: _primary_group)


def _systemctl(*args: str, check: bool = True) -> Command:
    return Command(("systemctl", *args), check=check)


def plan_install(config_path: str | None, user: str | None, host: SystemdHost) -> list[Step]:
    """Every step of an install or upgrade, derived from the machine's current state."""
    cfg, config_abs, steps = service_config(config_path, host.config_dir / "config.toml", host)
    if steps:
        host.say(f"note: {config_abs} is the example config: edit its [[watch]] folders, then "
                 f"systemctl restart {NAME}")
    user = user or DEFAULT_USER
    group = host.primary_group(user)
    if group is None:
        group = user
        useradd = ("useradd", "--system", "--user-group", "--home-dir", str(STATE_DIR), "--no-create-home",
                   "--shell", "/usr/sbin/nologin", user)
        steps.insert(0, Command(useradd))
    for d in read_write_paths(cfg):
        if Path(d).exists():
            host.say(f"note: {d} exists; make sure user {user} can write to it")
        else:
            steps.append(Command(("install", "-d", "-o", user, "-g", group, "-m", "0750", d)))
    for what, p in (("python", host.python), ("config", config_abs)):
        if any(PurePosixPath(p).is_relative_to(h) for h in _HOMES):
            host.say(f"warning: the {what} {p} is in a home directory; user {user} may not be able to read it")
    text = unit_for(cfg, python=host.python, config_path=config_abs, user=user, group=group)
    old = host.unit_path.read_text(encoding="utf-8") if host.unit_path.exists() else None
    if old == text:
        host.say(f"{host.unit_path} is up to date")
        return [*steps, _systemctl("enable", "--now", UNIT)]
    steps += [WriteFile(host.unit_path, text, 0o644), _systemctl("daemon-reload")]
    if old is None:
        return [*steps, _systemctl("enable", "--now", UNIT)]
    return [*steps, _systemctl("enable", UNIT), _systemctl("restart", UNIT)]


def install(config_path: str | None, user: str | None, dry_run: bool, *, host: SystemdHost | None = None) -> int:
    """Install or upgrade the service; 0 on success, 1 without root, 2 on a bad config."""
    host = host or SystemdHost()
    if not dry_run and not host.is_admin():
        host.say("service install needs root: run it again with sudo (or try --dry-run first)")
        return 1
    try:
        steps = plan_install(config_path, user, host)
    except ConfigError as exc:
        host.say(f"config error: {exc}")
        return 2
    rc = execute(steps, host, dry_run=dry_run)
    if rc == 0 and not dry_run:
        host.say(f"{NAME} is installed and running.\n"
                 f"  status: qcdaemon service status   (or: systemctl status {NAME})\n"
                 f"  logs:   journalctl -u {NAME} -f   and {LOGS_DIR}/qcdaemon.log\n"
                 f"  check:  sudo -u <service user> qcdaemon doctor --service --config <config>\n"
                 f"  remove: qcdaemon service uninstall [--purge]")
    elif rc != 0:
        host.say(f"install stopped; see: journalctl -u {NAME} -n 50")
    return rc


def unit_config_path(unit_text: str) -> str | None:
    """The ``--config`` file named on the unit's ExecStart line (as :func:`render_unit` wrote it)."""
    for line in unit_text.splitlines():
        if not line.startswith("ExecStart="):
            continue
        try:
            words = [w.replace("$$", "$").replace("%%", "%") for w in shlex.split(line[len("ExecStart="):])]
        except ValueError:
            return None
        return words[words.index("--config") + 1] if "--config" in words[:-1] else None
    return None


def uninstall(purge: bool, dry_run: bool, *, host: SystemdHost | None = None) -> int:
    """Stop, disable and remove the unit; with ``purge`` also data, logs and config.

    The folders --purge covers are listed whether or not the unit exists: removed when present,
    named as already absent otherwise; data/log folders the config put elsewhere are named too.
    """
    host = host or SystemdHost()
    if not dry_run and not host.is_admin():
        host.say("service uninstall needs root: run it again with sudo")
        return 1
    steps: list[Step] = []
    config_file = host.config_dir / "config.toml"
    if host.unit_path.exists():
        named = unit_config_path(host.unit_path.read_text(encoding="utf-8", errors="replace"))
        config_file = Path(named) if named else config_file
        steps += [_systemctl("disable", "--now", UNIT, check=False), RemoveTree(host.unit_path),
                  _systemctl("daemon-reload"), _systemctl("reset-failed", UNIT, check=False)]
    else:
        host.say(f"{NAME} is not installed ({host.unit_path} does not exist)")
    kept = [d for d in host.purge_dirs if d.exists()]
    if purge:
        steps += [RemoveTree(d) for d in kept]
        if absent := [d for d in host.purge_dirs if d not in kept]:
            host.say("--purge: already absent: " + ", ".join(map(str, absent)))
        for key, d in unpurged_dirs(config_file, host.purge_dirs):
            host.say(f"--purge leaves {d} ({key} in {config_file}): remove it yourself if nothing else is in it")
    elif kept:
        host.say("kept (remove with --purge): " + ", ".join(map(str, kept)))
    return execute(steps, host, dry_run=dry_run)


_PROPS = ("LoadState", "ActiveState", "SubState", "UnitFileState", "FragmentPath", "MainPID", "StatusText")


def status(*, host: Host | None = None) -> int:
    """Print the service state; 0 if running, 3 if not installed or not running, 4 if unknown."""
    host = host or Host()
    res = host.run(("systemctl", "show", UNIT, "--property=" + ",".join(_PROPS)))
    if res.returncode != 0:
        host.say(f"cannot ask systemd: {(res.stderr or res.stdout).strip()}")
        return 4
    props = dict(line.partition("=")[::2] for line in res.stdout.splitlines() if "=" in line)
    if props.get("LoadState") == "not-found":
        host.say(f"{NAME}: not installed (no unit {UNIT}); install with: sudo qcdaemon service install")
        return 3
    active = props.get("ActiveState", "unknown")
    state = f"{active} ({props.get('SubState', '?')})"
    if props.get("MainPID", "0") not in ("", "0"):
        state += f", pid {props['MainPID']}"
    lines = [UNIT, f"  unit:    {props.get('FragmentPath', '?')}", f"  state:   {state}",
             f"  enabled: {props.get('UnitFileState', '?')}"]
    if props.get("StatusText"):
        lines.append(f"  status:  {props['StatusText']}")
    lines.append(f"  logs:    journalctl -u {NAME} -f")
    host.say("\n".join(lines))
    return 0 if active == "active" else 3
