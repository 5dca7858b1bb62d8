"""`qcdaemon doctor`: one test per failure mode, plus a run where everything is fine."""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from qcdaemon.config import Config, EngineConfig, MaxQuantConfig, PathsConfig, ServerConfig, ToolConfig, WatchConfig
from qcdaemon.svc import doctor
from qcdaemon.svc.doctor import FAIL, OK, WARN, run_doctor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cfg(tmp_path) -> Config:
    """A config where every check passes: folders, tools and port all real and under tmp_path."""
    (tmp_path / "raw").mkdir()
    for name in ("RawTools.exe", "MaxQuantCmd.dll"):
        (tmp_path / name).write_text("")
    return Config(
        paths=PathsConfig(data_dir=str(tmp_path / "data"), log_dir=str(tmp_path / "logs")),
        server=ServerConfig(port=free_port()),
        watch=(WatchConfig(path=str(tmp_path / "raw"), pipeline="lab/qc", owner="qc@example.org"),),
        engine=EngineConfig(
            rawtools=ToolConfig(command=(sys.executable, str(tmp_path / "RawTools.exe"))),
            maxquant=MaxQuantConfig(command=(sys.executable, str(tmp_path / "MaxQuantCmd.dll"))),
        ),
        source=str(tmp_path / "config.toml"),
    )


ROW = re.compile(r"^(.*?)\s{2,}(OK|WARN|FAIL)\s{2,}(.*)$")


def doctor_rows(cfg: Config) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run the doctor; its exit status, {check: (status, detail)} and the printed table."""
    out = io.StringIO()
    rc = run_doctor(cfg, out=out)
    rows = {m[1]: (m[2], m[3]) for line in out.getvalue().splitlines()[1:-1] if (m := ROW.match(line))}
    return rc, rows, out.getvalue()


def find(rows, prefix):
    (row,) = [v for k, v in rows.items() if k.startswith(prefix)]
    return row


def test_all_ok(cfg):
    rc, rows, text = doctor_rows(cfg)
    assert rc == 0, text
    assert {status for status, _ in rows.values()} == {OK}, text
    assert text.splitlines()[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert find(rows, "config")[1].startswith(cfg.source)
    assert "will be created" in find(rows, "data dir")[1]
    assert "not created yet" in find(rows, "store")[1]
    assert find(rows, "port")[1] == "free"
    assert text.splitlines()[-1].endswith(f"{len(rows)} OK, 0 WARN, 0 FAIL")


def test_data_dir_that_cannot_be_created(cfg, tmp_path):
    (tmp_path / "plainfile").write_text("")  # root can write anywhere, so block creation with a file
    rc, rows, _ = doctor_rows(dataclasses.replace(cfg, paths=PathsConfig(data_dir=str(tmp_path / "plainfile" / "data"))))
    assert rc == 1
    assert find(rows, "data dir") == (FAIL, f"{tmp_path / 'plainfile' / 'data'} cannot be created: "
                                             f"{tmp_path / 'plainfile'} is a file")


def test_data_dir_that_is_a_file(cfg, tmp_path):
    (tmp_path / "data").write_text("")
    rc, rows, _ = doctor_rows(cfg)
    assert rc == 1 and find(rows, "data dir") == (FAIL, f"{tmp_path / 'data'} is a file, not a directory")


@pytest.mark.parametrize(("free", "status"), [(150 << 20, FAIL), (600 << 20, WARN), (5 << 30, OK)])
def test_disk_space(tmp_path, monkeypatch, free, status):
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: type("U", (), {"free": free})())
    rows = doctor.check_data_dir(tmp_path)
    assert rows[0].status == OK and rows[1].status == status


def test_watch_folder_missing(cfg, tmp_path):
    missing = dataclasses.replace(cfg.watch[0], path=str(tmp_path / "nowhere"))
    rc, rows, _ = doctor_rows(dataclasses.replace(cfg, watch=(missing,)))
    assert rc == 1 and find(rows, "watch") == (FAIL, "does not exist (or is not reachable from this machine)")


def test_watch_path_is_a_file(cfg, tmp_path):
    (tmp_path / "run1.raw").write_text("")
    w = dataclasses.replace(cfg.watch[0], path=str(tmp_path / "run1.raw"))
    rc, rows, _ = doctor_rows(dataclasses.replace(cfg, watch=(w,)))
    assert rc == 1 and find(rows, "watch") == (FAIL, "is a file, not a folder")


MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
//instrument-pc/Raw\\040Data /mnt/raw\\040data cifs rw,vers=3.0 0 0
server:/export /mnt/nfs nfs4 rw 0 0
"""


def test_mount_fstype():
    assert doctor.mount_fstype("/mnt/raw data/QE1", MOUNTS) == "cifs"
    assert doctor.mount_fstype("/mnt/raw datax", MOUNTS) == "ext4"
    assert doctor.mount_fstype("/mnt/nfs", MOUNTS) == "nfs4"
    assert doctor.mount_fstype("/home/lab", MOUNTS) == "ext4"


def test_network_watch_folder_wants_polling(cfg, tmp_path, monkeypatch):
    raw = Path(cfg.watch[0].path).resolve()
    monkeypatch.setattr(doctor, "_read_mounts", lambda: f"{MOUNTS}//nas/qc {raw} cifs rw 0 0\n")
    assert doctor.check_watch(cfg.watch[0]).status == WARN
    assert "set polling = true" in doctor.check_watch(cfg.watch[0]).detail
    polled = doctor.check_watch(dataclasses.replace(cfg.watch[0], polling=True))
    assert polled.status == OK and "network folder (cifs)" in polled.detail


