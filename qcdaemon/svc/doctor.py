"""``qcdaemon doctor``: check that this machine can run the daemon with this config.

Each check gives one row: OK, WARN (works, but not as well as it could) or FAIL (the daemon or a
stage will not work).  Nothing is changed: the data dir is probed with a temporary file, the store
is opened read-only for a moment, the port is bound and released at once.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import duckdb

from ..config import Config, EngineConfig, ServerConfig, WatchConfig

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GiB, MiB = 1 << 30, 1 << 20
FREE_WARN, FREE_FAIL = 1 * GiB, 200 * MiB
NETWORK_FS = frozenset({"cifs", "smb3", "smbfs", "nfs", "nfs4", "fuse.sshfs", "9p", "ceph", "glusterfs", "afs"})
_IN_USE = (errno.EADDRINUSE, 10048)  # 10048: WSAEADDRINUSE
_NOT_HERE = (errno.EADDRNOTAVAIL, 10049)
HEALTH_TIMEOUT = 3.0  # seconds to wait for /api/health of whatever holds the port


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str


def run_doctor(cfg: Config, *, out: TextIO | None = None) -> int:
    """Print the checks as a table; 1 if any check FAILed, else 0."""
    out = out or sys.stdout
    rows = [
        Check("config", OK, f"{cfg.source or 'built-in defaults (no config file)'} ({cfg.mode} mode)"),
        *check_data_dir(cfg.data_dir),
        check_store(cfg.db_path),
        *(check_watch(w, service=cfg.mode == "service") for w in cfg.watch),
        *check_engine(cfg.engine),
        check_port(cfg.server),
        check_tls(cfg.server),
    ]
    width = max(len(r.name) for r in rows)
    print(f"{'CHECK':<{width}}  STATUS  DETAIL", file=out)
    for r in rows:
        print(f"{r.name:<{width}}  {r.status:<6}  {r.detail}", file=out)
    counts = {s: sum(r.status == s for r in rows) for s in (OK, WARN, FAIL)}
    print(f"{len(rows)} checks: " + ", ".join(f"{n} {s}" for s, n in counts.items()), file=out)
    return 1 if counts[FAIL] else 0


def check_data_dir(path: Path) -> list[Check]:
    """The data dir exists or can be created, is writable (a temp file), and has room."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = f"cannot be created: {existing} is a file" if existing != path else "is a file, not a directory"
        return [Check("data dir", FAIL, f"{path} {what}")]
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        verb = "is not writable" if existing == path else f"cannot be created ({existing} is not writable)"
        return [Check("data dir", FAIL, f"{path} {verb}: {exc.strerror}")]
    free = shutil.disk_usage(existing).free
    space = Check("disk space", OK, f"{free / GiB:.1f} GiB free")
    if free < FREE_FAIL:
        space = Check("disk space", FAIL, f"only {free / MiB:.0f} MB free on the data dir's disk (need 200 MB)")
    elif free < FREE_WARN:
        space = Check("disk space", WARN, f"only {free / MiB:.0f} MB free on the data dir's disk (1 GiB advised)")
    made = "writable" if existing == path else "will be created"
    return [Check("data dir", OK, f"{path} ({made})"), space]


def _pid(message: str) -> str | None:
    m = re.search(r"PID (\d+)", message)
    return m.group(1) if m else None


def check_store(db: Path) -> Check:
    """Open the DuckDB file read-only for a moment; a lock held by the daemon is fine."""
    if not db.exists():
        return Check("store", OK, f"{db} not created yet (the daemon creates it on first start)")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        msg = str(exc)
        if "lock" in msg.lower() or "being used by another process" in msg:
            pid = _pid(msg)
            return Check("store", OK, "in use by the running daemon" + (f" (pid {pid})" if pid else ""))
        if "not a valid DuckDB database" in msg:
            return Check("store", FAIL, f"{db} is not a valid DuckDB database (corrupt?): move it aside "
                                        "or restore a snapshot")
        return Check("store", FAIL, f"cannot open {db}: {msg.splitlines()[0]}")
    try:
        tables = con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
        size = db.stat().st_size / MiB
    except duckdb.Error as exc:
        return Check("store", FAIL, f"{db} opens but cannot be read (corrupt?): {str(exc).splitlines()[0]}")
    finally:
        con.close()
    return Check("store", OK, f"{db} ({size:.1f} MB, {tables[0] if tables else 0} tables)")


