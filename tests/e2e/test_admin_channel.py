"""The admin channel with ``[server] host`` on a LAN address: a real daemon on this machine's own
non-loopback address, the real CLI working through it.

The daemon serves its admin channel on a loopback listener of its own (recorded in daemon.json), so
the CLI reaches it whatever ``host`` says, and the LAN listener has no admin endpoint at all.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from daemonproc import REPO, free_port, start_daemon, write_toml

from qcdaemon.core.net import is_loopback


def lan_address() -> str | None:
    """An IPv4 address of this machine that is not loopback and that we can listen on."""
    candidates: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: no packet is sent, only a route chosen
            candidates.append(probe.getsockname()[0])
        except OSError:
            pass
    try:
        candidates += [a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    except OSError:
        pass
    for addr in candidates:
        if is_loopback(addr) or addr == "0.0.0.0":
            continue
        with socket.socket() as s:
            try:
                s.bind((addr, 0))
            except OSError:
                continue
        return str(addr)
    return None


LAN = lan_address()


def cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qcdaemon", *args, "--config", str(config)], input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def get(url: str, token: str | None = None, data: bytes | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Token {token}"} if token else {})}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.mark.skipif(LAN is None, reason="this machine has no non-loopback IPv4 address to listen on")
def test_admin_commands_work_against_a_daemon_on_a_lan_address(tmp_path: Path) -> None:
    assert LAN is not None
    port = free_port()
    config = tmp_path / "config.toml"
    data = tmp_path / "data"
    write_toml(config, {
        "server": {"host": LAN, "port": port, "allow_insecure_http": True},
        "paths": {"data_dir": str(data), "log_dir": str(tmp_path / "logs")},
        "log": {"format": "json"},
    })
    made = cli(config, "user", "add", "op@lab.org", "--password-stdin", stdin="operator-pass-12\n")
    assert made.returncode == 0, made.stderr  # no daemon yet: directly on the store
    url = f"http://{LAN}:{port}"
    with open(tmp_path / "daemon.log", "wb") as log:  # the daemon keeps its own copy of the descriptor
        proc = start_daemon([sys.executable, "-m", "qcdaemon", "run", "--config", str(config)], cwd=REPO,
                            env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                            log=lambda: (tmp_path / "daemon.log").read_text()[-3000:])
    try:
        assert get(url + "/api/health")[0] == 200  # it answers on its LAN address
        info = json.loads((data / "daemon.json").read_text())
        assert info["url"] == url
        admin = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/_admin/op", info["admin_url"])
        assert admin, info

        # the operator's commands, while the daemon holds the database: through the admin channel
        added = cli(config, "user", "add", "live@lab.org", "--password-stdin", stdin="pw-live-123456\n")
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["email"] == "live@lab.org"
        token = cli(config, "token", "create", "live@lab.org")
        assert token.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}\n", token.stdout), token.stderr
        assert cli(config, "project", "add", "Live Lab", "--member", "live@lab.org").returncode == 0
        status, projects = get(url + "/api/projects", token.stdout.strip(), b"{}")
        assert status == 200 and [p["slug"] for p in projects] == ["live-lab"]

        # and nothing administrative on the network side
        status, body = get(url + "/_admin/op", data=json.dumps({"op": "runs", "args": {}}).encode())
        assert status == 404 and "detail" in body
        with socket.socket() as s:
            assert s.connect_ex((LAN, int(admin.group(1)))) != 0  # the admin port listens on loopback only

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not (data / "daemon.json").exists() and not (data / "admin.secret").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
