"""[[qc]] with a real daemon process: applied at start, refused to the API and the CLI while the
file sets it, unchanged by a restart with the same file, back to the defaults once the file stops
naming it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from daemonproc import Daemon

MS1 = "Ms1MedianSummedIntensity"
QC = f"""
[[qc]]
pipeline = "lab-qc/exploris"
offline_hours = 6

[qc.metrics."{MS1}"]
rules = [{{ rule = "cutoff", max = 1000 }}]
direction = "both"
"""


def call(d: Daemon, token: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(d.base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_qc_settings_from_the_config_file_in_a_running_daemon(tmp_path) -> None:
    d = Daemon(tmp_path)
    try:
        d.setup_lab(mq=False)
        d.cli("user", "add", "boss@lab.org", "--admin", "--password-stdin", input="boss-password-1\n")
        plain = d.config.read_text()
        d.config.write_text(plain + QC)
        assert d.cli("check-config").returncode == 0
        d.start()
        boss = d.cli("token", "create", "boss@lab.org").stdout.strip()
        scope = {"project": "lab-qc", "pipeline": "exploris"}

        status, listing = call(d, boss, "/api/qc/metrics", scope)
        assert status == 200 and listing["offline_hours"] == 6.0 and listing["config_file"] == str(d.config)
        (ms1,) = [m for m in listing["metrics"] if m["column"] == MS1]
        assert ms1["rules"] == [{"rule": "cutoff", "min": None, "max": 1000.0, "warn_min": None, "warn_max": None}]
        assert ms1["direction"] == "both" and ms1["config_file"] == str(d.config)

        # an admin may change rules, but not those the file sets: through the API ...
        status, err = call(d, boss, "/api/qc/rules", {**scope, "metric": MS1, "rules": ["off"]})
        assert status == 409 and str(d.config) in err["detail"]
        # ... nor through the CLI (which asks the running daemon)
        res = d.cli("qc", "rules", "lab-qc", "exploris", MS1, '["off"]', check=False)
        assert res.returncode != 0 and str(d.config) in res.stderr + res.stdout
        assert call(d, boss, "/api/qc/rules", {**scope, "metric": "NumMs2Scans", "rules": ["robust"]})[0] == 200
        assert d.stop() == 0
        assert d.log.read_text().count('"qc_config_applied"') == 1

        # the same file again: nothing to apply
        d.start()
        assert d.stop() == 0
        assert d.log.read_text().count('"qc_config_applied"') == 1

        # the file no longer names the metric: back to the defaults; the API's edit stays
        d.config.write_text(plain + QC.split("[qc.metrics")[0])
        d.start()
        status, listing = call(d, boss, "/api/qc/metrics", scope)
        (ms1,) = [m for m in listing["metrics"] if m["column"] == MS1]
        assert ms1["config_file"] is None and ms1["direction"] == "higher"
        assert [r["rule"] for r in ms1["rules"]] == ["levey_jennings", "westgard"]
        (ms2,) = [m for m in listing["metrics"] if m["column"] == "NumMs2Scans"]
        assert ms2["rules"] == [{"rule": "robust", "warn": 2.0, "fail": 3.0}] and ms2["config_file"] is None
        assert listing["offline_hours"] == 6.0 and listing["config_file"] == str(d.config)
        assert call(d, boss, "/api/qc/rules", {**scope, "metric": MS1, "rules": ["off"]})[0] == 200
        assert d.stop() == 0
        assert d.log.read_text().count('"qc_config_applied"') == 2
    finally:
        d.close()
