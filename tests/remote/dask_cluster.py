"""A real Dask cluster on 127.0.0.1 for tests: ``dask scheduler`` and ``dask worker`` processes
from the ``distributed`` package, on ephemeral ports, one thread each, low memory limits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from daemonproc import free_port, wait_for

DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


class DaskCluster:
    """One scheduler and its workers (no nanny: a killed worker stays dead, as a lost machine)."""

    def __init__(self, root: Path, *, port: int | None = None, worker_env: dict[str, str] | None = None,
                 tls: dict[str, Path] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.address = f"{'tls' if tls else 'tcp'}://127.0.0.1:{self.port}"
        self.tls_args = [a for k, v in (tls or {}).items() for a in (f"--tls-{k}", str(v))]
        self.worker_env = {**os.environ, **(worker_env or {})}
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, workers: int = 2) -> DaskCluster:
        log = open(self.root / "scheduler.log", "ab")
        self.scheduler = subprocess.Popen(
            [*DASK, "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard",
             *(["--protocol", "tls", *self.tls_args] if self.tls_args else [])],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        for _ in range(workers):
            self.add_worker()
        wait_for(lambda: len(self.connected()) >= workers, 60, "the Dask workers to connect")
        return self

    def add_worker(self) -> str:
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        log = open(self.root / f"worker-{port}.log", "ab")
        self.workers[address] = subprocess.Popen(
            [*WORKER, self.address, "--no-nanny", "--nthreads", "1", "--memory-limit", "400MB", "--no-dashboard",
             "--host", "127.0.0.1", "--worker-port", str(port), "--death-timeout", "60", *self.tls_args],
            stdout=log, stderr=subprocess.STDOUT, env=self.worker_env)
        log.close()
        return address

    def connected(self) -> list[str]:
        """The addresses of the workers that said they are connected (from their logs)."""
        out = []
        for address in self.workers:
            log = self.root / f"worker-{address.rsplit(':', 1)[1]}.log"
            if log.exists() and "Registered to" in log.read_text(errors="replace"):
                out.append(address)
        return out

    def kill_worker(self, address: str) -> None:
        proc = self.workers.pop(address)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.send_signal(signal.SIGKILL)
            self.scheduler.wait(timeout=30)

    def close(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        self.workers.clear()
        self.stop_scheduler()



def make_tls(folder: Path) -> dict[str, Path]:
    """A CA and one certificate for 127.0.0.1 signed by it (openssl), for the scheduler, workers and daemon."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key, csr = (folder / n for n in ("ca.pem", "ca.key", "cert.pem", "key.pem", "cert.csr"))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth, clientAuth\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=qcdaemon test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return {"ca-file": ca, "cert": cert, "key": key}
