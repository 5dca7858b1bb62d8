"""Windows: qcdaemon as a Windows service, hosted by the venv's own ``python.exe``.

The service is registered as ``"<venv>\\Scripts\\python.exe" -m qcdaemon.system.windows --config
<file>``; :func:`main` hands the process to the Service Control Manager through
``servicemanager.StartServiceCtrlDispatcher`` (not ``pythonservice.exe``, which has long-standing
venv and DLL problems).  The daemon itself runs ``qcdaemon.daemon.run_service(cfg, stop_event)``
on a worker thread; a stop request sets the event and keeps the SCM informed with
STOP_PENDING wait hints until the daemon has shut down gracefully.

pywin32 is imported only inside the functions that need it, so this module imports (and its logic
is tested) on Linux.  Installation uses ``sc.exe`` and PowerShell through the same ``run(argv)``
seam as systemd, so ``--dry-run`` shows commands an administrator could type.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any

from qcdaemon.config import load_config
from qcdaemon.errors import ConfigError
from qcdaemon.system.plan import (
    Command,
    Host,
    RemoveTree,
    Step,
    execute,
    service_config,
    unpurged_dirs,
)

if TYPE_CHECKING:
    from qcdaemon.config import Config

NAME = "qcdaemon"
DISPLAY_NAME = "qcdaemon (mass-spectrometry QC)"
DESCRIPTION = "Quality control of Thermo RAW files next to the instrument; web UI and API on the configured port."
MODULE = "qcdaemon.system.windows"
DATA_DIR = Path(os.environ.get("ProgramData", r"C:\ProgramData")) / NAME  # noqa: SIM112 (Windows spells it so)
RECOVERY = "restart/5000/restart/5000/restart/5000"  # 1st, 2nd, subsequent failures: restart after 5 s
RESET_SECONDS = 86400  # the failure count resets after a quiet day
STOP_HINT_MS = 10_000  # each STOP_PENDING report asks the SCM for this much more time
STOP_MARGIN = 30  # give up waiting for the daemon after engine.shutdown_timeout + this
BUILTIN_ACCOUNTS = ("LocalSystem", r"NT AUTHORITY\LocalService", r"NT AUTHORITY\NetworkService")
DRIVE_NO_ROOT_DIR, DRIVE_REMOTE = 1, 4  # GetDriveTypeW results
ERROR_SERVICE_DOES_NOT_EXIST = 1060

RunService = Callable[["Config", threading.Event], "int | None"]


# -- pure checks ------------------------------------------------------------------------------


def check_watch_path(path: str, drive_type: Callable[[str], int]) -> str | None:
    """None if a service can watch ``path``; otherwise the reason it cannot.

    UNC paths are fine; a drive letter is fine unless it is a mapped network drive, because each
    logon session has its own drive letters and a service sees none of the user's.
    """
    drive = PureWindowsPath(path).drive
    if drive.startswith(("\\\\?\\", "\\\\.\\")):  # \\?\C:\... or \\?\UNC\server\share
        drive = drive[4:]
        if drive.upper().startswith("UNC\\"):
            return None
    if drive.startswith("\\\\"):
        return None
    if len(drive) != 2 or not PureWindowsPath(path).is_absolute():
        return f"{path}: not an absolute path; use C:\\... for a local folder or \\\\server\\share\\..."
    kind = drive_type(drive + "\\")
    if kind == DRIVE_REMOTE:
        return (f"{path}: {drive} is a mapped network drive; services do not see mapped drive letters; "
                f"use the UNC path \\\\server\\share\\... instead")
    if kind == DRIVE_NO_ROOT_DIR:
        return f"{path}: drive {drive} does not exist"
    return None


def get_drive_type(root: str) -> int:  # pragma: no cover - Windows only
    import ctypes

    return int(ctypes.windll.kernel32.GetDriveTypeW(root))  # type: ignore[attr-defined]


# -- running as a service ---------------------------------------------------------------------


def host_daemon(
    run_service: RunService, cfg: Config, stop: threading.Event, report_stop_pending: Callable[[int], None],
    *, give_up_after: float, poll: float = 1.0,
) -> None:
    """Run the daemon on a worker thread until it ends; the SCM-facing half of the service.

    Once ``stop`` is set, report STOP_PENDING (with a wait hint) every ``poll`` seconds until the
    daemon returns or ``give_up_after`` seconds pass.  Raises when the daemon raised, returned a
    non-zero status, or ended without being asked, so the SCM's recovery actions restart it.
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            rc = run_service(cfg, stop)
        except BaseException as exc:
            failure.append(exc)
        else:
            if rc:
                failure.append(RuntimeError(f"the daemon exited with status {rc}"))

    worker = threading.Thread(target=target, name="qcdaemon", daemon=True)
    worker.start()
    while worker.is_alive() and not stop.is_set():
        stop.wait(poll)
    deadline = time.monotonic() + give_up_after
    while worker.is_alive() and time.monotonic() < deadline:
        report_stop_pending(STOP_HINT_MS)
        worker.join(poll)
    if worker.is_alive():
        raise TimeoutError(f"the daemon did not stop within {give_up_after:.0f} s")
    if failure:
        raise failure[0]
    if not stop.is_set():
        raise RuntimeError("the daemon stopped without being asked to")


