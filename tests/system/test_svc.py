"""Service layer: sd_notify, the systemd unit and installer, the Windows service logic.

Nothing here needs root, systemd as PID 1 or Windows: commands go through a recording ``run``
seam and every path the installers touch is under ``tmp_path``.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from qcdaemon.config import Config, EngineConfig, PathsConfig, config_from_dict
from qcdaemon.core.sdnotify import sd_notify, watchdog_interval
from qcdaemon.system import plan, systemd, windows

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = """\
[server]
port = 8123

[[watch]]
path = "/data/instrument-1"
pipeline = "lab/qc"
owner = "qc@example.org"
"""


class Recorder:
    """A ``run`` seam: records argv lists and answers from a table of canned results."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str]] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = tuple(argv)
        self.calls.append(argv)
        for prefix, (rc, out) in self.answers.items():
            if argv[: len(prefix)] == prefix:
                return subprocess.CompletedProcess(argv, rc, out, "")
        return subprocess.CompletedProcess(argv, 0, "", "")


# -- sd_notify ---------------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_sd_notify_sends_one_datagram(notify_socket):
    assert sd_notify("READY=1\nSTATUS=watching 2 folders") is True
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=watching 2 folders"


def test_sd_notify_abstract_socket(monkeypatch):
    name = f"qcdaemon-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"


