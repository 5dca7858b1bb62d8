"""The lab-wide view (issue 17): two instrument daemons and a hub, all real processes on loopback.

The instruments watch a folder each and compute the native metrics of real RAW files (no RawTools,
no MaxQuant: the cheap stage); the hub pulls them by ``/api/changes``.  Each run must appear in the
hub exactly once, with its origin, also after the hub is SIGKILLed mid-pull and after an
instrument daemon is SIGKILLed and restarted.
"""

from __future__ import annotations

import signal
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
from daemonproc import Daemon, copy_raw, wait_for

RAW = "small2.RAW"


class GatedProxy:
    """A real HTTP proxy on loopback in front of an instrument daemon.  It counts the requests for
    ``/api/changes`` and holds the ``hold_at``-th one until released: the hub, which asks for the
    next page only after committing the last, is then known to be in the middle of a pull."""

    def __init__(self, target: str) -> None:
        self.target, self.count, self.hold_at = target, 0, 0
        self.held, self.release, self.lock = threading.Event(), threading.Event(), threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with proxy.lock:
                    proxy.count += self.path.startswith("/api/changes")
                    hold = proxy.hold_at and proxy.count == proxy.hold_at and self.path.startswith("/api/changes")
                if hold:
                    proxy.held.set()
                    proxy.release.wait(60)
                req = urllib.request.Request(proxy.target + self.path,
                                             headers={"Authorization": self.headers.get("Authorization", "")})
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        status, body = r.status, r.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the hub was killed while we held its request

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _hub_db(hub: Daemon, sql: str) -> list[tuple[Any, ...]]:
    """Read the (stopped) hub's store directly: what it had committed when it was killed."""
    con = duckdb.connect(str(hub.data / "qcdaemon.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _instrument(root: Path) -> tuple[Daemon, Path]:
    folder = root / "instrument"
    folder.mkdir(parents=True)
    watch = [{"path": str(folder), "pipeline": "lab-qc/exploris", "owner": "op@lab.org",
              "settle_seconds": 0.5, "poll_interval": 0.5}]
    d = Daemon(root, watch=watch)
    d.setup_lab(mq=False)
    return d, folder


def _hub(root: Path, a_url: str, a: Daemon, b: Daemon) -> Daemon:
    root.mkdir(parents=True)
    hub = Daemon(root)
    hub.cli("user", "add", "op@lab.org", "--admin", "--password-stdin", input="operator-pass\n")
    token_file = root / "a.token"
    token_file.write_text(f"{a.token}\n")
    with open(hub.config, "a") as f:  # batch = 1: a pull of several runs takes several pages
        f.write(f'[hub]\ninterval_seconds = 1\nbatch = 1\ntimeout_seconds = 5\n'
                f'[[hub.source]]\nname = "orbi-a"\nurl = "{a_url}"\ntoken_file = "{token_file}"\n'
                f'[[hub.source]]\nname = "orbi-b"\nurl = "{b.base}"\ntoken = "{b.token}"\n'
                'pipelines = {"lab-qc/exploris" = "lab-qc/exploris-b"}\n')
    return hub


def _done(d: Daemon, n: int) -> list[dict[str, Any]] | None:
    runs = d.runs()
    return runs if len(runs) == n and all(r["state"] == "done" for r in runs) else None


def _pulled(hub: Daemon, want: dict[str, int]) -> list[dict[str, Any]] | None:
    """The hub's runs once it holds ``want`` (origin -> number of runs), all done."""
    runs = hub.runs()
    counts = {o: sum(r["origin"] == o for r in runs) for o in want}
    return runs if counts == want and all(r["state"] == "done" for r in runs) else None


def _exactly_once(runs: list[dict[str, Any]], a: Daemon, b: Daemon) -> None:
    origins = [(r["origin"], r["origin_key"]) for r in runs]
    assert len(origins) == len(set(origins)), origins
    assert {k for o, k in origins if o == "orbi-a"} == {r["run_key"] for r in a.runs()}
    assert {k for o, k in origins if o == "orbi-b"} == {r["run_key"] for r in b.runs()}


def test_hub_pulls_both_instruments_exactly_once_across_kills(tmp_path: Path) -> None:
    a, fa = _instrument(tmp_path / "a")
    b, fb = _instrument(tmp_path / "b")
    hub = proxy = None
    try:
        a.start()
        b.start()
        proxy = GatedProxy(a.base)  # the hub reaches A through it
        for i in range(2):
            copy_raw(RAW, fa / f"a{i}.raw")
            copy_raw(RAW, fb / f"b{i}.raw")
        wait_for(lambda: _done(a, 2) and _done(b, 2), 90, "both instruments to process their files")
        hub = _hub(tmp_path / "hub", proxy.base, a, b)
        hub.start()
        runs = wait_for(lambda: _pulled(hub, {"orbi-a": 2, "orbi-b": 2}), 60, "the hub to pull four runs")
        _exactly_once(runs, a, b)
        # each source's pipeline: by name for orbi-a, as configured for orbi-b
        assert {r["pipeline"] for r in runs if r["origin"] == "orbi-a"} == {"exploris"}
        assert {r["pipeline"] for r in runs if r["origin"] == "orbi-b"} == {"exploris-b"}
        # the values came along, and the hub judged the runs itself
        qc = hub.api("/api/qc-data", {"project": "lab-qc", "pipeline": "exploris"})
        src = a.qc_data()
        assert sorted(qc["RawFile"]) == sorted(src["RawFile"]) == ["a0", "a1"]
        metrics = [c for c, v in src.items() if v and all(isinstance(x, float) for x in v)]
        assert metrics
        for c in metrics:  # the same numbers, in the hub as on the instrument
            assert sorted(qc[c]) == sorted(src[c]), c
        assert all(v is not None for v in qc["Verdict"])

        # the hub is down while A takes four more files
        assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
        for i in range(2, 6):
            copy_raw(RAW, fa / f"a{i}.raw")
        wait_for(lambda: _done(a, 6), 90, "A to process four more files")
        # restarted, it pulls them one a page (batch = 1); it is SIGKILLed when it asks for the third
        # page: two pages are committed, two are not
        (cursor_before,) = _hub_db(hub, "SELECT cursor FROM hub_cursors WHERE source = 'orbi-a'")[0]
        proxy.held.clear()
        proxy.hold_at = proxy.count + 3
        hub.start()
        assert proxy.held.wait(60), "the restarted hub did not ask for a third page"
        assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
        proxy.release.set()
        [(pulled, cursor_mid)] = _hub_db(hub, "SELECT count(*), (SELECT cursor FROM hub_cursors WHERE source = 'orbi-a')"
                                              " FROM runs WHERE origin = 'orbi-a'")
        assert pulled == 4 and cursor_mid > cursor_before  # killed mid-pull: half of the new runs in
        hub.start()
        runs = wait_for(lambda: _pulled(hub, {"orbi-a": 6, "orbi-b": 2}), 60, "the restarted hub to finish the pull")
        _exactly_once(runs, a, b)

        # B is SIGKILLed; a file arrives while it is down; the hub goes on and takes it once B is back
        assert b.stop(signal.SIGKILL) == -signal.SIGKILL
        copy_raw(RAW, fb / "b-while-down.raw")
        a.api("/api/flag/create", {"project": "lab-qc", "pipeline": "exploris", "run_keys": [a.runs()[-1]["run_key"]]})
        wait_for(lambda: any(r["flagged"] for r in hub.runs()), 30, "the hub to pull A's flag while B is down")
        b.start()
        wait_for(lambda: _done(b, 3), 90, "B to process the file that arrived while it was down")
        runs = wait_for(lambda: _pulled(hub, {"orbi-a": 6, "orbi-b": 3}), 60, "the hub to pull B's new run")
        _exactly_once(runs, a, b)
        assert len(runs) == 9 and sum(r["flagged"] for r in runs) == 1
        status = hub.api("/api/status", method="GET")
        assert status["hub_sources"]["orbi-b"]["ok"] is True
    finally:
        if proxy is not None:
            proxy.close()
        for d in (hub, a, b):
            if d is not None:
                d.close()
