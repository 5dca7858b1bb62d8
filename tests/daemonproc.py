"""A real qcdaemon process for end-to-end tests: config file, CLI calls, start/stop/kill, API calls."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
STANDIN = REPO / "tests" / "tools" / "MaxQuantCmd"
MQPAR = DATA / "maxquant" / "mqpar" / "mqpar_tmt11_test.xml"
FASTA = DATA / "maxquant" / "qc-test.fasta"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def write_toml(path: Path, data: dict[str, Any]) -> None:
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for key, value in data.items():
        if key == "watch":
            for w in value:
                lines.append("[[watch]]")
                lines.extend(f"{k} = {_toml(v)}" for k, v in w.items())
        else:
            table(key, value)
    path.write_text("\n".join(lines) + "\n")


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class ReadyListener:
    """The receiving end of systemd's notify protocol (what a ``Type=notify`` unit gives the daemon).

    The daemon sends ``READY=1`` once every component runs: store, server, engine, admin channel,
    ``daemon.json``, watcher and scheduler (``qcdaemon.daemon``).  ``/api/health`` answers earlier (the
    port is bound first), so a test that waits for it alone races the admin channel and the watcher;
    this waits for the very moment, without polling.  Pass :attr:`env` to the daemon's environment.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.address = f"@qcdaemon-test-{uuid.uuid4().hex}"  # Linux's abstract namespace: no file to clean up
        self.sock.bind("\0" + self.address[1:])

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def wait(self, proc: subprocess.Popen[Any], timeout: float, log: Callable[[], str] = lambda: "") -> None:
        """Until the daemon says ``READY=1``; fails at once when it exits (with ``log()``), or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {proc.returncode} before it was ready:\n{log()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the daemon did not say READY=1 within {timeout} s:\n{log()}")
            readable, _, _ = select.select([self.sock], [], [], min(left, 0.1))  # 0.1 s: to notice an exit
            if readable and b"READY=1" in self.sock.recv(65536).split(b"\n"):
                return

    def close(self) -> None:
        self.sock.close()


def start_daemon(argv: list[str], *, env: dict[str, str], timeout: float = 60, log: Callable[[], str] = lambda: "",
                 **popen: Any) -> subprocess.Popen[Any]:
    """Start a daemon process and return once it is ready (see :class:`ReadyListener`)."""
    ready = ReadyListener()
    try:
        proc = subprocess.Popen(argv, env={**env, **ready.env}, **popen)
        try:
            ready.wait(proc, timeout, log)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
        return proc
    finally:
        ready.close()


class Daemon:
    """One data dir + config, driven through the real CLI and the real HTTP API."""

    def __init__(self, root: Path, *, engine: dict[str, Any] | None = None, watch: list[dict] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.config = root / "config.toml"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "daemon.log"
        self.token: str | None = None
        cfg: dict[str, Any] = {
            "server": {"port": self.port},
            "paths": {"data_dir": str(self.data), "log_dir": str(root / "logs")},
            "engine": {"shutdown_timeout": 5, **(engine or {})},
            "log": {"format": "json"},
        }
        if watch:
            cfg["watch"] = watch
        write_toml(self.config, cfg)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "qcdaemon", *args, "--config", str(self.config)],
            input=input, capture_output=True, text=True, env=self.env, cwd=REPO, timeout=120,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"qcdaemon {' '.join(args)} failed ({res.returncode}): {res.stderr}{res.stdout}")
        return res

    def setup_lab(self, *, mq: bool = True) -> dict[str, Any]:
        """A user, a project and a pipeline (with fasta + mqpar when ``mq``) for the watched folder."""
        self.cli("user", "add", "op@lab.org", "--password-stdin", input="operator-pass\n")
        self.cli("project", "add", "Lab QC", "--member", "op@lab.org")
        extra = ["--fasta", str(FASTA), "--mqpar", str(MQPAR)] if mq else []
        out = self.cli("pipeline", "add", "--project", "lab-qc", "--name", "Exploris", *extra)
        return json.loads(out.stdout)

    def start(self) -> None:
        self.logf = open(self.log, "ab")
        try:
            self.proc = start_daemon([sys.executable, "-m", "qcdaemon", "run", "--config", str(self.config)],
                                     env=self.env, log=lambda: self.log.read_text()[-3000:],
                                     stdout=self.logf, stderr=subprocess.STDOUT, cwd=REPO)
        except BaseException:
            self.logf.close()
            raise
        assert self._healthy()
        if self.token is None:
            self.token = self.cli("token", "create", "op@lab.org").stdout.strip()

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(self.base + "/api/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.logf.close()
        self.proc = None
        return code

    def api(self, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path}: {exc.code} {exc.read()!r}") from None

    def runs(self) -> list[dict[str, Any]]:
        return self.api("/api/runs?limit=1000", method="GET")

    def qc_data(self) -> dict[str, list[Any]]:
        return self.api("/api/qc-data", {"project": "lab-qc", "pipeline": "exploris"})

    def finished(self, n: int) -> list[dict[str, Any]] | None:
        runs = self.runs()
        if len(runs) >= n and all(r["state"] in ("done", "failed", "cancelled") for r in runs):
            return runs
        return None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.logf.close()


def copy_raw(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / "raw" / name, dest)
    return dest


def folder_listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))