def test_sd_notify_is_a_noop_outside_systemd(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert sd_notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sd_notify("READY=1") is False  # never raises


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # inherited from a parent: not ours
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert watchdog_interval() is None


# -- the unit ----------------------------------------------------------------------------------


def test_repo_copy_of_the_unit_is_the_default_rendering():
    """packaging/qcdaemon.service is generated; regenerate with:
    python -c "from qcdaemon.system.systemd import render_default_unit as r; print(r(), end='')" \
        > packaging/qcdaemon.service
    """
    assert (REPO / "packaging" / "qcdaemon.service").read_text(encoding="utf-8") == systemd.render_default_unit()


def test_unit_has_the_promised_settings():
    unit = systemd.render_default_unit()
    lines = set(unit.splitlines())
    for setting in (
        "Type=notify", "NotifyAccess=main", "WatchdogSec=60", "Restart=on-failure", "RestartSec=5",
        "User=qcdaemon", "Group=qcdaemon", "StateDirectory=qcdaemon", "LogsDirectory=qcdaemon",
        "ConfigurationDirectory=qcdaemon", "ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes",
        "NoNewPrivileges=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
        "ProtectControlGroups=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes", "CPUWeight=20",
        "IOWeight=20", "Nice=10", "KillMode=mixed", "LimitNOFILE=65536", "TimeoutStopSec=60",
        "ExecStart=/opt/qcdaemon/venv/bin/python -m qcdaemon run --service --config /etc/qcdaemon/config.toml",
    ):
        assert setting in lines, setting
    assert not [ln for ln in unit.splitlines() if ln.startswith("MemoryDenyWriteExecute")]
    assert "@" not in unit.replace("User=", "")  # every placeholder filled


def test_unit_follows_the_config():
    cfg = Config(
        paths=PathsConfig(data_dir="/srv/qc data/db", log_dir="/var/log/qcdaemon/sub"),
        engine=EngineConfig(shutdown_timeout=100), mode="service",
    )
    unit = systemd.unit_for(cfg, python="/opt/venv 1/bin/python", config_path="/etc/qc%.toml",
                            user="lab", group="instrument")
    lines = unit.splitlines()
    assert "TimeoutStopSec=130" in lines  # > shutdown_timeout + 15
    assert 'ReadWritePaths="/srv/qc data/db"' in lines  # log dir is under LogsDirectory already
    assert "User=lab" in lines and "Group=instrument" in lines
    assert ('ExecStart="/opt/venv 1/bin/python" -m qcdaemon run --service --config /etc/qc%%.toml'
            in lines)


def test_quote():
    assert systemd.quote("/usr/bin/python3") == "/usr/bin/python3"
    assert systemd.quote("a b") == '"a b"'
    assert systemd.quote('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert systemd.quote("100%") == "100%%"
    assert systemd.quote("$HOME", exec_line=True) == '"$$HOME"'


def test_relative_data_dir_is_refused():
    cfg = Config(paths=PathsConfig(data_dir="data"), mode="service")
    with pytest.raises(Exception, match="paths.data_dir: data must be an absolute path"):
        systemd.read_write_paths(cfg)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    cfg = Config(paths=PathsConfig(data_dir=str(tmp_path / "data")), mode="service")
    unit = systemd.unit_for(cfg, python=sys.executable, config_path=str(tmp_path / "c.toml"),
                            user="qcdaemon", group="qcdaemon")
    path = tmp_path / "qcdaemon.service"
    path.write_text(unit, encoding="utf-8")
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                         capture_output=True, text=True, check=False)
    complaints = [ln for ln in (res.stdout + res.stderr).splitlines() if str(path) in ln]
    assert res.returncode == 0 and not complaints, res.stdout + res.stderr


# -- systemd install / uninstall / status ------------------------------------------------------


def make_host(tmp_path: Path, run: Recorder, *, root: bool = True, user_exists: bool = False) -> systemd.SystemdHost:
    return systemd.SystemdHost(
        run=run, out=io.StringIO(), python="/opt/qcdaemon/venv/bin/python",
        is_admin=lambda: root, example_config=lambda: EXAMPLE,
        unit_path=tmp_path / "systemd" / "qcdaemon.service", config_dir=tmp_path / "etc",
        purge_dirs=(tmp_path / "lib", tmp_path / "log", tmp_path / "etc"),
        primary_group=lambda user: user if user_exists else None,
    )


def test_install_dry_run_prints_everything_and_touches_nothing(tmp_path):
    run = Recorder()
    host = make_host(tmp_path, run, root=False)  # a dry run needs no root
    assert systemd.install(None, None, True, host=host) == 0
    text = host.out.getvalue()
    assert run.calls == []
    assert not any(tmp_path.iterdir())
    assert f"would write {tmp_path / 'etc' / 'config.toml'}" in text and 'pipeline = "lab/qc"' in text
    assert f"would write {host.unit_path}" in text
    assert "| Type=notify" in text and f"--config {tmp_path / 'etc' / 'config.toml'}" in text
    assert "is the example config: edit its [[watch]] folders" in text
    for cmd in ("useradd --system --user-group --home-dir /var/lib/qcdaemon --no-create-home "
                "--shell /usr/sbin/nologin qcdaemon", "systemctl daemon-reload",
                "systemctl enable --now qcdaemon.service"):
        assert f"would run: {cmd}" in text


def test_install_needs_root(tmp_path):
    host = make_host(tmp_path, Recorder(), root=False)
    assert systemd.install(None, None, False, host=host) == 1
    assert "sudo" in host.out.getvalue()


def test_install_is_idempotent(tmp_path):
    run = Recorder()
    host = make_host(tmp_path, run)
    assert systemd.install(None, None, False, host=host) == 0
    assert host.unit_path.read_text() == systemd.unit_for(
        config_from_dict({"server": {"port": 8123}}, mode="service"),
        python=host.python, config_path=str(tmp_path / "etc" / "config.toml"), user="qcdaemon", group="qcdaemon")
    assert (tmp_path / "etc" / "config.toml").read_text() == EXAMPLE
    assert [c[:2] for c in run.calls] == [("useradd", "--system"), ("systemctl", "daemon-reload"),
                                          ("systemctl", "enable")]

    # second run: the user exists, the unit is unchanged -> no rewrite, no reload, no restart
    run.calls.clear()
    host = make_host(tmp_path, run, user_exists=True)
    mtime = host.unit_path.stat().st_mtime_ns
    (tmp_path / "etc" / "config.toml").write_text(EXAMPLE + "\n# edited by the admin\n")
    assert systemd.install(None, None, False, host=host) == 0
    assert run.calls == [("systemctl", "enable", "--now", "qcdaemon.service")]
    assert host.unit_path.stat().st_mtime_ns == mtime
    assert "edited by the admin" in (tmp_path / "etc" / "config.toml").read_text()  # never overwritten
    assert "is up to date" in host.out.getvalue()

    # a new interpreter (upgrade into another venv) -> rewrite, daemon-reload, restart
    run.calls.clear()
    host.python = "/opt/qcdaemon/venv2/bin/python"
    assert systemd.install(None, None, False, host=host) == 0
    assert "venv2" in host.unit_path.read_text()
    assert run.calls == [("systemctl", "daemon-reload"), ("systemctl", "enable", "qcdaemon.service"),
                         ("systemctl", "restart", "qcdaemon.service")]


def test_install_with_explicit_config_and_outside_data_dir(tmp_path):
    cfg_file = tmp_path / "site.toml"
    data = tmp_path / "qcdata"
    cfg_file.write_text(f'[paths]\ndata_dir = "{data}"\n[engine]\nshutdown_timeout = 45\n')
    run = Recorder()
    host = make_host(tmp_path, run, user_exists=True)
    assert systemd.install(str(cfg_file), "lab", False, host=host) == 0
    unit = host.unit_path.read_text()
    assert f"--config {cfg_file}" in unit and "User=lab" in unit and "TimeoutStopSec=75" in unit
    assert f"ReadWritePaths={data}" in unit
    assert ("install", "-d", "-o", "lab", "-g", "lab", "-m", "0750", str(data)) in run.calls
    assert not (tmp_path / "etc" / "config.toml").exists()  # an explicit config is used where it is


def test_install_reports_a_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 0\n")
    host = make_host(tmp_path, Recorder())
    assert systemd.install(str(bad), None, False, host=host) == 2
    assert "server.port" in host.out.getvalue()
    assert not host.unit_path.exists()


def test_install_stops_at_the_first_failing_command(tmp_path):
    run = Recorder({("systemctl", "enable"): (1, "")})
    host = make_host(tmp_path, run, user_exists=True)
    assert systemd.install(None, None, False, host=host) == 1
    assert "journalctl -u qcdaemon" in host.out.getvalue()


def test_uninstall_and_purge(tmp_path):
    run = Recorder()
    host = make_host(tmp_path, run)
    host.unit_path.parent.mkdir(parents=True)
    host.unit_path.write_text("[Unit]\n")
    for d in host.purge_dirs:
        d.mkdir()

    assert systemd.uninstall(True, True, host=host) == 0  # dry run first
    assert host.unit_path.exists() and run.calls == []
    assert f"would remove {tmp_path / 'lib'} (recursively)" in host.out.getvalue()

    assert systemd.uninstall(False, False, host=host) == 0
    assert not host.unit_path.exists()
    assert all(d.exists() for d in host.purge_dirs)
    assert run.calls == [("systemctl", "disable", "--now", "qcdaemon.service"), ("systemctl", "daemon-reload"),
                         ("systemctl", "reset-failed", "qcdaemon.service")]
    assert "kept (remove with --purge)" in host.out.getvalue()

    run.calls.clear()
    assert systemd.uninstall(True, False, host=host) == 0  # already uninstalled: only the purge
    assert run.calls == [] and not any(d.exists() for d in host.purge_dirs)
    assert systemd.uninstall(True, False, host=host) == 0  # nothing left at all
    assert host.out.getvalue().rstrip().endswith("nothing to do")


def test_purge_dry_run_lists_the_folders_when_the_unit_is_absent(tmp_path):
    run = Recorder()
    host = make_host(tmp_path, run, root=False)  # never installed, or uninstalled without --purge
    for d in host.purge_dirs:
        d.mkdir()
    assert systemd.uninstall(True, True, host=host) == 0
    text = host.out.getvalue()
    assert "qcdaemon is not installed" in text and "nothing to do" not in text
    for d in host.purge_dirs:
        assert f"would remove {d} (recursively)" in text
    assert run.calls == [] and all(d.exists() for d in host.purge_dirs)


def test_purge_names_absent_folders_and_the_configured_ones_it_leaves(tmp_path):
    run = Recorder()
    host = make_host(tmp_path, run, root=False)
    host.purge_dirs[0].mkdir()  # data only; no logs, no config folder
    assert systemd.uninstall(True, True, host=host) == 0
    text = host.out.getvalue()
    assert f"would remove {host.purge_dirs[0]} (recursively)" in text
    assert f"--purge: already absent: {host.purge_dirs[1]}, {host.purge_dirs[2]}" in text

    # installed with --config naming a data dir of its own: named, never removed
    data, config = tmp_path / "srv qc", tmp_path / "site %1.toml"
    data.mkdir()
    config.write_text(f'[paths]\ndata_dir = "{data}"\nlog_dir = "{host.purge_dirs[1]}"\n')
    unit = systemd.unit_for(config_from_dict({"paths": {"data_dir": str(data)}}, mode="service"),
                            python=host.python, config_path=str(config), user="qcdaemon", group="qcdaemon")
    assert systemd.unit_config_path(unit) == str(config)
    host.unit_path.parent.mkdir(parents=True)
    host.unit_path.write_text(unit)
    host.out = io.StringIO()
    assert systemd.uninstall(True, True, host=host) == 0
    text = host.out.getvalue()
    assert f"--purge leaves {data} (paths.data_dir in {config})" in text
    assert f"would remove {data}" not in text and "paths.log_dir" not in text  # the log dir is a purged one
    assert run.calls == [] and data.exists()


def test_purge_when_nothing_is_left_names_the_folders(tmp_path):
    host = make_host(tmp_path, Recorder(), root=False)
    assert systemd.uninstall(True, True, host=host) == 0
    text = host.out.getvalue()
    assert "--purge: already absent: " + ", ".join(map(str, host.purge_dirs)) in text
    assert text.rstrip().endswith("nothing to do")


SHOW_RUNNING = """LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled
FragmentPath=/etc/systemd/system/qcdaemon.service
MainPID=4242
StatusText=watching 2 folders, 0 jobs queued
"""


@pytest.mark.parametrize(
    ("rc", "stdout", "expected", "shown"),
    [
        (0, SHOW_RUNNING, 0, "active (running), pid 4242"),
        (0, SHOW_RUNNING.replace("=active", "=failed").replace("=running", "=failed"), 3, "failed (failed)"),
        (0, "LoadState=not-found\nActiveState=inactive\n", 3, "not installed"),
        (1, "", 4, "cannot ask systemd"),
    ],
)
def test_status(rc, stdout, expected, shown):
    run = Recorder({("systemctl", "show"): (rc, stdout)})
    host = plan.Host(run=run, out=io.StringIO())
    assert systemd.status(host=host) == expected
    assert shown in host.out.getvalue()


# -- Windows (logic only; the Win32 calls sit behind injected functions) ----------------------


@pytest.mark.parametrize(
    ("path", "kind", "problem"),
    [
        (r"\\instrument-pc\RawData\QE1", 4, None),
        (r"\\?\UNC\instrument-pc\RawData", 4, None),
        (r"D:\Xcalibur\data", 3, None),
        (r"\\?\D:\Xcalibur\data", 3, None),
        (r"Z:\RawData", 4, "services do not see mapped drive letters; use the UNC path \\\\server\\share\\..."),
        (r"Q:\RawData", 1, "drive Q: does not exist"),
        (r"RawData\QE1", 3, "not an absolute path"),
    ],
)
def test_check_watch_path(path, kind, problem):
    seen: list[str] = []
    result = windows.check_watch_path(path, lambda root: seen.append(root) or kind)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result
    if result is None and not path.startswith("\\\\"):
        assert seen and seen[0].endswith(":\\")


PY = r"C:\Program Files\qcdaemon\venv\Scripts\python.exe"
CFG = r"C:\ProgramData\qcdaemon\config.toml"


def test_windows_image_path_quotes_spaces():
    assert windows.image_path(PY, CFG) == f'"{PY}" -m qcdaemon.system.windows --config {CFG}'


def test_windows_plan_fresh_install():
    steps = windows.plan_install(PY, CFG)
    argvs = [s.argv for s in steps]
    assert argvs[0] == ("sc.exe", "create", "qcdaemon", "binPath=", windows.image_path(PY, CFG),
                        "start=", "delayed-auto", "DisplayName=", windows.DISPLAY_NAME)
    assert ("sc.exe", "failure", "qcdaemon", "reset=", "86400", "actions=",
            "restart/5000/restart/5000/restart/5000") in argvs
    assert ("sc.exe", "failureflag", "qcdaemon", "1") in argvs
    assert argvs[-1][-1] == "Start-Service -Name qcdaemon"


def test_windows_plan_upgrade_and_rerun():
    same = windows.plan_install(PY, CFG, installed_image=windows.image_path(PY, CFG))
    assert not any(s.argv[1] in ("create", "config") for s in same)
    assert same[-1].argv[-1] == "Start-Service -Name qcdaemon"
    moved = windows.plan_install(PY.replace("venv", "venv2"), CFG, installed_image=windows.image_path(PY, CFG),
                                 account=r"NT AUTHORITY\NetworkService")
    assert moved[0].argv[:3] == ("sc.exe", "config", "qcdaemon")
    assert moved[0].argv[-2:] == ("obj=", r"NT AUTHORITY\NetworkService")
    assert moved[-1].argv[-1] == "Restart-Service -Name qcdaemon"


SC_QC = f"""[SC] QueryServiceConfig SUCCESS

SERVICE_NAME: qcdaemon
        TYPE               : 10  WIN32_OWN_PROCESS
        START_TYPE         : 2   AUTO_START  (DELAYED)
        ERROR_CONTROL      : 1   NORMAL
        BINARY_PATH_NAME   : {windows.image_path(PY, CFG)}
        DISPLAY_NAME       : qcdaemon (mass-spectrometry QC)
"""
SC_QUERY = """
SERVICE_NAME: qcdaemon
        TYPE               : 10  WIN32_OWN_PROCESS
        STATE              : 4  RUNNING
                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)
        WIN32_EXIT_CODE    : 0  (0x0)
"""


def win_host(tmp_path, run, *, admin=True, drive=3):
    return windows.WindowsHost(run=run, out=io.StringIO(), python=PY, is_admin=lambda: admin,
                               example_config=lambda: EXAMPLE.replace("/data/instrument-1", r"D:\\RawData"),
                               data_dir=tmp_path / "ProgramData" / "qcdaemon", drive_type=lambda root: drive)


def test_windows_install_dry_run_and_real(tmp_path):
    run = Recorder({("sc.exe", "qc"): (1060, "")})
    host = win_host(tmp_path, run, admin=False)
    assert windows.install(None, None, True, host=host) == 0
    text = host.out.getvalue()
    assert run.calls == [("sc.exe", "qc", "qcdaemon")]  # read-only query only
    assert "would run: " in text and "sc.exe create qcdaemon" in text and "restart/5000" in text
    assert "is the example config: edit its [[watch]] folders" in text
    assert not host.data_dir.exists()
    assert windows.install(None, None, False, host=host) == 1  # not elevated

    host = win_host(tmp_path, run)
    assert windows.install(None, None, False, host=host) == 0
    assert (host.data_dir / "config.toml").exists()
    assert any(c[:2] == ("sc.exe", "create") for c in run.calls)

    run = Recorder({("sc.exe", "qc"): (0, SC_QC.replace(CFG, str(host.data_dir / "config.toml")))})
    host = win_host(tmp_path, run)
    host.python = PY
    assert windows.install(None, None, False, host=host) == 0  # re-run: nothing to reconfigure
    assert not any(c[1] in ("create", "config") for c in run.calls[1:])


def test_windows_install_refuses_mapped_drives(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[watch]]\npath = "Z:\\\\RawData"\npipeline = "lab/qc"\nowner = "qc@example.org"\n')
    host = win_host(tmp_path, Recorder({("sc.exe", "qc"): (1060, "")}), drive=windows.DRIVE_REMOTE)
    assert windows.install(str(cfg), None, False, host=host) == 2
    assert "services do not see mapped drive letters" in host.out.getvalue()
    assert windows.install(str(cfg), "alice", True, host=host) == 2  # an account with a password


def test_windows_uninstall_and_status(tmp_path):
    run = Recorder({("sc.exe", "qc"): (0, SC_QC), ("sc.exe", "query"): (0, SC_QUERY)})
    host = win_host(tmp_path, run)
    assert windows.status(host=host) == 0
    assert "RUNNING" in host.out.getvalue() and "AUTO_START" in host.out.getvalue()
    host.data_dir.mkdir(parents=True)
    assert windows.uninstall(True, False, host=host) == 0
    assert ("sc.exe", "delete", "qcdaemon") in run.calls and not host.data_dir.exists()

    gone = Recorder({("sc.exe",): (1060, "")})
    host = win_host(tmp_path, gone)
    assert windows.status(host=host) == 3 and "not installed" in host.out.getvalue()
    gone.calls.clear()
    assert windows.uninstall(False, False, host=host) == 0 and gone.calls == [("sc.exe", "qc", "qcdaemon")]


def test_windows_purge_dry_run_when_the_service_is_absent(tmp_path):
    gone = Recorder({("sc.exe",): (1060, "")})
    host = win_host(tmp_path, gone, admin=False)
    assert windows.uninstall(True, True, host=host) == 0
    assert f"--purge: already absent: {host.data_dir}" in host.out.getvalue()

    host = win_host(tmp_path, gone, admin=False)
    host.data_dir.mkdir(parents=True)
    elsewhere = tmp_path / "qcdata"
    elsewhere.mkdir()
    (host.data_dir / "config.toml").write_text(f"[paths]\ndata_dir = '{elsewhere}'\n")
    assert windows.uninstall(True, True, host=host) == 0
    text = host.out.getvalue()
    assert "qcdaemon is not installed" in text and "nothing to do" not in text
    assert f"would remove {host.data_dir} (recursively)" in text
    assert f"--purge leaves {elsewhere} (paths.data_dir in {host.data_dir / 'config.toml'})" in text
    assert host.data_dir.exists() and set(gone.calls) == {("sc.exe", "qc", "qcdaemon")}  # queries only


def test_windows_image_config_path():
    assert windows.image_config_path(windows.image_path(PY, CFG)) == CFG
    spaced = r"C:\Lab Data\qc.toml"
    assert windows.image_config_path(windows.image_path(PY, spaced)) == spaced
    assert windows.image_config_path(f'"{PY}" -m qcdaemon.system.windows') is None


def test_host_daemon_reports_stop_pending_until_the_daemon_is_done():
    """1. the daemon runs on a worker thread; 2. SvcStop sets the event; 3. while the daemon drains,
    STOP_PENDING is reported with a wait hint; 4. host_daemon returns once it has finished."""
    stop, started, release = threading.Event(), threading.Event(), threading.Event()
    hints: list[int] = []

    def run_service(cfg, stop_event):
        assert stop_event is stop
        started.set()
        stop_event.wait()
        release.wait(5)  # a slow, graceful shutdown

    def report(hint):
        hints.append(hint)
        if len(hints) == 3:
            release.set()

    threading.Timer(0.05, stop.set).start()
    windows.host_daemon(run_service, Config(), stop, report, give_up_after=10, poll=0.01)
    assert started.is_set() and len(hints) >= 3 and set(hints) == {windows.STOP_HINT_MS}


def test_host_daemon_failures_reach_the_service_manager():
    def crash(cfg, stop_event):
        raise RuntimeError("store is corrupt")

    with pytest.raises(RuntimeError, match="store is corrupt"):
        windows.host_daemon(crash, Config(), threading.Event(), lambda h: None, give_up_after=1, poll=0.01)
    with pytest.raises(RuntimeError, match="exited with status 2"):  # e.g. a config error
        windows.host_daemon(lambda c, s: 2, Config(), threading.Event(), lambda h: None, give_up_after=1, poll=0.01)
    with pytest.raises(RuntimeError, match="without being asked"):
        windows.host_daemon(lambda c, s: None, Config(), threading.Event(), lambda h: None, give_up_after=1, poll=0.01)
    stop = threading.Event()
    stop.set()
    with pytest.raises(TimeoutError):
        windows.host_daemon(lambda c, s: threading.Event().wait(5), Config(), stop, lambda h: None,
                            give_up_after=0.05, poll=0.01)


def test_windows_module_imports_without_pywin32():
    assert "win32serviceutil" not in sys.modules
    assert windows.MODULE == "qcdaemon.system.windows"


def test_dispatch_by_platform(monkeypatch, capsys):
    import qcdaemon.system as svc

    calls = []
    monkeypatch.setattr(systemd, "install", lambda *a: calls.append(("linux", a)) or 0)
    monkeypatch.setattr(windows, "status", lambda: calls.append(("win32", ())) or 0)
    monkeypatch.setattr(sys, "platform", "linux")
    assert svc.install("/etc/x.toml", None, True) == 0
    monkeypatch.setattr(sys, "platform", "win32")
    assert svc.status() == 0
    monkeypatch.setattr(sys, "platform", "darwin")
    assert svc.uninstall(False, True) == 2 and "not supported" in capsys.readouterr().err
    assert calls == [("linux", ("/etc/x.toml", None, True)), ("win32", ())]


def test_example_config_text(tmp_path):
    f = tmp_path / "ex.toml"
    f.write_text("[server]\n")
    assert plan.example_config_text(f) == "[server]\n"


def test_installed_example_config_loads_and_watches_nothing_until_edited():
    import tomllib

    from qcdaemon.config import config_from_dict

    text = plan.example_config_text()
    cfg = config_from_dict(tomllib.loads(text))
    assert cfg.watch == ()  # the imaginary lab's folders would stop the service at start-up
    from qcdaemon.config import default_data_dir, default_log_dir

    # admin commands given this file reach the service's database, whoever runs them
    assert cfg.data_dir == default_data_dir("service") and cfg.log_dir == default_log_dir("service")
    assert "# [[watch]]" in text and "# path = " in text
