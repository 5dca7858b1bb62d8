"""The admin CLI as an operator runs it (real ``python -m qcdaemon`` processes), with and without a
running daemon holding the database, and the daemon's local admin endpoint behind it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import (
    MAXQUANT_EXAMPLE0,
    REPO,
    Api,
    World,
    free_port,
    run_qcdaemon,
    subprocess_env,
    write_config,
)
from daemonproc import start_daemon

from qcdaemon.server.admin import serve_admin
from qcdaemon.store import Store


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    return write_config(tmp_path / "qcdaemon.toml", {
        "server": {"port": free_port()},
        "paths": {"data_dir": str(tmp_path / "data"), "log_dir": str(tmp_path / "logs")},
        "log": {"format": "json"},
    })


def data_dir(cfg_path: Path) -> Path:
    return cfg_path.parent / "data"


def cli(cfg_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_qcdaemon(*args, "--config", str(cfg_path), stdin=stdin)


def ok_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    value, _end = json.JSONDecoder().raw_decode(proc.stdout)
    return value


def open_store(cfg_path: Path) -> Store:
    return Store(data_dir(cfg_path) / "qcdaemon.duckdb")


def test_admin_commands_build_a_lab(cfg_path: Path) -> None:
    user = ok_json(cli(cfg_path, "user", "add", "Tech@Lab.example", "--password-stdin", stdin="s3cret-pass-12\n"))
    assert user == {"id": 1, "email": "tech@lab.example", "is_admin": False}
    admin = ok_json(cli(cfg_path, "user", "add", "boss@lab.example", "--admin", "--password-stdin", stdin="pw-boss-12345\n"))
    assert admin["is_admin"] is True
    project = ok_json(cli(cfg_path, "project", "add", "Orbitrap Lab", "--description", "Lumos QC",
                          "--member", "tech@lab.example"))
    assert project == {"pk": 1, "name": "Orbitrap Lab", "slug": "orbitrap-lab", "description": "Lumos QC"}
    pipeline = ok_json(cli(cfg_path, "pipeline", "add", "--project", "orbitrap-lab", "--name", "HeLa QC"))
    assert pipeline["slug"] == "hela-qc" and re.fullmatch(r"[0-9a-f-]{36}", pipeline["uuid"])
    assert Path(pipeline["path_as_str"]).is_dir() and data_dir(cfg_path) in Path(pipeline["path_as_str"]).parents
    token = cli(cfg_path, "token", "create", "tech@lab.example")
    assert token.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}\n", token.stdout)
    again = cli(cfg_path, "token", "create", "tech@lab.example")
    assert again.stdout == token.stdout  # one token per user: printed again, not replaced

    store = open_store(cfg_path)
    try:
        from qcdaemon.core import security

        u = store.user_by_email("tech@lab.example")
        assert security.verify_password("s3cret-pass-12", u["password_hash"])
        assert [p["slug"] for p in store.visible_projects(u)] == ["orbitrap-lab"]
        assert store.find_pipeline("orbitrap-lab/hela-qc")["uuid"] == pipeline["uuid"]
        assert store.user_by_token_digest(security.digest(token.stdout.strip()))["email"] == "tech@lab.example"
    finally:
        store.close()


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("user", "add", "dup@lab.example", "--password-stdin"), "pw-1234567890\n", "already exists"),
    (("user", "add", "not-an-email", "--password-stdin"), "pw-1234567890\n", "not an e-mail"),
    (("user", "add", "nopw@lab.example", "--password-stdin"), "\n", "no password"),
    (("user", "add", "tty@lab.example"), "", "--password-stdin"),
    (("token", "create", "ghost@lab.example"), None, "no user"),
    (("pipeline", "add", "--project", "no-such-project", "--name", "X"), None, "no project"),
    (("project", "add", "Lab", "--member", "ghost@lab.example"), None, "no user"),
])
def test_admin_command_errors(cfg_path: Path, args: tuple[str, ...], stdin: str | None, message: str) -> None:
    if args[2:3] == ("dup@lab.example",):
        ok_json(cli(cfg_path, *args, stdin=stdin))
    proc = cli(cfg_path, *args, stdin=stdin)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_bootstrap_demo_is_idempotent(cfg_path: Path) -> None:
    first = ok_json(cli(cfg_path, "bootstrap-demo", "--password-stdin", stdin="pw-demo-12345\n"))
    assert first["project"] == "demo-project" and first["pipeline"]["slug"] == "tmt-qc-demo"
    assert "user user@email.com" in first["created"] and len([c for c in first["created"] if c.startswith("run ")]) == 3
    second = ok_json(cli(cfg_path, "bootstrap-demo"))
    assert second["created"] == []
    assert second["pipeline"] == first["pipeline"]
    store = open_store(cfg_path)
    try:
        pipeline = store.find_pipeline("demo-project/tmt-qc-demo")
        assert pipeline["read_only"] is True
        assert len(store.runs_of(pipeline["id"])) == 3
        assert store.scalar("SELECT count(*) FROM projects") == 1
    finally:
        store.close()


def test_bootstrap_demo_generates_and_keeps_a_password(cfg_path: Path) -> None:
    proc = cli(cfg_path, "bootstrap-demo", "--user", "lab@example.org")
    ok_json(proc)
    saved = data_dir(cfg_path) / "demo-password.txt"
    password = saved.read_text().strip()  # the password alone: PASSWORD=$(cat demo-password.txt)
    assert (data_dir(cfg_path) / "demo-user.txt").read_text().strip() == "lab@example.org"
    assert password and " " not in password
    assert password and f"lab@example.org / {password}" in proc.stdout
    # another user's run does not print (or overwrite) this user's password
    other = cli(cfg_path, "bootstrap-demo", "--user", "someone@example.org", "--password-stdin", stdin="pw-x-1234567\n")
    assert password not in other.stdout and "Demo sign-in" not in other.stdout
    assert saved.read_text().strip() == password
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    store = open_store(cfg_path)
    try:
        from qcdaemon.core import security

        assert security.verify_password(password, store.user_by_email("lab@example.org")["password_hash"])
    finally:
        store.close()


def test_parse_maxquant_prints_json() -> None:
    proc = run_qcdaemon("parse", "maxquant", str(MAXQUANT_EXAMPLE0.relative_to(REPO)))
    data = ok_json(proc)
    assert data["N_protein_groups"] == 1272 and data["N_protein_true_hits"] == 1248
    assert data["MS/MS Identified [%]"] == 32


# ------------------------------------------------------------------------------- with a running daemon


def health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/api/health", timeout=1) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


@pytest.fixture
def daemon(cfg_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = re.search(r"port = (\d+)", cfg_path.read_text()).group(1)  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    log = cfg_path.parent / "daemon.log"
    with open(log, "wb") as out:
        proc = start_daemon([sys.executable, "-m", "qcdaemon", "run", "--config", str(cfg_path)], cwd=REPO,
                            env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT, log=log.read_text)
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_cli_works_through_the_running_daemon(cfg_path: Path, daemon: tuple[subprocess.Popen[str], str]) -> None:
    proc, url = daemon
    assert health(url)["status"] == "ok"  # type: ignore[index]
    info = json.loads((data_dir(cfg_path) / "daemon.json").read_text())
    assert info["pid"] == proc.pid and info["url"] == url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/_admin/op", info["admin_url"])  # its own loopback listener
    # the daemon holds the database: a plain second opener is refused...
    lock = subprocess.run([sys.executable, "-c", "import sys, duckdb; duckdb.connect(sys.argv[1])",
                           str(data_dir(cfg_path) / "qcdaemon.duckdb")], capture_output=True, text=True, timeout=60)
    assert lock.returncode != 0 and "lock" in lock.stderr.lower()
    # ...yet the CLI works, through the daemon's admin endpoint
    user = ok_json(cli(cfg_path, "user", "add", "live@lab.example", "--password-stdin", stdin="pw-live-12345\n"))
    assert user["email"] == "live@lab.example"
    dup = cli(cfg_path, "user", "add", "live@lab.example", "--password-stdin", stdin="pw-live-12345\n")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    token = cli(cfg_path, "token", "create", "live@lab.example")
    assert token.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}\n", token.stdout)
    ok_json(cli(cfg_path, "project", "add", "Live Lab", "--member", "live@lab.example"))
    # the token works against the daemon's API at once
    req = urllib.request.Request(url + "/api/projects", method="POST", data=b"{}",
                                 headers={"Authorization": f"Token {token.stdout.strip()}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert [p["slug"] for p in json.loads(resp.read())] == ["live-lab"]
    # SIGTERM: a clean stop, exit code 0, the admin secret and daemon.json removed
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not (data_dir(cfg_path) / "admin.secret").exists()
    assert not (data_dir(cfg_path) / "daemon.json").exists()
    # and what was done through the daemon is in the database
    store = open_store(cfg_path)
    try:
        assert store.user_by_email("live@lab.example") is not None
        assert store.project_by_slug("live-lab") is not None
    finally:
        store.close()


def test_cli_without_daemon_or_database_access_explains(cfg_path: Path) -> None:
    """A database held by something that is not a daemon: the CLI says so instead of hanging."""
    data_dir(cfg_path).mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                               "sys.stdin.read()", str(data_dir(cfg_path) / "qcdaemon.duckdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        proc = cli(cfg_path, "token", "create", "x@lab.example")
        assert proc.returncode == 1 and "in use by another process" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        holder.communicate(input="", timeout=30)


# ------------------------------------------------------------------------------- the admin endpoint itself


async def admin_post(api: Api, body: Any, secret: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Qcdaemon-Admin"] = secret
    return await api.call("/_admin/op", who=None, raw=json.dumps(body) if not isinstance(body, bytes) else body,
                          headers=headers)


async def test_the_public_server_has_no_admin_endpoint(api: Api) -> None:
    r = await admin_post(api, {"op": "user_add", "args": {"email": "x@y.z", "password": "pw"}}, "anything")
    assert r.status == 404


async def test_admin_endpoint_checks_its_secret(world: World) -> None:
    async def post(url: str, body: Any, secret: str | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **({"X-Qcdaemon-Admin": secret} if secret is not None else {})}
        async with aiohttp.ClientSession() as session, session.post(
                url, data=json.dumps(body) if not isinstance(body, bytes) else body, headers=headers) as resp:
            return resp.status, await resp.json()

    async with serve_admin(world.svc, "s" * 64) as url:  # what the daemon starts, with its random secret
        assert url.startswith("http://127.0.0.1:")
        status, _ = await post(url, {"op": "token_create", "args": {"email": "user@email.com"}}, "wrong")
        assert status == 403
        status, _ = await post(url, {"op": "token_create", "args": {"email": "user@email.com"}}, None)
        assert status == 403
        status, data = await post(url, {"op": "token_create", "args": {"email": "user@email.com"}}, "s" * 64)
        assert status == 200 and re.fullmatch(r"[0-9a-f]{40}", data["result"]["token"])
        assert (await world.svc.user_for_token(data["result"]["token"]))["email"] == "user@email.com"
        for bad in ({"op": "drop_everything", "args": {}}, {"op": "token_create"}, [1], b"not json",
                    {"op": "token_create", "args": {"unexpected": 1}}):
            status, data = await post(url, bad, "s" * 64)
            assert status == 400, (bad, data)
        status, data = await post(url, {"op": "token_create", "args": {"email": "ghost@example.org"}}, "s" * 64)
        assert status == 404 and "ghost@example.org" in data["detail"]


def test_bootstrap_demo_completes_a_run_whose_seeding_was_cut_off(cfg_path: Path) -> None:
    ok_json(cli(cfg_path, "bootstrap-demo"))
    store = open_store(cfg_path)
    try:
        pipeline = store.find_pipeline("demo-project/tmt-qc-demo")
        small2 = next(r for r in store.runs_of(pipeline["id"]) if r["name"] == "small2.RAW")
        store.execute("DELETE FROM qc_values WHERE run_id = ?", [small2["id"]])  # as if killed mid-seed
    finally:
        store.close()
    report = ok_json(cli(cfg_path, "bootstrap-demo"))
    assert report["created"] == ["run small2.RAW"]
    store = open_store(cfg_path)
    try:
        runs = store.runs_of(store.find_pipeline("demo-project/tmt-qc-demo")["id"])
        assert sorted(r["name"] for r in runs).count("small2.RAW") == 1
        assert all(store.run_has_values(r["id"]) for r in runs)
    finally:
        store.close()
