"""Serving other machines: HTTPS from a configured certificate, plain HTTP only on explicit opt-in."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from daemonproc import REPO, free_port, wait_for, write_toml


def _config(tmp_path: Path, server: dict) -> Path:
    cfg = tmp_path / "config.toml"
    write_toml(cfg, {"server": server, "paths": {"data_dir": str(tmp_path / "data")}, "log": {"format": "json"}})
    return cfg


def _run(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qcdaemon", "run", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_non_loopback_plain_http_is_refused_naming_the_key(tmp_path: Path) -> None:
    proc = _run(_config(tmp_path, {"host": "0.0.0.0", "port": free_port()}))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "server.host" in out and "tls_cert" in out


def _get(url: str, ctx: ssl.SSLContext | None = None) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=1, context=ctx) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def test_plain_http_on_all_interfaces_with_opt_in_warns_at_start(tmp_path: Path) -> None:
    port = free_port()
    proc = _run(_config(tmp_path, {"host": "0.0.0.0", "port": port, "allow_insecure_http": True}))
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/api/health"), 30, "the daemon")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "insecure_http" in out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_https_is_served_from_the_configured_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    proc = _run(_config(tmp_path, {"host": "127.0.0.1", "port": port, "tls_cert": str(cert), "tls_key": str(key)}))
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    try:
        health = wait_for(lambda: _get(f"https://127.0.0.1:{port}/api/health", ctx), 30, "HTTPS")
        assert health["status"] == "ok"
        assert _get(f"http://127.0.0.1:{port}/api/health") is None  # no plain HTTP on that port
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/", timeout=2, context=ctx) as r:
            cookie = r.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert proc.returncode == 0
