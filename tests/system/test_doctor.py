"""`qcdaemon doctor`: one test per failure mode, plus a run where everything is fine."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import importlib.metadata
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from qcdaemon.config import (
    Config,
    EngineConfig,
    MaxQuantConfig,
    PathsConfig,
    ServerConfig,
    ToolConfig,
    WatchConfig,
)
from qcdaemon.store import Store
from qcdaemon.system.doctor import FAIL, OK, WARN, Check, folders, network, programs, run_doctor
from qcdaemon.system.doctor import store as doctor_store
from qcdaemon.tools.rawtools import default_rawtools_command, find_rawtools_exe


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


def make_store(db: Path, pipelines=("lab/qc",), users=("qc@example.org",), members: bool = True) -> dict[str, str]:
    """A real store (made, migrated and closed by ``Store``) holding these pipelines and users (members
    of every project when ``members``); returns {"project/pipeline": uuid}."""
    store = Store(db)
    try:
        ids = [store.create_user(email, None) for email in users]
        uuids = {}
        for ref in pipelines:
            project, _, slug = ref.partition("/")
            found = store.project_by_slug(project)
            pid = found["id"] if found else store.create_project(project, project, "", None)
            uuids[ref] = store.create_pipeline(pid, slug, slug, str(db.parent / slug), rawtools_args="")["uuid"]
            for uid in ids if members else ():
                store.add_member(pid, uid)
        return uuids
    finally:
        store.close()


@contextlib.contextmanager
def store_held_by_another_process(db: Path):
    """A process that opens the DuckDB file read-write (as the daemon does) until stdin closes."""
    db.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "c.execute('create table if not exists t (a int)'); print('ready', flush=True); sys.stdin.read()",
         str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.communicate("", timeout=30)


def test_all_ok(cfg):
    make_store(cfg.db_path)
    rc, rows, text = doctor_rows(cfg)
    assert rc == 0, text
    assert {status for status, _ in rows.values()} == {OK}, text
    assert text.splitlines()[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert find(rows, "config")[1].startswith(cfg.source)
    assert find(rows, "data dir")[1] == f"{cfg.data_dir} (writable)"
    assert find(rows, "store")[1].startswith(f"{cfg.db_path} (")
    assert find(rows, "watch[0].pipeline") == (OK, "lab/qc")
    assert find(rows, "watch[0].owner") == (OK, "qc@example.org")
    assert find(rows, "port")[1] == "free"
    assert text.splitlines()[-1].endswith(f"{len(rows)} OK, 0 WARN, 0 FAIL")
    names = list(rows)  # each watch's pipeline and owner come right after its folder
    assert names[names.index(f"watch {cfg.watch[0].path}") + 1:][:2] == ["watch[0].pipeline", "watch[0].owner"]


# -- [[watch]] pipeline and owner: the daemon refuses to start on unknown ones ----------------


def test_watch_with_an_unknown_pipeline(cfg):
    make_store(cfg.db_path, pipelines=("lab/qc",))
    other = dataclasses.replace(cfg.watch[0], pipeline="lab/other")
    rc, rows, text = doctor_rows(dataclasses.replace(cfg, watch=(cfg.watch[0], other)))
    assert rc == 1, text
    assert find(rows, "watch[0].pipeline") == (OK, "lab/qc")
    assert find(rows, "watch[1].pipeline") == (
        FAIL, f"no pipeline 'lab/other' (create it with: qcdaemon pipeline add --project lab --name other "
              f"--config {cfg.source})")
    assert find(rows, "watch[1].owner") == (OK, "qc@example.org")
    assert text.splitlines()[-1].endswith("1 FAIL")


def test_watch_with_an_unknown_project_or_uuid(cfg):
    uuids = make_store(cfg.db_path, pipelines=("lab/qc",))
    watches = tuple(dataclasses.replace(cfg.watch[0], pipeline=ref)
                    for ref in ("core/qc", uuids["lab/qc"], "0b3c5a7e-0000-4000-8000-000000000000"))
    rc, rows, text = doctor_rows(dataclasses.replace(cfg, watch=watches))
    assert rc == 1, text
    status, detail = find(rows, "watch[0].pipeline")
    assert status == FAIL and detail.startswith("no pipeline 'core/qc' (no project 'core' either; create both "
                                                "with: qcdaemon project add core")
    assert "then qcdaemon pipeline add --project core --name qc" in detail
    assert find(rows, "watch[1].pipeline") == (OK, uuids["lab/qc"])  # a pipeline uuid works as well
    status, detail = find(rows, "watch[2].pipeline")
    assert status == FAIL and detail.startswith("no pipeline '0b3c5a7e-0000-4000-8000-000000000000' (no "
                                                "pipeline has this uuid")


def test_watch_with_an_unknown_owner(cfg):
    make_store(cfg.db_path, users=("someone@example.org",))
    rc, rows, text = doctor_rows(cfg)
    assert rc == 1, text
    assert find(rows, "watch[0].pipeline") == (OK, "lab/qc")
    assert find(rows, "watch[0].owner") == (
        FAIL, f"no user 'qc@example.org' (add it with: qcdaemon user add qc@example.org --config {cfg.source})")


def test_an_owner_who_is_not_a_member_is_a_warning_with_the_fix(cfg):
    uuids = make_store(cfg.db_path, members=False)
    by_uuid = dataclasses.replace(cfg.watch[0], pipeline=uuids["lab/qc"])
    rc, rows, text = doctor_rows(dataclasses.replace(cfg, watch=(cfg.watch[0], by_uuid)))
    assert rc == 0, text  # the daemon makes the owner a member at start: it works, so not a FAIL
    status, detail = find(rows, "watch[0].owner")
    assert status == WARN and "qc@example.org is not a member of 'lab'" in detail
    assert detail.endswith(f"qcdaemon project add-member lab qc@example.org --config {cfg.source})")
    assert find(rows, "watch[1].owner")[0] == WARN


def test_owner_is_matched_like_the_daemon_does(cfg):
    make_store(cfg.db_path)
    shouty = dataclasses.replace(cfg.watch[0], owner=" QC@Example.ORG ")
    rc, rows, text = doctor_rows(dataclasses.replace(cfg, watch=(shouty,)))
    assert rc == 0, text
    assert find(rows, "watch[0].owner") == (OK, "qc@example.org")


def test_store_missing_fails_every_watch(cfg, tmp_path):
    (tmp_path / "raw2").mkdir()
    second = WatchConfig(path=str(tmp_path / "raw2"), pipeline="lab/dia", owner="dia@example.org")
    rc, rows, text = doctor_rows(dataclasses.replace(cfg, watch=(cfg.watch[0], second)))
    assert rc == 1, text
    assert "will be created" in find(rows, "data dir")[1]
    assert find(rows, "store") == (OK, f"{cfg.db_path} not created yet (the daemon creates it on first start)")
    for i, (ref, email) in enumerate((("lab/qc", "qc@example.org"), ("lab/dia", "dia@example.org"))):
        status, detail = find(rows, f"watch[{i}].pipeline")
        assert status == FAIL and detail.startswith(f"no pipeline {ref!r} (no project 'lab' either")
        status, detail = find(rows, f"watch[{i}].owner")
        assert status == FAIL and detail.startswith(f"no user {email!r} (add it with: qcdaemon user add {email}")
    assert not cfg.db_path.exists() and not cfg.data_dir.exists()  # the doctor created nothing


def test_store_held_by_the_running_daemon(cfg):
    make_store(cfg.db_path, pipelines=(), users=())  # would FAIL both, were it readable
    with store_held_by_another_process(cfg.db_path) as holder:
        rc, rows, text = doctor_rows(cfg)
    assert rc == 0, text
    assert find(rows, "store") == (OK, f"in use by the running daemon (pid {holder.pid})")
    assert find(rows, "watch[0].pipeline") == (OK, "checked by the running daemon")
    assert find(rows, "watch[0].owner") == (OK, "checked by the running daemon")


def test_store_without_the_tables_yet(cfg):
    """A store the daemon has not migrated: no pipeline or user can be in it."""
    cfg.db_path.parent.mkdir(parents=True)
    duckdb.connect(str(cfg.db_path)).close()
    rc, rows, _ = doctor_rows(cfg)
    assert rc == 1
    assert find(rows, "watch[0].pipeline")[0] == FAIL and find(rows, "watch[0].owner")[0] == FAIL


def test_the_doctor_leaves_the_store_alone(cfg):
    make_store(cfg.db_path)
    before = cfg.db_path.read_bytes()
    files = sorted(p.name for p in cfg.data_dir.iterdir())
    doctor_rows(cfg)
    assert cfg.db_path.read_bytes() == before and sorted(p.name for p in cfg.data_dir.iterdir()) == files


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
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type("U", (), {"free": free})())
    rows = folders.check_data_dir(tmp_path)
    assert rows[0].status == OK and rows[1].status == status


def test_watch_folder_missing(cfg, tmp_path):
    missing = dataclasses.replace(cfg.watch[0], path=str(tmp_path / "nowhere"))
    rc, rows, _ = doctor_rows(dataclasses.replace(cfg, watch=(missing,)))
    assert rc == 1 and find(rows, "watch /") == (FAIL, "does not exist (or is not reachable from this machine)")


def test_watch_path_is_a_file(cfg, tmp_path):
    (tmp_path / "run1.raw").write_text("")
    w = dataclasses.replace(cfg.watch[0], path=str(tmp_path / "run1.raw"))
    rc, rows, _ = doctor_rows(dataclasses.replace(cfg, watch=(w,)))
    assert rc == 1 and find(rows, "watch /") == (FAIL, "is a file, not a folder")


MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
//instrument-pc/Raw\\040Data /mnt/raw\\040data cifs rw,vers=3.0 0 0
server:/export /mnt/nfs nfs4 rw 0 0
"""


