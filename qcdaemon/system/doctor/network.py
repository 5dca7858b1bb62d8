"""The port (free, or held by the daemon of this data dir) and TLS for anything reachable from the network."""

from __future__ import annotations

import errno
import json
import os
import socket
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from qcdaemon.config import ServerConfig
from qcdaemon.core.net import is_loopback
from qcdaemon.core.paths import DataPaths
from qcdaemon.system.doctor.checks import FAIL, OK, WARN, Check

_IN_USE = (errno.EADDRINUSE, 10048)  # 10048: WSAEADDRINUSE
_NOT_HERE = (errno.EADDRNOTAVAIL, 10049)
HEALTH_TIMEOUT = 3.0  # seconds to wait for /api/health of whatever holds the port


def _health(server: ServerConfig) -> dict[str, Any] | None:
    """GET /api/health of whatever listens on the port; the JSON body if it is a healthy qcdaemon."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(server.host, server.host)
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if server.tls_cert else "http"
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # a local probe of our own port
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(f"{scheme}://{host}:{server.port}/api/health", timeout=HEALTH_TIMEOUT) as resp:
            body = json.loads(resp.read(65536))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and body.get("status") == "ok" else None


def running_data_dir(server: ServerConfig, data_dir: Path) -> tuple[bool, str]:
    """Whether the qcdaemon answering on the port is the one of ``data_dir``: its ``daemon.json`` there
    names this port, and (when ``admin.secret`` is readable) the daemon itself says so."""
    try:
        info = json.loads(DataPaths(data_dir).daemon_info.read_text())
    except (OSError, ValueError):
        return False, f"no daemon.json in {data_dir}: the daemon on the port serves another data dir"
    if not str(info.get("url", "")).endswith(f":{server.port}"):
        return False, f"the daemon of {data_dir} listens at {info.get('url')}, not on this port"
    try:
        secret = DataPaths(data_dir).admin_secret.read_text().strip()
    except OSError:
        return True, f"daemon.json in {data_dir} names this port (admin.secret not readable to confirm)"
    req = urllib.request.Request(
        str(info.get("admin_url")), data=json.dumps({"op": "daemon_info", "args": {}}).encode(), method="POST",
        headers={"X-Qcdaemon-Admin": secret, "Content-Type": "application/json", "Host": "127.0.0.1"},
    )
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # a local probe of our own port
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=HEALTH_TIMEOUT) as resp:
            theirs = json.loads(resp.read(65536))["result"]["data_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return False, f"the daemon named in {DataPaths(data_dir).daemon_info} does not confirm its data dir"
    if Path(theirs).resolve() != data_dir.resolve():
        return False, f"the running daemon serves {theirs}, not {data_dir}"
    return True, f"serving this data dir ({data_dir})"


def check_port(server: ServerConfig, data_dir: Path | None = None) -> Check:
    """The port is free to bind, or held by a running qcdaemon that answers /api/health (and, given
    ``data_dir``, serves that data dir)."""
    name = f"port {server.host}:{server.port}"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            server.host or None, server.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return Check(name, FAIL, f"server.host {server.host!r} does not resolve: {exc.strerror}")
    try:
        with socket.socket(family, kind, proto) as s:
            if os.name != "nt":  # like aiohttp: a socket in TIME_WAIT does not block the daemon
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except OSError as exc:
        if exc.errno in _IN_USE:
            health = _health(server)
            if health is not None:
                version = f" (version {health['version']})" if "version" in health else ""
                if data_dir is None:
                    return Check(name, OK, f"daemon running{version}")
                same, why = running_data_dir(server, data_dir)
                return Check(name, OK if same else FAIL, f"daemon running{version}: {why}" if same else
                             f"a qcdaemon{version} answers here, but {why}; commands with this configuration do "
                             "not reach it (stop it, or use its --config)")
            return Check(name, FAIL, "in use by another program; stop it or choose another server.port")
        if exc.errno in _NOT_HERE:
            return Check(name, FAIL, f"{server.host} is not an address of this machine")
        if exc.errno == errno.EACCES:
            return Check(name, FAIL, f"binding port {server.port} needs privileges; use a port above 1023")
        return Check(name, FAIL, f"cannot bind: {exc.strerror}")
    return Check(name, OK, "free")


def check_tls(server: ServerConfig) -> Check:
    """Anything reachable from the network must be HTTPS unless explicitly allowed."""
    if server.tls_cert and server.tls_key:
        return Check("tls", OK, f"HTTPS with {server.tls_cert}")
    if is_loopback(server.host):
        return Check("tls", OK, "plain HTTP on loopback only")
    if server.allow_insecure_http:
        return Check("tls", WARN, f"plain HTTP on {server.host or 'all interfaces'}: passwords and tokens "
                                  "cross the network unencrypted (allow_insecure_http = true)")
    return Check("tls", FAIL, f"server.host {server.host or '(all interfaces)'} is reachable from the network "
                              "without TLS: set server.tls_cert and server.tls_key, or allow_insecure_http = true")