def mount_fstype(path: str, mounts: str) -> str | None:
    """The filesystem type of the mount holding ``path``, from /proc/mounts text."""
    best, fstype = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def _read_mounts() -> str:
    try:
        return Path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _network_kind(w: WatchConfig, *, service: bool) -> tuple[str | None, Check | None]:
    """("cifs"/"UNC"/None, a check that overrides the result when the path cannot work)."""
    if os.name != "nt":
        fstype = mount_fstype(os.path.realpath(w.path), _read_mounts())
        return (fstype if fstype in NETWORK_FS else None), None
    from .windows import check_watch_path, get_drive_type  # pragma: no cover - Windows only

    problem = check_watch_path(w.path, get_drive_type)  # pragma: no cover
    if problem:  # pragma: no cover - a mapped drive: fine in a console, invisible to a service
        return "mapped drive", Check(f"watch {w.path}", FAIL if service else WARN, problem)
    return ("UNC" if w.path.startswith("\\\\") else None), None  # pragma: no cover


def check_watch(w: WatchConfig, *, service: bool = False) -> Check:
    """A watch folder exists, is a folder, can be listed; network folders want polling."""
    name = f"watch {w.path}"
    p = Path(w.path)
    if not p.exists():
        return Check(name, FAIL, "does not exist (or is not reachable from this machine)")
    if not p.is_dir():
        return Check(name, FAIL, "is a file, not a folder")
    try:
        with os.scandir(p) as entries:
            next(entries, None)
    except OSError as exc:
        return Check(name, FAIL, f"cannot be listed: {exc.strerror}")
    kind, problem = _network_kind(w, service=service)
    if problem:
        return problem
    if kind is None:
        return Check(name, OK, "readable, local disk")
    if not w.polling:
        return Check(name, WARN, f"network folder ({kind}): change events miss files written by other "
                                 "machines; set polling = true")
    return Check(name, OK, f"readable, network folder ({kind}), polled every {w.poll_interval:g} s")


def check_command(tool: str, argv: Sequence[str]) -> Check:
    """The program of an engine command is found, and every absolute path it names exists."""
    name = f"engine {tool}"
    if not argv:
        return Check(name, WARN, f"engine.{tool}.command not configured: the {tool} stage is skipped")
    exe = argv[0]
    found = exe if os.path.dirname(exe) else shutil.which(exe)
    if found is None:
        return Check(name, FAIL, f"{exe} not found on PATH")
    for path in (found, *(a for a in argv[1:] if os.path.isabs(a))):
        if not os.path.exists(path):
            return Check(name, FAIL, f"{path} does not exist")
    return Check(name, OK, " ".join(argv))


def _first_line(argv: Sequence[str]) -> str | None:
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [ln.strip() for ln in (res.stdout + "\n" + res.stderr).splitlines() if ln.strip()]
    return lines[0] if res.returncode == 0 and lines else None


def check_engine(engine: EngineConfig) -> list[Check]:
    """Each tool's command as the engine will run it, then the .NET runtimes (shown if found;
    FAIL if a command needs one that is missing)."""
    from ..engine.maxquant import maxquant_argv
    from ..engine.rawtools import default_rawtools_command

    mq = engine.maxquant
    tools = {  # MaxQuant: the engine picks mono/dotnet for a bare .exe/.dll; drop the mqpar argument
        "rawtools": tuple(engine.rawtools.command),
        "maxquant": tuple(maxquant_argv(mq.command, Path("mqpar.xml"), mq.runtime)[:-1]) if mq.command else (),
    }
    rows = [check_command(tool, argv) for tool, argv in tools.items()]
    if not tools["rawtools"] and (bundled := default_rawtools_command()):
        rows[0] = Check(rows[0].name, WARN, f"{rows[0].detail}; to use the bundled RawTools set "
                                            f"command = {json.dumps(list(bundled))}")
    for runtime in ("mono", "dotnet"):
        users = [tool for tool, argv in tools.items() if argv and Path(argv[0]).stem == runtime]
        path = shutil.which(runtime)
        if path is None:
            if users:
                rows.append(Check(runtime, FAIL, f"not found on PATH (needed by {', '.join(users)})"))
            continue
        version = _first_line([path, "--version"]) or _first_line([path, "--list-runtimes"])
        rows.append(Check(runtime, OK, f"{path}: {version or 'version unknown'}"))
    return rows


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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


def check_port(server: ServerConfig) -> Check:
    """The port is free to bind, or held by a running qcdaemon that answers /api/health."""
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
                return Check(name, OK, f"daemon running{version}")
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
    if _is_loopback(server.host):
        return Check("tls", OK, "plain HTTP on loopback only")
    if server.allow_insecure_http:
        return Check("tls", WARN, f"plain HTTP on {server.host or 'all interfaces'}: passwords and tokens "
                                  "cross the network unencrypted (allow_insecure_http = true)")
    return Check("tls", FAIL, f"server.host {server.host or '(all interfaces)'} is reachable from the network "
                              "without TLS: set server.tls_cert and server.tls_key, or allow_insecure_http = true")