def service_class(config_path: str) -> type:  # pragma: no cover - needs pywin32
    """The pywin32 ServiceFramework subclass, built only when running under the SCM."""
    import servicemanager
    import win32service
    import win32serviceutil

    class QcdaemonService(win32serviceutil.ServiceFramework):
        _svc_name_ = NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.stop = threading.Event()

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_HINT_MS)
            self.stop.set()

        SvcShutdown = SvcStop

        def SvcDoRun(self) -> None:
            from qcdaemon.daemon import run_service  # configures logging itself

            servicemanager.LogInfoMsg(f"{NAME}: starting with {config_path}")
            try:
                cfg = load_config(config_path, mode="service")
                host_daemon(
                    run_service, cfg, self.stop,
                    lambda hint: self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=hint),
                    give_up_after=cfg.engine.shutdown_timeout + STOP_MARGIN,
                )
            except BaseException as exc:
                servicemanager.LogErrorMsg(f"{NAME}: stopped with an error: {exc!r}")
                raise  # pywin32 reports SERVICE_STOPPED with an error code -> recovery actions
            servicemanager.LogInfoMsg(f"{NAME}: stopped")

    return QcdaemonService


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - needs pywin32 and the SCM
    """Entry point of ``python -m qcdaemon.system.windows --config FILE`` (started by the SCM)."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--config", default=str(DATA_DIR / "config.toml"))
    args = parser.parse_args(argv)
    import pywintypes
    import servicemanager

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(service_class(os.path.abspath(args.config)))
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except pywintypes.error as exc:
        print(f"{exc.strerror}: this is the Windows service entry point, started by the service manager.\n"
              "Install it with `qcdaemon service install`, or run `qcdaemon run` in a console.", file=sys.stderr)
        return 1
    return 0


# -- install / uninstall / status -------------------------------------------------------------


def image_path(python_exe: str, config_path: str) -> str:
    """The service's command line as the SCM stores it (ImagePath)."""
    return subprocess.list2cmdline([python_exe, "-m", MODULE, "--config", config_path])


def _ps(command: str, check: bool = True) -> Command:
    return Command(("powershell.exe", "-NoProfile", "-NonInteractive", "-Command", command), check=check)


def plan_install(
    python_exe: str, config_path: str, *, installed_image: str | None = None, account: str | None = None,
) -> list[Step]:
    """sc.exe/PowerShell steps for a fresh install (``installed_image`` None) or an upgrade."""
    image = image_path(python_exe, config_path)
    settings = ["binPath=", image, "start=", "delayed-auto", "DisplayName=", DISPLAY_NAME]
    if account:
        settings += ["obj=", account]
    steps: list[Step] = []
    if installed_image is None:
        steps.append(Command(("sc.exe", "create", NAME, *settings)))
    elif installed_image != image:
        steps.append(Command(("sc.exe", "config", NAME, *settings)))
    steps += [
        Command(("sc.exe", "description", NAME, DESCRIPTION)),
        Command(("sc.exe", "failure", NAME, "reset=", str(RESET_SECONDS), "actions=", RECOVERY)),
        Command(("sc.exe", "failureflag", NAME, "1")),  # also recover when it stops with an error
    ]
    changed = installed_image is not None and installed_image != image
    steps.append(_ps(f"Restart-Service -Name {NAME}" if changed else f"Start-Service -Name {NAME}"))
    return steps


def plan_uninstall(*, installed: bool, purge: bool, data_dir: Path) -> list[Step]:
    steps: list[Step] = []
    if installed:
        steps += [_ps(f"Stop-Service -Name {NAME}", check=False), Command(("sc.exe", "delete", NAME))]
    if purge:
        steps.append(RemoveTree(data_dir))
    return steps


@dataclass
class WindowsHost(Host):
    data_dir: Path = DATA_DIR
    drive_type: Callable[[str], int] = field(default_factory=lambda: get_drive_type)


_SC_LINE = re.compile(r"^\s*([A-Z_]+)\s*:\s*(.*?)\s*$", re.MULTILINE)


def _sc_fields(host: Host, verb: str) -> dict[str, str] | None:
    """``sc.exe qc|query qcdaemon`` as a dict of its ``KEY : value`` lines; None if not installed."""
    res = host.run(("sc.exe", verb, NAME))
    if res.returncode == ERROR_SERVICE_DOES_NOT_EXIST:
        return None
    if res.returncode != 0:
        raise OSError(f"sc.exe {verb} {NAME} failed ({res.returncode}): {(res.stdout or res.stderr).strip()}")
    return dict(_SC_LINE.findall(res.stdout))


