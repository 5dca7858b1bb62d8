"""The ``qcdaemon qc`` commands as an operator runs them (real ``python -m qcdaemon`` processes on a
real database): status, verdicts, guide sets, annotations, exclusions and rules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, run_qcdaemon, write_config

DEMO = ("demo-project", "tmt-qc-demo")


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli-qc")
    path = write_config(tmp / "qcdaemon.toml", {
        "server": {"port": free_port()},
        "paths": {"data_dir": str(tmp / "data"), "log_dir": str(tmp / "logs")},
        "log": {"format": "json"},
    })
    assert run_qcdaemon("bootstrap-demo", "--config", str(path)).returncode == 0
    return path


def cli(cfg_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_qcdaemon(*args, "--config", str(cfg_path))


def ok_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    value, _end = json.JSONDecoder().raw_decode(proc.stdout)
    return value


def test_status_and_verdicts_of_the_demo(cfg_path: Path) -> None:
    status = ok_json(cli(cfg_path, "qc", "status", "--json"))
    (demo,) = [p for p in status if (p["project"], p["pipeline"]) == DEMO]
    # three runs, at most two with a given metric: no guide set has 5 usable runs yet
    assert demo["status"] == "NO_THRESHOLD" and "not enough runs for limits" in demo["reason"]
    text = cli(cfg_path, "qc", "status")
    assert text.returncode == 0 and "NO_THRESHOLD" in text.stdout and "demo-project/tmt-qc-demo" in text.stdout
    verdicts = ok_json(cli(cfg_path, "qc", "verdicts", *DEMO, "--json"))
    assert len(verdicts["runs"]) == 3 and {r["verdict"] for r in verdicts["runs"]} == {"not enough data"}


def test_edits_from_the_command_line(cfg_path: Path) -> None:
    keys = [r["run_key"] for r in ok_json(cli(cfg_path, "qc", "verdicts", *DEMO, "--json"))["runs"]]
    gs = ok_json(cli(cfg_path, "qc", "guide-set-add", *DEMO, "--label", "all three", *[a for k in keys for a in ("--run", k)]))
    assert gs["run_keys"] == sorted(keys) and gs["recomputed"] == 3
    sets = ok_json(cli(cfg_path, "qc", "guide-sets", *DEMO))["guide_sets"]
    assert gs["id"] in {g["id"] for g in sets} and any(g["automatic"] for g in sets)
    ann = ok_json(cli(cfg_path, "qc", "annotate", *DEMO, "maintenance", "2019-11-01T08:00:00", "--text", "PM",
                      "--author", "user@email.com"))
    assert ann["author"] == "user@email.com" and ann["time"] == "2019-11-01T08:00:00+00:00"
    ex = ok_json(cli(cfg_path, "qc", "exclude", *DEMO, "TotalScans", keys[0], "--reason", "test"))
    assert ex["excluded"] is True and ex["run_keys"] == [keys[0]]
    assert ok_json(cli(cfg_path, "qc", "exclude", *DEMO, "TotalScans", keys[0], "--undo"))["excluded"] is False
    rules = ok_json(cli(cfg_path, "qc", "rules", *DEMO, "TotalScans", '[{"rule": "cutoff", "min": 100}]'))
    assert rules["rules"] == [{"rule": "cutoff", "min": 100.0, "max": None, "warn_min": None, "warn_max": None}]
    # a fixed cutoff needs no guide set: the small2 run (95 scans) now fails
    verdicts = ok_json(cli(cfg_path, "qc", "verdicts", *DEMO, "--json"))["runs"]
    failing = [r for r in verdicts if r["verdict"] == "fail"]
    assert len(failing) == 1 and "small2" in failing[0]["name"]
    assert failing[0]["reasons"][0]["detail"] == "below min 100"
    assert ok_json(cli(cfg_path, "qc", "rules", *DEMO, "TotalScans", "null"))["rules"] is None
    assert ok_json(cli(cfg_path, "qc", "guide-set-rm", *DEMO, gs["id"]))["deleted"] == gs["id"]
    assert ok_json(cli(cfg_path, "qc", "recompute", *DEMO))["recomputed"] == 3


@pytest.mark.parametrize(("args", "word"), [
    (("rules", *DEMO, "TotalScans", "{not json"), "not valid JSON"),
    (("rules", *DEMO, "TotalScans", '[{"rule": "westgard", "rules": ["9-9s"]}]'), "westgard"),
    (("annotate", *DEMO, "party", "2019-11-01T08:00:00"), "kind"),
    (("annotate", *DEMO, "other", "2019-11-01T08:00:00", "--author", "nobody@example.org"), "nobody"),
    (("guide-set-add", *DEMO, "--start", "2019-11-02T00:00:00Z", "--end", "2019-11-01T00:00:00Z"), "before start"),
    (("verdicts", "demo-project", "no-such-pipeline"), "Missing permissions"),
])
def test_bad_input_is_an_error_message(cfg_path: Path, args: tuple[str, ...], word: str) -> None:
    proc = cli(cfg_path, "qc", *args)
    assert proc.returncode == 1 and word in proc.stderr and "Traceback" not in proc.stderr