def test_mount_fstype():
    assert folders.mount_fstype("/mnt/raw data/QE1", MOUNTS) == "cifs"
    assert folders.mount_fstype("/mnt/raw datax", MOUNTS) == "ext4"
    assert folders.mount_fstype("/mnt/nfs", MOUNTS) == "nfs4"
    assert folders.mount_fstype("/home/lab", MOUNTS) == "ext4"


def test_network_watch_folder_wants_polling(cfg, tmp_path, monkeypatch):
    raw = Path(cfg.watch[0].path).resolve()
    monkeypatch.setattr(folders, "_read_mounts", lambda: f"{MOUNTS}//nas/qc {raw} cifs rw 0 0\n")
    assert folders.check_watch(cfg.watch[0]).status == WARN
    assert "set polling = true" in folders.check_watch(cfg.watch[0]).detail
    polled = folders.check_watch(dataclasses.replace(cfg.watch[0], polling=True))
    assert polled.status == OK and "network folder (cifs)" in polled.detail


def test_engine_command_pointing_at_a_missing_file(cfg, tmp_path):
    missing = tmp_path / "gone" / "RawTools.exe"
    engine = dataclasses.replace(cfg.engine, rawtools=ToolConfig(command=(sys.executable, str(missing))))
    rc, rows, _ = doctor_rows(dataclasses.replace(cfg, engine=engine))
    assert rc == 1 and find(rows, "engine rawtools") == (FAIL, f"{missing} does not exist")


