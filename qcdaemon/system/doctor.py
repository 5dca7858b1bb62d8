"""``qcdaemon doctor``: check that this machine can run the daemon with this config.

Each check gives one row: OK, WARN (works, but not as well as it could) or FAIL (the daemon or a
stage will not work).  Nothing is changed: the data dir is probed with a temporary file, the store
is opened read-only for a moment, the port is bound and released at once.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import duckdb

from qcdaemon.alerts.delivery import ChannelError, channel_url, describe_channel
from qcdaemon.config import Config, EngineConfig, ServerConfig, WatchConfig
from qcdaemon.core.net import is_loopback
from qcdaemon.system.plan import show

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GiB, MiB = 1 << 30, 1 << 20
FREE_WARN, FREE_FAIL = 1 * GiB, 200 * MiB
NETWORK_FS = frozenset({"cifs", "smb3", "smbfs", "nfs", "nfs4", "fuse.sshfs", "9p", "ceph", "glusterfs", "afs"})
_IN_USE = (errno.EADDRINUSE, 10048)  # 10048: WSAEADDRINUSE
_NOT_HERE = (errno.EADDRNOTAVAIL, 10049)
HEALTH_TIMEOUT = 3.0  # seconds to wait for /api/health of whatever holds the port
VERSION_TIMEOUT = 10.0  # seconds for `RawTools.exe -version` (mono starts in well under a second)
PE_READ_LIMIT = 64 * MiB  # how much of an .exe/.dll is searched for its version resource


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str


def run_doctor(cfg: Config, *, out: TextIO | None = None) -> int:
    """Print the checks as a table; 1 if any check FAILed, else 0."""
    out = out or sys.stdout
    store, targets = inspect_store(cfg.db_path, cfg.watch, config=cfg.source)
    rows = [
        Check("config", OK, f"{cfg.source or 'built-in defaults (no config file)'} ({cfg.mode} mode)"),
        *check_data_dir(cfg.data_dir),
        store,
        *(row for w, t in zip(cfg.watch, targets) for row in (check_watch(w, service=cfg.mode == "service"), *t)),
        *check_engine(cfg.engine),
        check_port(cfg.server),
        check_tls(cfg.server),
        *check_alert_channels(cfg),
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
    return inspect_store(db, ())[0]


Targets = tuple[Check, Check]  # (watch[i].pipeline, watch[i].owner)


def inspect_store(db: Path, watches: Sequence[WatchConfig] = (), *, config: str = "") -> tuple[Check, list[Targets]]:
    """The store row, and for each [[watch]] whether its pipeline and owner exist.

    The daemon stops at start-up on a [[watch]] whose pipeline or owner is not in the store
    (``Ingest.resolve``); these rows say so beforehand.  The file is opened read-only with plain
    DuckDB (``Store`` would migrate, that is write); ``config`` is the config file named in the
    hints (the admin commands must reach the same database).
    """
    if not db.exists():
        store = Check("store", OK, f"{db} not created yet (the daemon creates it on first start)")
        return store, [_targets(i, w, None, config=config) for i, w in enumerate(watches)]
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        msg = str(exc)
        if "lock" in msg.lower() or "being used by another process" in msg:
            pid = _pid(msg)
            store = Check("store", OK, "in use by the running daemon" + (f" (pid {pid})" if pid else ""))
            return store, [_same(i, OK, "checked by the running daemon") for i in range(len(watches))]
        if "not a valid DuckDB database" in msg:
            store = Check("store", FAIL, f"{db} is not a valid DuckDB database (corrupt?): move it aside "
                                         "or restore a snapshot")
        else:
            store = Check("store", FAIL, f"cannot open {db}: {msg.splitlines()[0]}")
        return store, _unchecked(len(watches))
    try:
        tables = con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
        size = db.stat().st_size / MiB
        targets = [_targets(i, w, con, config=config) for i, w in enumerate(watches)]
    except duckdb.Error as exc:
        store = Check("store", FAIL, f"{db} opens but cannot be read (corrupt?): {str(exc).splitlines()[0]}")
        return store, _unchecked(len(watches))
    finally:
        con.close()
    return Check("store", OK, f"{db} ({size:.1f} MB, {tables[0] if tables else 0} tables)"), targets


def _same(i: int, status: str, detail: str) -> Targets:
    return Check(f"watch[{i}].pipeline", status, detail), Check(f"watch[{i}].owner", status, detail)


def _unchecked(n: int) -> list[Targets]:
    return [_same(i, WARN, "not checked: the store cannot be read (see the store row)") for i in range(n)]


def _exists(con: duckdb.DuckDBPyConnection | None, sql: str, params: list[str]) -> bool:
    """Whether the query returns a row; a table that does not exist yet holds no rows."""
    if con is None:
        return False
    try:
        return con.execute(sql, params).fetchone() is not None
    except duckdb.CatalogException:
        return False


_PIPELINE = "SELECT 1 FROM pipelines pl JOIN projects p ON p.id = pl.project_id WHERE "


def _targets(i: int, w: WatchConfig, con: duckdb.DuckDBPyConnection | None, *, config: str) -> Targets:
    """Look the watch's pipeline and owner up the way ``Store.find_pipeline`` and
    ``Store.user_by_email`` do; ``con`` None: the store does not exist (nothing does)."""
    tail = ["--config", config] if config else []
    ref = w.pipeline
    if "/" in ref:
        project, _, slug = ref.partition("/")
        found = _exists(con, _PIPELINE + "p.slug = ? AND pl.slug = ?", [project, slug])
        add = show(["qcdaemon", "pipeline", "add", "--project", project, "--name", slug, *tail])
        if _exists(con, "SELECT 1 FROM projects WHERE slug = ?", [project]):
            hint = f"create it with: {add}"
        else:
            hint = (f"no project {project!r} either; create both with: "
                    f"{show(['qcdaemon', 'project', 'add', project, *tail])}, then {add}")
    else:
        found = _exists(con, _PIPELINE + "pl.uuid = ?", [ref])
        hint = ("no pipeline has this uuid; name it as project-slug/pipeline-slug, or create it with: "
                + show(["qcdaemon", "pipeline", "add", "--project", "SLUG", "--name", "NAME", *tail]))
    pipeline = (Check(f"watch[{i}].pipeline", OK, ref) if found
                else Check(f"watch[{i}].pipeline", FAIL, f"no pipeline {ref!r} ({hint})"))
    email = w.owner.strip().lower()
    if _exists(con, "SELECT 1 FROM users WHERE email = ?", [email]):
        owner = Check(f"watch[{i}].owner", OK, email)
    else:
        add_user = show(["qcdaemon", "user", "add", email, *tail])
        owner = Check(f"watch[{i}].owner", FAIL, f"no user {w.owner!r} (add it with: {add_user})")
    return pipeline, owner


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
    from qcdaemon.system.windows import (  # pragma: no cover - Windows only
        check_watch_path,
        get_drive_type,
    )

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


def _output(argv: Sequence[str], *, timeout: float = 20, cwd: str | None = None) -> str | None:
    """stdout + stderr of a command that exits 0, else None.

    No terminal and no input (stdin is /dev/null); on POSIX the command gets its own process
    group, so a timeout also ends whatever it started (a launcher script's mono, say).
    """
    posix = os.name != "nt"
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", cwd=cwd,
                                start_new_session=posix)
    except OSError:
        return None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL) if posix else proc.kill()
        except OSError:
            pass
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a grandchild holds the pipes (Windows)
            pass
        return None
    return out + "\n" + err if proc.returncode == 0 else None


def _first_line(argv: Sequence[str]) -> str | None:
    lines = [ln.strip() for ln in (_output(argv) or "").splitlines() if ln.strip()]
    return lines[0] if lines else None


_VERSION = re.compile(r"v?(\d+(?:\.\d+){1,3})")
_PRODUCT_VERSION = "ProductVersion\0".encode("utf-16-le")
_FIXED_INFO = b"\xbd\x04\xef\xfe"  # VS_FIXEDFILEINFO.dwSignature


def pe_product_version(path: str | os.PathLike[str]) -> str | None:
    """The product version in the version resource of a Windows .exe/.dll (read as bytes; no
    Windows API, no tool): the ``ProductVersion`` string, else VS_FIXEDFILEINFO's product version.

    .NET assemblies carry it too: RawTools.exe says 2.0.7 there (its *file* version is another
    number), MaxQuantCmd its MaxQuant version.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(PE_READ_LIMIT)
    except OSError:
        return None
    if data[:2] != b"MZ":
        return None
    at = 0
    while (key := data.find(_PRODUCT_VERSION, at)) >= 0:
        at = key + 2
        head = key - 6  # a String block: wLength, wValueLength, wType, then the key
        if key % 2 or head < 0:
            continue
        _, value_len, kind = struct.unpack_from("<3H", data, head)
        if kind != 1 or not value_len:  # 1: text
            continue
        value_at = head + ((key + len(_PRODUCT_VERSION) - head + 3) & ~3)  # DWORD-aligned value
        value = data[value_at:value_at + 2 * value_len].decode("utf-16-le", "replace").split("\0")[0]
        if m := _VERSION.match(value.strip()):
            return m.group(1)
    fixed = data.find(_FIXED_INFO)
    if fixed >= 0 and fixed + 24 <= len(data):
        ms, ls = struct.unpack_from("<2I", data, fixed + 16)  # dwProductVersionMS, dwProductVersionLS
        if ms or ls:
            return f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"
    return None


def _assemblies(argv: Sequence[str]) -> list[Path]:
    return [Path(a) for a in argv if Path(a).suffix.lower() in (".exe", ".dll") and Path(a).is_file()]


def rawtools_version(argv: Sequence[str]) -> str:
    """``RawTools 2.0.7 (pyRawTools 0.2.3)`` or ``RawTools version unknown``.

    Asks the command itself (``-version``: never ``-help``, which crashes without a terminal),
    in a scratch working directory because RawTools drops ``rawtools_log.txt`` there; else reads
    the version resource of the RawTools.exe the command names.
    """
    from qcdaemon.tools.rawtools import find_rawtools_exe

    with tempfile.TemporaryDirectory(prefix="qcdaemon-doctor-") as scratch:
        text = _output([*argv, "-version"], timeout=VERSION_TIMEOUT, cwd=scratch) or ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    version = m.group(1) if lines and (m := _VERSION.fullmatch(lines[0])) else None
    exes = _assemblies(argv)
    for exe in exes if version is None else ():
        if version := pe_product_version(exe):
            break
    shown = f"RawTools {version}" if version else "RawTools version unknown"
    bundled = find_rawtools_exe()
    if bundled is not None and any(e.resolve().parent == bundled.resolve().parent for e in exes):
        shown += f" (pyRawTools {importlib.metadata.version('pyRawTools')})"
    return shown


def maxquant_version_text(argv: Sequence[str]) -> str:
    """``MaxQuant 2.4.12.0`` (from the install folder's name, else the assembly's version
    resource) or ``MaxQuant version unknown``."""
    from qcdaemon.tools.maxquant import maxquant_version

    candidates = [a for a in argv if "maxquant" in a.lower() or Path(a).suffix.lower() in (".exe", ".dll")]
    for a in reversed(candidates):
        if (parts := maxquant_version(Path(a))) is not None:
            return "MaxQuant " + ".".join(map(str, parts))
    for exe in reversed(_assemblies(candidates)):
        if product := pe_product_version(exe):
            return f"MaxQuant {product}"
    return "MaxQuant version unknown"


def _runtime_version(runtime: str, path: str) -> tuple[str | None, bool]:
    """(the version to show, whether it can run anything).  dotnet: the installed .NET runtimes
    (MaxQuant needs a runtime, not an SDK), else ``dotnet --version``."""
    if runtime == "dotnet":
        listed = _output([path, "--list-runtimes"])
        runtimes = re.findall(r"^Microsoft\.NETCore\.App (\S+)", listed or "", re.MULTILINE)
        if runtimes:
            return ".NET runtime " + ", ".join(runtimes), True
        version = _first_line([path, "--version"])
        return version, listed is None or version is not None
    return _first_line([path, "--version"]), True


def check_engine(engine: EngineConfig) -> list[Check]:
    """Each tool's command as the engine will run it, with the tool's version, then the .NET
    runtimes (shown if found; FAIL if a command needs one that is missing)."""
    from qcdaemon.tools.maxquant import maxquant_argv
    from qcdaemon.tools.rawtools import default_rawtools_command

    mq = engine.maxquant
    tools = {  # MaxQuant: the engine picks mono/dotnet for a bare .exe/.dll; drop the mqpar argument
        "rawtools": tuple(engine.rawtools.command),
        "maxquant": tuple(maxquant_argv(mq.command, Path("mqpar.xml"), mq.runtime)[:-1]) if mq.command else (),
    }
    versions = {"rawtools": rawtools_version, "maxquant": maxquant_version_text}
    rows = []
    for tool, argv in tools.items():
        row = check_command(tool, argv)
        if row.status == OK:
            row = Check(row.name, OK, f"{row.detail}: {versions[tool](argv)}")
        rows.append(row)
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
        version, usable = _runtime_version(runtime, path)
        if not usable and users:
            rows.append(Check(runtime, FAIL, f"{path}: no .NET runtime installed (needed by {', '.join(users)}; "
                                             "dotnet --list-runtimes lists none)"))
            continue
        rows.append(Check(runtime, OK, f"{path}: {version or 'version unknown'}"))
    return rows


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
    if is_loopback(server.host):
        return Check("tls", OK, "plain HTTP on loopback only")
    if server.allow_insecure_http:
        return Check("tls", WARN, f"plain HTTP on {server.host or 'all interfaces'}: passwords and tokens "
                                  "cross the network unencrypted (allow_insecure_http = true)")
    return Check("tls", FAIL, f"server.host {server.host or '(all interfaces)'} is reachable from the network "
                              "without TLS: set server.tls_cert and server.tls_key, or allow_insecure_http = true")



def _channel_health(cfg: Config) -> dict[str, dict[str, Any]] | None:
    """Per channel the consecutive failed attempts and last error: from the store read-only, or from
    the running daemon (which holds the store) through its local admin channel; None if neither."""
    db = cfg.files.db
    if not db.exists():
        return {}
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        con = None
    if con is not None:
        try:
            rows = con.execute("SELECT channel, ok, error FROM alert_attempts ORDER BY attempted_at DESC").fetchall()
        except duckdb.Error:
            return {}
        finally:
            con.close()
        out: dict[str, dict[str, Any]] = {}
        for channel, ok, error in rows:
            h = out.setdefault(channel, {"consecutive_failures": 0, "last_error": None, "done": False})
            if h["done"]:
                continue
            if ok:
                h["done"] = True
            else:
                h["consecutive_failures"] += 1
                h["last_error"] = h["last_error"] or error
        return out
    try:
        info = json.loads(cfg.files.daemon_info.read_text())
        secret = cfg.files.admin_secret.read_text().strip()
        req = urllib.request.Request(info["admin_url"], data=json.dumps({"op": "alerts_channels", "args": {}}).encode(),
                                     method="POST", headers={"X-Qcdaemon-Admin": secret, "Host": "127.0.0.1",
                                                             "Content-Type": "application/json"})
        ctx = ssl._create_unverified_context() if info["admin_url"].startswith("https") else None  # loopback only
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return {c["name"]: c for c in json.loads(resp.read())["result"]}
    except (OSError, ValueError, KeyError):
        return None


def check_alert_channels(cfg: Config) -> list[Check]:
    """Each [[alerts.channel]]: its URL can be read (file, environment) and apprise accepts it; a
    channel whose deliveries keep failing is a FAIL with the last error (never the URL's secrets)."""
    if not cfg.alerts.channel:
        return []
    import apprise  # a heavy import, only when channels are configured

    health = _channel_health(cfg)
    rows = []
    for ch in cfg.alerts.channel:
        name = f"alert channel {ch.name}"
        try:
            url = channel_url(ch)
        except ChannelError as exc:
            rows.append(Check(name, FAIL, str(exc)))
            continue
        if not apprise.Apprise().add(url):
            rows.append(Check(name, FAIL, f"{describe_channel(ch)}: apprise does not accept this URL"))
            continue
        h = (health or {}).get(ch.name)
        fails = int(h["consecutive_failures"]) if h else 0
        if fails >= cfg.alerts.failing_after:
            rows.append(Check(name, FAIL, f"{describe_channel(ch)}: {fails} failed deliveries in a row; last: "
                                          f"{h.get('last_error') if h else ''}"))
        elif health is None:
            rows.append(Check(name, WARN, f"{describe_channel(ch)}: delivery history not readable"))
        else:
            rows.append(Check(name, OK, f"{describe_channel(ch)}" + (f" ({fails} recent failures)" if fails else "")
                              + "; `qcdaemon alerts test " + ch.name + "` sends a test message"))
    return rows
