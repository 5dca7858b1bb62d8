"""Issue 11, "a first hour without a dead end", with real processes: the daemon, its CLI and its API.

The watched folder's owner sees their runs; check-config checks what run checks; commands say
which data dir they use and doctor compares it with the running daemon's; rejected files are
listed; a truncated file that later grew is superseded by its complete version; runs can be
deleted; cancel/retry on a finished run say so.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from daemonproc import DATA, REPO, Daemon, copy_raw, wait_for, write_toml


def cli_with(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with another configuration file than the daemon's."""
    return subprocess.run([sys.executable, "-m", "qcdaemon", *args, "--config", str(config)], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def _lab(d: Daemon, *, member: bool) -> None:
    d.cli("user", "add", "op@lab.org", "--password-stdin", input="operator-pass\n")
    d.cli("user", "add", "boss@lab.org", "--admin", "--password-stdin", input="boss-password-1\n")
    d.cli("project", "add", "Lab QC", *(["--member", "op@lab.org"] if member else []))
    d.cli("pipeline", "add", "--project", "lab-qc", "--name", "Exploris")


def _daemon(tmp_path: Path, instrument: Path, **watch: Any) -> Daemon:
    w = {"path": str(instrument), "pipeline": "lab-qc/exploris", "owner": "op@lab.org", "settle_seconds": 0.5,
         "poll_interval": 0.5, **watch}
    return Daemon(tmp_path, watch=[w])


def _call(d: Daemon, path: str, body: dict[str, Any] | None = None, *, token: str | None = None,
          method: str = "POST") -> tuple[int, Any]:
    data = json.dumps(body or {}).encode() if method == "POST" else None
    req = urllib.request.Request(d.base + path, data=data, method=method, headers={
        "Authorization": f"Token {token or d.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_watch_owner_sees_their_runs_and_check_config_checks_what_run_checks(tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    instrument.mkdir()
    d = _daemon(tmp_path, instrument)
    _lab(d, member=False)  # as the issue found it: a project without members
    try:
        # before start: the owner is not a member yet; check-config warns (the daemon fixes it), passes
        res = d.cli("check-config")
        assert res.returncode == 0 and "op@lab.org is not a member" in res.stderr
        assert f"data dir {d.data};" in res.stderr and str(d.config) in res.stderr
        # check-config refuses what run refuses: an unknown pipeline, an unknown owner
        bad = tmp_path / "bad.toml"
        write_toml(bad, {"paths": {"data_dir": str(d.data)}, "watch": [
            {"path": str(instrument), "pipeline": "lab-qc/nope", "owner": "op@lab.org"},
            {"path": str(tmp_path / "later"), "pipeline": "lab-qc/exploris", "owner": "ghost@lab.org"}]})
        res = cli_with(bad, "check-config")
        assert res.returncode == 2, res.stderr
        assert "watch[0].pipeline: no pipeline 'lab-qc/nope'" in res.stderr
        assert "watch[1].owner: no user 'ghost@lab.org'" in res.stderr
        assert f"watch[1].path: {tmp_path / 'later'} does not exist (yet)" in res.stderr
        run = cli_with(bad, "run")  # and run refuses the same file
        assert run.returncode == 2 and "watch[0].pipeline" in run.stdout + run.stderr

        d.start()
        copy_raw("small2.RAW", instrument / "HeLa_001.raw")
        wait_for(lambda: d.finished(1), 60, "the run")
        # the owner (a plain user, no admin) sees the project and the run's values
        assert [p["slug"] for p in d.api("/api/projects")] == ["lab-qc"]
        assert d.qc_data()["RawFile"] == ["HeLa_001"]
        log = d.log.read_text()
        assert '"event": "watch_owner_added_to_project"' in log and '"owner": "op@lab.org"' in log
        # while the daemon holds the store, check-config asks it; the owner is a member now
        res = d.cli("check-config")
        assert res.returncode == 0 and "not a member" not in res.stderr, res.stderr
        res = cli_with(bad, "check-config")  # the daemon checks the watches of the file given, not its own
        assert res.returncode == 2 and "watch[0].pipeline: no pipeline 'lab-qc/nope'" in res.stderr, res.stderr

        # doctor: the daemon on the port serves this data dir ...
        doc = d.cli("doctor", check=False)
        assert re.search(rf"port 127\.0\.0\.1:{d.port}\s+OK\s+daemon running .*serving this data dir", doc.stdout), doc.stdout
        assert re.search(r"watch\[0\]\.owner\s+OK", doc.stdout), doc.stdout
        # ... and not the data dir of another configuration that names the same port
        other = tmp_path / "other.toml"
        write_toml(other, {"server": {"port": d.port}, "paths": {"data_dir": str(tmp_path / "other-data")}})
        doc = cli_with(other, "doctor")
        line = next(ln for ln in doc.stdout.splitlines() if ln.startswith("port "))
        assert doc.returncode == 1 and "FAIL" in line and "serves another data dir" in line, doc.stdout

        # list commands
        pipelines = json.loads(d.cli("list", "pipelines", "--json").stdout)
        assert [(p["project"], p["slug"]) for p in pipelines] == [("lab-qc", "exploris")]
        assert re.fullmatch(r"[0-9a-f-]{36}", pipelines[0]["uuid"])
        table = d.cli("list", "pipelines").stdout
        assert pipelines[0]["uuid"] in table and table.splitlines()[0].split()[:3] == ["PROJECT", "SLUG", "UUID"]
        projects = json.loads(d.cli("list", "projects", "--json").stdout)
        assert projects == [{"slug": "lab-qc", "name": "Lab QC", "description": "", "members": ["op@lab.org"]}]
        users = json.loads(d.cli("list", "users", "--json").stdout)
        assert [(u["email"], u["is_admin"]) for u in users] == [("boss@lab.org", True), ("op@lab.org", False)]
        watches = json.loads(d.cli("list", "watches", "--json").stdout)
        assert watches[0]["path"] == str(instrument) and watches[0]["exists"] is True
        assert d.stop() == 0
    finally:
        d.close()


def _login(d: Daemon, email: str, password: str) -> tuple[int, dict[str, str], str, urllib.request.OpenerDirector]:
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    page = opener.open(d.base + "/", timeout=10).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]*)"', page)[1]  # type: ignore[index]
    form = urllib.parse.urlencode({"username": email, "password": password, "csrfmiddlewaretoken": csrf,
                                   "next": "/"}).encode()
    req = urllib.request.Request(d.base + "/", data=form, headers={"Referer": d.base + "/"})
    try:
        r = opener.open(req, timeout=10)
        return r.status, dict(r.headers), r.read().decode(), opener
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode(), opener


def test_rejected_files_superseded_runs_delete_cancel_and_retry(tmp_path: Path) -> None:
    instrument = tmp_path / "instrument"
    instrument.mkdir()
    d = _daemon(tmp_path, instrument)
    _lab(d, member=True)
    try:
        d.start()
        (instrument / "notes.raw").write_bytes(b"a text file, not an acquisition\n" * 20)
        full = (DATA / "raw" / "small2.RAW").read_bytes()
        grow = instrument / "grow.raw"
        grow.write_bytes(full[:300_000])  # a copy that stalled half-way
        runs = wait_for(lambda: d.finished(1), 60, "the truncated run")
        [first] = runs
        assert first["state"] == "failed" and "truncated" in first["stages"][0]["error"]

        # the rejected file, with its reason: in the API, the CLI and the home page
        rejected = wait_for(lambda: _call(d, "/api/rejected", method="GET")[1], 30, "the rejected file")
        assert [(f["name"], f["pipeline"]) for f in rejected] == [("notes.raw", "lab-qc/exploris")]
        assert "not a Thermo RAW file" in rejected[0]["reason"]
        listing = d.cli("runs").stdout
        assert "rejected files (not runs): 1" in listing and "notes.raw" in listing
        status, headers, page, browser = _login(d, "op@lab.org", "operator-pass")
        assert status == 302
        home = browser.open(d.base + "/", timeout=10).read().decode()
        assert "<h2>Rejected files</h2>" in home and "notes.raw" in home and "not a Thermo RAW file" in home
        # a wrong password: the page for a browser, the status and a header for a script
        status, headers, page, _ = _login(d, "op@lab.org", "not-the-password")
        assert status == 401 and headers["X-Login-Failed"] == "wrong e-mail or password"
        assert "Wrong e-mail or password" in page

        grow.write_bytes(full)  # the copy completed: a new version of the same file
        runs = wait_for(lambda: d.finished(2), 60, "the complete version")
        by_key = {r["run_key"]: r for r in runs}
        [second] = [r for r in runs if r["run_key"] != first["run_key"]]
        assert second["state"] == "done"
        # the failed version keeps its history, and leaves qc-data
        assert by_key[first["run_key"]]["superseded_by"] == second["run_key"]
        assert d.qc_data()["RunKey"] == [second["run_key"]]
        listing = d.cli("runs").stdout
        assert f"superseded by {second['run_key']}" in listing
        # skip and failure reasons: the truncated run's native failure, the unconfigured RawTools
        assert "native failed:" in listing and "truncated" in listing
        assert "rawtools skipped: RawTools" in listing

        # cancel and retry on a finished run say that nothing happened
        status, body = _call(d, "/api/runs/cancel", {"run_key": second["run_key"]})
        assert status == 200 and body["cancelled"] is False and body["stopping"] == []
        status, body = _call(d, "/api/runs/retry", {"run_key": second["run_key"], "stages": ["rawtools"]})
        assert status == 409 and "only failed or cancelled stages are retried" in body["detail"]
        res = d.cli("retry", second["run_key"], check=False)
        assert res.returncode == 1 and "no failed or cancelled stage" in res.stderr

        # deleting a run: admins only; values and work folder go, the instrument's file stays
        status, body = _call(d, "/api/runs/delete", {"run_key": first["run_key"]})
        assert status == 403
        work = d.data / "work" / second["run_key"]
        assert work.is_dir()
        out = json.loads(d.cli("delete", second["run_key"]).stdout)
        assert out["deleted"] is True and str(work) in out["removed"] and not work.exists()
        assert grow.read_bytes() == full
        assert [r["run_key"] for r in d.runs()] == [first["run_key"]]
        assert d.qc_data() == {}  # the superseded run stays hidden
        assert d.stop() == 0
    finally:
        d.close()