def test_engine_program_not_on_path_and_tool_not_configured(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n: None if n in ("dotnet", "mono") else real_which(n))
    monkeypatch.setattr("qcdaemon.tools.rawtools.default_rawtools_command", lambda: None)
    engine = EngineConfig(rawtools=ToolConfig(), maxquant=MaxQuantConfig(command=("/opt/MaxQuant/bin/MaxQuantCmd.dll",)))
    rows = {r.name: r for r in programs.check_engine(engine)}
    status, detail = rows["engine rawtools"].status, rows["engine rawtools"].detail
    assert status == WARN and detail.startswith("engine.rawtools.command not configured: the rawtools stage is skipped: ")
    # and what to install: mono is hidden here; pyRawTools too when it is not installed
    expected = "RawTools needs mono" if find_rawtools_exe() else "RawTools is not installed: pip install 'qcdaemon[rawtools]'"
    assert expected in detail and "apt-get install mono-runtime" in detail
    # a bare .dll runs with dotnet (the engine's rule), and dotnet is missing
    assert (rows["engine maxquant"].status, rows["engine maxquant"].detail) == (FAIL, "dotnet not found on PATH")
    assert (rows["dotnet"].status, rows["dotnet"].detail) == (FAIL, "not found on PATH (needed by maxquant)")
    assert "mono" not in rows  # not needed, not installed: no row


