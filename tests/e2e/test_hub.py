"""The lab-wide view (issue 17): two instrument daemons and a hub, all real processes on loopback.

The instruments watch a folder each and compute the native metrics (and chromatograms) of real RAW
files; instrument A also runs the MaxQuant stand-in (protein groups), no RawTools.  The hub pulls
them by ``/api/changes`` and each run's data by ``/api/changes/run``.  Each run must appear in the
hub exactly once, with its origin and its protein groups and chromatograms as on the instrument,
also after the hub is SIGKILLed mid-pull (between change pages, and in the middle of a run's
protein pages) and after an instrument daemon is SIGKILLed and restarted; a run deleted on the
instrument disappears from the hub once; a flag given on the hub survives the instrument's changes.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
from daemonproc import STANDIN, Daemon, copy_raw, wait_for

RAW = "small2.RAW"
MAXQUANT = {"command": [sys.executable, str(STANDIN)], "runtime": "none", "timeout_seconds": 60}


class GatedProxy:
    """A real HTTP proxy on loopback in front of an instrument daemon.  It counts the requests for
    ``/api/changes`` (``count``) and of protein pages of ``/api/changes/run`` (``groups``) and holds
    the ``hold_at``-th change page or the ``hold_groups_at``-th protein page until released: the hub,
    which asks for the next page only after committing the last, is then known to be in the middle
    of a pull."""

    def __init__(self, target: str) -> None:
        self.target, self.count, self.hold_at, self.groups, self.hold_groups_at = target, 0, 0, 0, 0
        self.held, self.release, self.lock = threading.Event(), threading.Event(), threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                page = self.path.startswith("/api/changes?")
                groups = self.path.startswith("/api/changes/run?") and "part=protein_groups" in self.path
                with proxy.lock:
                    proxy.count += page
                    proxy.groups += groups
                    hold = ((page and proxy.hold_at and proxy.count == proxy.hold_at)
                            or (groups and proxy.hold_groups_at and proxy.groups == proxy.hold_groups_at))
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


def _instrument(root: Path, mq: bool = False) -> tuple[Daemon, Path]:
    folder = root / "instrument"
    folder.mkdir(parents=True)
    watch = [{"path": str(folder), "pipeline": "lab-qc/exploris", "owner": "op@lab.org",
              "settle_seconds": 0.5, "poll_interval": 0.5}]
    d = Daemon(root, watch=watch, engine={"maxquant": MAXQUANT} if mq else None)
    d.setup_lab(mq=mq)
    return d, folder


def _hub(root: Path, a_url: str, a: Daemon, b: Daemon) -> Daemon:
    root.mkdir(parents=True)
    hub = Daemon(root)
    hub.cli("user", "add", "op@lab.org", "--admin", "--password-stdin", input="operator-pass\n")
    token_file = root / "a.token"
    token_file.write_text(f"{a.token}\n")
    with open(hub.config, "a") as f:  # batch = 1: a pull of several runs takes several pages
        f.write(f'[hub]\ninterval_seconds = 1\nbatch = 1\ndata_batch = 5\ntimeout_seconds = 5\n'
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


SCOPE = {"project": "lab-qc", "pipeline": "exploris"}
COLUMNS = ["Fasta headers", "Score", "Intensity", "Peptides", "Unique peptides", "Q-value", "id",
           "Reporter intensity corrected 1"]


def _data_of(d: Daemon, run: dict[str, Any], key_of: dict[str, str]) -> dict[str, Any]:
    """What the routes show of one run: protein names, protein groups (the run key given as the
    instrument's, through ``key_of``) and chromatograms (what the run page draws)."""
    raw = [run["name"].rsplit(".", 1)[0]]
    names = d.api("/api/protein-names", {**SCOPE, "raw_files": raw})
    groups = d.api("/api/protein-groups", {**SCOPE, "raw_files": raw, "columns": COLUMNS,
                                           "protein_names": names.get("protein_names", [])})
    if groups:
        groups["RunKey"] = {i: key_of[k] for i, k in groups["RunKey"].items()}
    chroms = d.api("/api/chromatograms", {**SCOPE, "run_key": run["run_key"]})["chromatograms"]
    return {"names": names, "groups": groups, "chromatograms": chroms}


def _same_data(hub: Daemon, a: Daemon) -> int:
    """Every run of A shows the same on the hub as on A; returns how many protein groups that was."""
    pulled = {r["origin_key"]: r for r in hub.runs() if r["origin"] == "orbi-a"}
    n = 0
    for run in a.runs():
        want = _data_of(a, run, {run["run_key"]: run["run_key"]})
        got = _data_of(hub, pulled[run["run_key"]], {pulled[run["run_key"]]["run_key"]: run["run_key"]})
        assert got == want, run["name"]
        assert want["chromatograms"] and want["groups"]
        n += len(want["names"]["protein_names"])
    return n


def _settled(hub: Daemon, a: Daemon, n: int) -> bool:
    try:
        return _same_data(hub, a) == n
    except (AssertionError, KeyError):  # not yet (the hub fetches a run's data after its change)
        return False


def _delete(d: Daemon, run_key: str) -> Any:
    """An admin of the instrument (added before it started) deletes a run (``POST /api/runs/delete``)."""
    token = d.cli("token", "create", "admin@lab.org").stdout.strip()
    req = urllib.request.Request(d.base + "/api/runs/delete", data=json.dumps({"run_key": run_key}).encode(),
                                 headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_hub_pulls_both_instruments_exactly_once_across_kills(tmp_path: Path) -> None:
    a, fa = _instrument(tmp_path / "a", mq=True)
    b, fb = _instrument(tmp_path / "b")
    a.cli("user", "add", "admin@lab.org", "--admin", "--password-stdin", input="admin-password-1\n")
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
        # the hub judges after a pull's pages and the runs' data: wait for its verdicts
        qc = wait_for(lambda: (q := hub.api("/api/qc-data", SCOPE)) and all(v is not None for v in q["Verdict"]) and q,
                      30, "the hub's verdicts")
        src = a.qc_data()
        assert sorted(qc["RawFile"]) == sorted(src["RawFile"]) == ["a0", "a1"]
        metrics = [c for c, v in src.items() if v and all(isinstance(x, float) for x in v)]
        assert metrics
        for c in metrics:  # the same numbers, in the hub as on the instrument
            assert sorted(qc[c]) == sorted(src[c]), c
        assert all(v is not None for v in qc["Verdict"])
        # the protein groups (19 a run, four pages of five) and chromatograms came along: equal answers
        assert _same_data(hub, a) == 2 * 19

        # the hub is down while A takes four more files
        assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
        for i in range(2, 6):
            copy_raw(RAW, fa / f"a{i}.raw")
        wait_for(lambda: _done(a, 6), 90, "A to process four more files")
        # restarted, it pulls them one a page (batch = 1); it is SIGKILLed when it asks for the third
        # page: two pages are committed, two are not
        (cursor_before,) = _hub_db(hub, "SELECT cursor FROM hub_cursors WHERE source = 'orbi-a'")[0]
        groups_before = proxy.groups
        proxy.held.clear()
        proxy.hold_at = proxy.count + 3
        hub.start()
        assert proxy.held.wait(60), "the restarted hub did not ask for a third page"
        assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
        proxy.release.set()
        [(pulled, cursor_mid)] = _hub_db(hub, "SELECT count(*), (SELECT cursor FROM hub_cursors WHERE source = 'orbi-a')"
                                              " FROM runs WHERE origin = 'orbi-a'")
        assert pulled == 4 and cursor_mid > cursor_before  # killed mid-pull: half of the new runs in
        assert proxy.groups == groups_before + 2 * 4  # the two committed runs' protein pages were fetched
        # restarted, SIGKILLed again in the middle of the next run's protein pages (its second of four)
        proxy.held.clear()
        proxy.release.clear()
        proxy.hold_at, proxy.hold_groups_at = 0, proxy.groups + 2
        hub.start()
        assert proxy.held.wait(60), "the restarted hub did not ask for a run's second protein page"
        assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
        proxy.release.set()
        [(pending,)] = _hub_db(hub, "SELECT count(*) FROM hub_runs h JOIN runs r ON r.id = h.run_id"
                                    " WHERE r.origin = 'orbi-a' AND h.data_pending")
        assert pending == 1  # its groups half in: still to be fetched, never counted as held
        proxy.hold_groups_at = 0
        hub.start()
        runs = wait_for(lambda: _pulled(hub, {"orbi-a": 6, "orbi-b": 2}), 60, "the restarted hub to finish the pull")
        _exactly_once(runs, a, b)
        wait_for(lambda: _settled(hub, a, 6 * 19), 60, "the hub to fetch every run's data")

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

        # a flag given on the hub survives the instrument's next change of that run (here: a reject)
        mine = next(r for r in runs if r["origin"] == "orbi-a" and not r["flagged"])
        hub.api("/api/flag/create", {**SCOPE, "run_keys": [mine["run_key"]]})
        a.api("/api/rawfile", {**SCOPE, "action": "reject", "run_keys": [mine["origin_key"]]})
        wait_for(lambda: next(r for r in hub.runs() if r["run_key"] == mine["run_key"])["use_downstream"] is False,
                 30, "the hub to pull A's reject")
        after = next(r for r in hub.runs() if r["run_key"] == mine["run_key"])
        assert after["flagged"] is True  # the hub's flag, the instrument's reject
        assert not next(r for r in a.runs() if r["run_key"] == mine["origin_key"])["flagged"]

        # a run deleted on A disappears from the hub, once: its data with it, the other runs untouched
        gone = a.runs()[0]
        [gone_here] = [r["run_key"] for r in hub.runs() if r["origin"] == "orbi-a" and r["origin_key"] == gone["run_key"]]
        assert _delete(a, gone["run_key"])["deleted"] is True
        runs = wait_for(lambda: _pulled(hub, {"orbi-a": 5, "orbi-b": 3}), 30, "the hub to drop the deleted run")
        _exactly_once(runs, a, b)
        wait_for(lambda: hub.api("/api/status", method="GET")["hub_sources"]["orbi-a"]["ok"], 10, "a further pull")
        assert len(hub.runs()) == 8
        # deleted once: one tombstone in the hub's own feed (what a hub of hubs would pull), for its copy
        feed = hub.api("/api/changes?since=0&limit=1000", method="GET")
        assert [d["run_key"] for d in feed["deleted"]] == [gone_here]
        assert hub.api("/api/protein-names", {**SCOPE, "raw_files": [gone["name"].rsplit(".", 1)[0]]}) == {}
        assert _same_data(hub, a) == 5 * 19
    finally:
        if proxy is not None:
            proxy.close()
        for d in (hub, a, b):
            if d is not None:
                d.close()