def test_engine_command_pointing_at_a_missing_file(cfg, tmp_path):
    missing = tmp_path / "gone" / "RawTools.exe"
    engine = dataclasses.replace(cfg.engine, rawtools=ToolConfig(command=(sys.executable, str(missing))))
    rc, rows, _ = doctor_rows(dataclasses.replace(cfg, engine=engine))
    assert rc == 1 and find(rows, "engine rawtools") == (FAIL, f"{missing} does not exist")


def test_engine_program_not_on_path_and_tool_not_configured(monkeypatch):
    real_which = doctor.shutil.which
    monkeypatch.setattr(doctor.shutil, "which", lambda n: None if n in ("dotnet", "mono") else real_which(n))
    monkeypatch.setattr("qcdaemon.engine.rawtools.default_rawtools_command", lambda: None)
    engine = EngineConfig(rawtools=ToolConfig(), maxquant=MaxQuantConfig(command=("/opt/MaxQuant/bin/MaxQuantCmd.dll",)))
    rows = {r.name: r for r in doctor.check_engine(engine)}
    assert (rows["engine rawtools"].status, rows["engine rawtools"].detail) == (
        WARN, "engine.rawtools.command not configured: the rawtools stage is skipped")
    # a bare .dll runs with dotnet (the engine's rule), and dotnet is missing
    assert (rows["engine maxquant"].status, rows["engine maxquant"].detail) == (FAIL, "dotnet not found on PATH")
    assert (rows["dotnet"].status, rows["dotnet"].detail) == (FAIL, "not found on PATH (needed by maxquant)")
    assert "mono" not in rows  # not needed, not installed: no row


def test_unconfigured_rawtools_points_at_the_bundled_copy(monkeypatch):
    monkeypatch.setattr("qcdaemon.engine.rawtools.default_rawtools_command", lambda: ("mono", "/venv/RawTools.exe"))
    (row, *_) = doctor.check_engine(EngineConfig())
    assert row.status == WARN and row.detail.endswith('set command = ["mono", "/venv/RawTools.exe"]')


def test_port_already_bound(cfg, monkeypatch):
    monkeypatch.setattr(doctor, "HEALTH_TIMEOUT", 0.2)  # the test socket never answers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = dataclasses.replace(cfg.server, port=s.getsockname()[1])
        rc, rows, _ = doctor_rows(dataclasses.replace(cfg, server=server))
    assert rc == 1
    assert find(rows, "port") == (FAIL, "in use by another program; stop it or choose another server.port")


def test_port_held_by_a_running_daemon(cfg):
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "version": "0.1.0"}).encode()
            self.send_response(200 if self.path == "/api/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        server = dataclasses.replace(cfg.server, port=httpd.server_address[1])
        rc, rows, _ = doctor_rows(dataclasses.replace(cfg, server=server))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert rc == 0 and find(rows, "port") == (OK, "daemon running (version 0.1.0)")


def test_unresolvable_host():
    check = doctor.check_port(ServerConfig(host="no-such-host.invalid", port=8000))
    assert check.status == FAIL and "does not resolve" in check.detail


def test_corrupt_duckdb_file(cfg):
    cfg.db_path.parent.mkdir(parents=True)
    cfg.db_path.write_bytes(b"\x00garbage, not a database\xff" * 300)
    rc, rows, _ = doctor_rows(cfg)
    assert rc == 1
    status, detail = find(rows, "store")
    assert status == FAIL and detail.startswith(f"{cfg.db_path} is not a valid DuckDB database (corrupt?)")


def test_store_in_use_by_the_daemon(cfg):
    cfg.db_path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "c.execute('create table t (a int)'); print('ready', flush=True); sys.stdin.read()", str(cfg.db_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        check = doctor.check_store(cfg.db_path)
    finally:
        holder.communicate("", timeout=30)
    assert (check.status, check.detail) == (OK, f"in use by the running daemon (pid {holder.pid})")


def test_store_that_opens(cfg):
    cfg.db_path.parent.mkdir(parents=True)
    con = duckdb.connect(str(cfg.db_path))
    con.execute("create table runs (a int)")
    con.close()
    check = doctor.check_store(cfg.db_path)
    assert check.status == OK and "1 tables" in check.detail


def test_non_loopback_host_without_tls(cfg):
    server = dataclasses.replace(cfg.server, host="0.0.0.0")
    rc, rows, _ = doctor_rows(dataclasses.replace(cfg, server=server))
    assert rc == 1
    assert find(rows, "tls") == (FAIL, "server.host 0.0.0.0 is reachable from the network without TLS: "
                                       "set server.tls_cert and server.tls_key, or allow_insecure_http = true")


@pytest.mark.parametrize(
    ("server", "status"),
    [
        (ServerConfig(host="::1"), OK),
        (ServerConfig(host="localhost"), OK),
        (ServerConfig(host="192.168.1.20", allow_insecure_http=True), WARN),
        (ServerConfig(host="qc-pc.lab.example.org"), FAIL),
        (ServerConfig(host="0.0.0.0", tls_cert="/etc/qcdaemon/cert.pem", tls_key="/etc/qcdaemon/key.pem"), OK),
    ],
)
def test_tls_rules(server, status):
    assert doctor.check_tls(server).status == status