def test_unconfigured_rawtools_points_at_the_bundled_copy(monkeypatch):
    monkeypatch.setattr("qcdaemon.tools.rawtools.default_rawtools_command", lambda: ("mono", "/venv/RawTools.exe"))
    (row, *_) = programs.check_engine(EngineConfig())
    assert row.status == WARN and row.detail.endswith('set command = ["mono", "/venv/RawTools.exe"]')


def test_port_already_bound(cfg, monkeypatch):
    monkeypatch.setattr(network, "HEALTH_TIMEOUT", 0.2)  # the test socket never answers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = dataclasses.replace(cfg.server, port=s.getsockname()[1])
        rc, rows, _ = doctor_rows(dataclasses.replace(cfg, server=server))
    assert rc == 1
    assert find(rows, "port") == (FAIL, "in use by another program; stop it or choose another server.port")


def test_port_held_by_a_running_daemon(cfg):
    make_store(cfg.db_path)  # the rest of the config is fine: the exit status is the port's
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
    # a qcdaemon answers, but not the one of this config's data dir (none wrote daemon.json there)
    status, detail = find(rows, "port")
    assert rc == 1 and status == FAIL, detail
    assert detail.startswith("a qcdaemon (version 0.1.0) answers here, but no daemon.json in ")
    assert "serves another data dir" in detail
    assert network.check_port(server) == Check(f"port 127.0.0.1:{server.port}", OK, "free")  # it stopped


def test_unresolvable_host():
    check = network.check_port(ServerConfig(host="no-such-host.invalid", port=8000))
    assert check.status == FAIL and "does not resolve" in check.detail


def test_corrupt_duckdb_file(cfg):
    cfg.db_path.parent.mkdir(parents=True)
    cfg.db_path.write_bytes(b"\x00garbage, not a database\xff" * 300)
    rc, rows, _ = doctor_rows(cfg)
    assert rc == 1
    status, detail = find(rows, "store")
    assert status == FAIL and detail.startswith(f"{cfg.db_path} is not a valid DuckDB database (corrupt?)")
    assert find(rows, "watch[0].pipeline") == (WARN, "not checked: the store cannot be read (see the store row)")


def test_store_in_use_by_the_daemon(cfg):
    with store_held_by_another_process(cfg.db_path) as holder:
        check = doctor_store.check_store(cfg.db_path)
    assert (check.status, check.detail) == (OK, f"in use by the running daemon (pid {holder.pid})")


def test_store_that_opens(cfg):
    cfg.db_path.parent.mkdir(parents=True)
    con = duckdb.connect(str(cfg.db_path))
    con.execute("create table runs (a int)")
    con.close()
    check = doctor_store.check_store(cfg.db_path)
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
    assert network.check_tls(server).status == status


# -- tool versions ------------------------------------------------------------------------------

needs_pyrawtools = pytest.mark.skipif(find_rawtools_exe() is None, reason="pyRawTools not installed")


def engine_row(engine: EngineConfig, name: str):
    (row,) = [r for r in programs.check_engine(engine) if r.name == name]
    return row.status, row.detail