def _word(value: str | None, index: int) -> str:
    """``"4  RUNNING"`` -> ``RUNNING`` (index 1): sc.exe prints a number and then a name."""
    words = (value or "").split()
    return words[index] if len(words) > index else "?"


def install(config_path: str | None, user: str | None, dry_run: bool, *, host: WindowsHost | None = None) -> int:
    """Install or upgrade the service; 0 on success, 1 without elevation, 2 on a bad config."""
    host = host or WindowsHost()
    if not dry_run and not host.is_admin():
        host.say("service install needs an elevated prompt: right-click the terminal, 'Run as administrator'")
        return 1
    if user and user not in BUILTIN_ACCOUNTS and not user.upper().startswith("NT SERVICE\\"):
        host.say(f"--user {user}: accounts with a password are not set here; install with the default "
                 "(LocalSystem) and set the account in services.msc (Log On tab)")
        return 2
    try:
        cfg, config_abs, steps = service_config(config_path, host.data_dir / "config.toml", host)
    except ConfigError as exc:
        host.say(f"config error: {exc}")
        return 2
    if steps:  # the example config names placeholder folders: the admin edits them afterwards
        host.say(f"note: {config_abs} is the example config: edit its [[watch]] folders (UNC paths), "
                 f"then Restart-Service {NAME}")
    elif problems := [p for w in cfg.watch if (p := check_watch_path(w.path, host.drive_type))]:
        host.say("these watch folders cannot work for a service:\n  " + "\n  ".join(problems))
        return 2
    try:
        current = _sc_fields(host, "qc")
    except OSError as exc:
        host.say(str(exc))
        return 1
    installed = None if current is None else current.get("BINARY_PATH_NAME", "")
    steps += plan_install(host.python, config_abs, installed_image=installed, account=user)
    rc = execute(steps, host, dry_run=dry_run)
    if rc == 0 and not dry_run:
        host.say(f"{NAME} is installed and running (automatic, delayed start).\n"
                 f"  status: qcdaemon service status\n  logs:   {cfg.log_dir}\\qcdaemon.log and the Event Viewer\n"
                 f"  remove: qcdaemon service uninstall [--purge]")
    return rc


_CONFIG_ARG = re.compile(r'--config\s+("(?:[^"\\]|\\.)*"|\S+)')


def image_config_path(image: str) -> str | None:
    """The ``--config`` file of a service command line (as :func:`image_path` wrote it)."""
    m = _CONFIG_ARG.search(image)
    if m is None:
        return None
    arg = m.group(1)
    return arg[1:-1].replace('\\"', '"') if arg.startswith('"') else arg


def uninstall(purge: bool, dry_run: bool, *, host: WindowsHost | None = None) -> int:
    """Stop and delete the service; with ``purge`` also remove the data folder.

    The folder --purge covers is named whether or not the service exists (removed, or already
    absent); data/log folders the config put elsewhere are named too, never deleted.
    """
    host = host or WindowsHost()
    if not dry_run and not host.is_admin():
        host.say("service uninstall needs an elevated prompt ('Run as administrator')")
        return 1
    try:
        fields = _sc_fields(host, "qc")
    except OSError as exc:
        host.say(str(exc))
        return 1
    installed = fields is not None
    if not installed:
        host.say(f"{NAME} is not installed")
    present = host.data_dir.exists()
    if purge:
        named = image_config_path(fields.get("BINARY_PATH_NAME", "")) if fields else None
        config_file = Path(named) if named else host.data_dir / "config.toml"
        if not present:
            host.say(f"--purge: already absent: {host.data_dir}")
        for key, d in unpurged_dirs(config_file, (host.data_dir,)):
            host.say(f"--purge leaves {d} ({key} in {config_file}): remove it yourself if nothing else is in it")
    elif present:
        host.say(f"kept (remove with --purge): {host.data_dir}")
    steps = plan_uninstall(installed=installed, purge=purge and present, data_dir=host.data_dir)
    return execute(steps, host, dry_run=dry_run)


def status(*, host: Host | None = None) -> int:
    """Print the service state; 0 if running, 3 if not installed or not running, 4 if unknown."""
    host = host or Host()
    try:
        state, config = _sc_fields(host, "query"), _sc_fields(host, "qc")
    except OSError as exc:
        host.say(str(exc))
        return 4
    if state is None or config is None:
        host.say(f"{NAME}: not installed; install with: qcdaemon service install (as administrator)")
        return 3
    host.say(f"{NAME}\n  command: {config.get('BINARY_PATH_NAME', '?')}\n"
             f"  state:   {_word(state.get('STATE'), 1)}\n  start:   {_word(config.get('START_TYPE'), 1)}")
    return 0 if _word(state.get("STATE"), 1) == "RUNNING" else 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