@pytest.mark.skipif(default_rawtools_command() is None, reason="pyRawTools or mono not installed")
def test_rawtools_version_of_the_bundled_rawtools(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = default_rawtools_command()
    status, detail = engine_row(EngineConfig(rawtools=ToolConfig(command=command)), "engine rawtools")
    assert status == OK
    assert detail == f"{' '.join(command)}: RawTools 2.0.7 (pyRawTools {importlib.metadata.version('pyRawTools')})"
    assert list(tmp_path.iterdir()) == []  # RawTools' rawtools_log.txt went to a scratch dir, now gone


@needs_pyrawtools
def test_rawtools_version_from_the_assembly_when_the_command_does_not_say(tmp_path, monkeypatch):
    """python cannot run RawTools.exe (-version fails): the version resource of the .exe tells."""
    monkeypatch.chdir(tmp_path)
    exe = str(find_rawtools_exe())
    assert programs.pe_product_version(exe) == "2.0.7"
    status, detail = engine_row(EngineConfig(rawtools=ToolConfig(command=(sys.executable, exe))), "engine rawtools")
    assert status == OK and detail.endswith(": RawTools 2.0.7 (pyRawTools "
                                            f"{importlib.metadata.version('pyRawTools')})")


def test_rawtools_version_from_the_command(tmp_path):
    script = tmp_path / "rawtools.py"
    script.write_text("import sys\nprint('3.1.4' if sys.argv[1:] == ['-version'] else 'usage')\n")
    status, detail = engine_row(EngineConfig(rawtools=ToolConfig(command=(sys.executable, str(script)))),
                                "engine rawtools")
    assert (status, detail) == (OK, f"{sys.executable} {script}: RawTools 3.1.4")


def test_rawtools_version_unknown_and_a_hung_command_is_ended(cfg, tmp_path, monkeypatch):
    assert engine_row(cfg.engine, "engine rawtools")[1].endswith("RawTools.exe: RawTools version unknown")
    assert programs.pe_product_version(tmp_path / "RawTools.exe") is None  # an empty file
    monkeypatch.setattr(programs, "VERSION_TIMEOUT", 0.5)
    script = tmp_path / "hang.py"  # starts a child that would keep the output pipe open
    script.write_text("import subprocess, time\nsubprocess.Popen(['sleep', '60'])\ntime.sleep(60)\n")
    start = time.monotonic()
    assert programs.rawtools_version((sys.executable, str(script))) == "RawTools version unknown"
    assert time.monotonic() - start < 4


def test_maxquant_version(cfg, tmp_path):
    assert engine_row(cfg.engine, "engine maxquant")[1].endswith("MaxQuantCmd.dll: MaxQuant version unknown")
    dll = tmp_path / "MaxQuant_v2.4.12.0" / "bin" / "MaxQuantCmd.dll"
    dll.parent.mkdir(parents=True)
    dll.write_text("")
    engine = dataclasses.replace(cfg.engine, maxquant=MaxQuantConfig(command=(sys.executable, str(dll))))
    assert engine_row(engine, "engine maxquant") == (OK, f"{sys.executable} {dll}: MaxQuant 2.4.12.0")


@pytest.mark.parametrize(
    ("runtimes", "status", "shown"),
    [
        ("Microsoft.AspNetCore.App 8.0.4 [/usr/share/dotnet/shared/Microsoft.AspNetCore.App]\n"
         "Microsoft.NETCore.App 6.0.29 [/usr/share/dotnet/shared/Microsoft.NETCore.App]\n"
         "Microsoft.NETCore.App 8.0.4 [/usr/share/dotnet/shared/Microsoft.NETCore.App]", OK,
         ".NET runtime 6.0.29, 8.0.4"),
        ("", FAIL, "no .NET runtime installed (needed by maxquant"),  # a bare host: MaxQuant cannot start
    ],
)
def test_dotnet_runtime_version(tmp_path, monkeypatch, runtimes, status, shown):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dotnet"
    fake.write_text("#!/bin/sh\n"
                    f"if [ \"$1\" = --list-runtimes ]; then printf '%s\\n' '{runtimes}'; exit 0; fi\n"
                    "echo 'No .NET SDKs were found.' >&2; exit 145\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    dll = tmp_path / "MaxQuantCmd.dll"
    dll.write_text("")
    assert engine_row(EngineConfig(maxquant=MaxQuantConfig(command=(str(dll),))), "engine maxquant")[0] == OK
    got_status, detail = engine_row(EngineConfig(maxquant=MaxQuantConfig(command=(str(dll),))), "dotnet")
    assert got_status == status and detail.startswith(f"{fake}: {shown}")
