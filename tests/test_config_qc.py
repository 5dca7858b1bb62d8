"""The config file's [[qc]] section: what loads, and the error that names the key for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_qcdaemon

from qcdaemon.config import config_from_dict, load_config
from qcdaemon.errors import ConfigError

MS1 = "Ms1MedianSummedIntensity"


def qc(**entry: object) -> dict:
    return {"qc": [{"pipeline": "lab/qc", **entry}]}


def test_a_qc_table_loads_with_rules_in_the_api_form_and_catalogue_fields() -> None:
    cfg = config_from_dict(qc(auto_guide_runs=10, offline_hours=12, metrics={
        MS1: {"rules": [{"rule": "levey_jennings", "warn": 2.5, "fail": 3}, "cusum_mean"], "direction": "both",
              "label": "MS1 intensity", "sentinels": [{"value": 0, "reason": "no MS1"}]},
        "NumMs2Scans": {"rules": "plot_only"},
    }))
    (q,) = cfg.qc
    assert (q.pipeline, q.auto_guide_runs, q.offline_hours) == ("lab/qc", 10, 12.0)
    m = q.metrics[MS1]
    # rules come out as the API stores them: every parameter given, defaults filled in
    assert m.rules == ({"rule": "levey_jennings", "warn": 2.5, "fail": 3.0}, {"rule": "cusum_mean", "k": 0.5, "h": 5.0})
    assert m.overrides == {"direction": "both", "label": "MS1 intensity", "sentinels": [{"value": 0, "reason": "no MS1"}]}
    assert q.metrics["NumMs2Scans"].rules == ({"rule": "plot_only"},) and q.metrics["NumMs2Scans"].overrides == {}


def test_the_toml_table_form_reads_like_the_example(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[[qc]]\npipeline = "lab/a"\nauto_guide_runs = 0\noffline_hours = 48\n[qc.metrics."MedianMassDrift(ppm)"]\nrules = [{ rule = "cutoff", max = 5 }]\n'
                 '[[qc]]\npipeline = "lab/b"\nmetrics = { "NumMs2Scans" = { shown = false } }\n')
    a, b = load_config(f).qc
    assert (a.auto_guide_runs, a.offline_hours, b.auto_guide_runs, b.offline_hours) == (0, 48.0, None, None)
    assert a.metrics["MedianMassDrift(ppm)"].rules == ({"rule": "cutoff", "min": None, "max": 5.0, "warn_min": None,
                                                        "warn_max": None},)
    assert b.pipeline == "lab/b" and b.metrics["NumMs2Scans"].overrides == {"shown": False}


@pytest.mark.parametrize("entry, key, words", [
    ({"pipeline": ""}, "qc[0].pipeline", "required"),
    ({"auto_guide_runs": -1}, "qc[0].auto_guide_runs", "whole number"),
    ({"auto_guide_runs": True}, "qc[0].auto_guide_runs", "whole number"),
    ({"offline_hours": 0}, "qc[0].offline_hours", "positive"),
    ({"guide_runs": 3}, "qc[0].guide_runs", "unknown key"),
    ({"metrics": {MS1: {"rules": [{"rule": "levey_jenkins"}]}}}, f'qc[0].metrics."{MS1}".rules', "unknown rule"),
    ({"metrics": {MS1: {"rules": [{"rule": "levey_jennings", "warn": 4, "fail": 3}]}}}, f'qc[0].metrics."{MS1}".rules',
     "must not exceed"),
    ({"metrics": {MS1: {"rules": ["off", "levey_jennings"]}}}, f'qc[0].metrics."{MS1}".rules', "stand alone"),
    ({"metrics": {MS1: {"direction": "up"}}}, f'qc[0].metrics."{MS1}".direction', "up"),
    ({"metrics": {MS1: {"shown": "yes"}}}, f'qc[0].metrics."{MS1}".shown', "true or false"),
    ({"metrics": {MS1: {"colour": "red"}}}, f'qc[0].metrics."{MS1}".colour', "unknown key"),
    ({"metrics": {MS1: {}}}, f'qc[0].metrics."{MS1}"', "give rules"),
    ({"metrics": {MS1: "levey_jennings"}}, f'qc[0].metrics."{MS1}"', "expected a table"),
])
def test_a_bad_qc_value_is_refused_naming_its_key(entry: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(qc(**entry))
    assert str(exc.value).startswith(key + ":") and words in str(exc.value)


def test_one_qc_table_per_pipeline() -> None:
    with pytest.raises(ConfigError, match=r"^qc\[1\]\.pipeline: 'lab/qc' is also qc\[0\]"):
        config_from_dict({"qc": [{"pipeline": "lab/qc"}, {"pipeline": "lab/qc"}]})


def test_check_config_names_the_bad_key_and_warns_of_an_unknown_metric(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[paths]\ndata_dir = "{tmp_path / "d"}"\n[[qc]]\npipeline = "lab/qc"\n'
                   f'[qc.metrics."{MS1}"]\nrules = [{{ rule = "cusum_mean", h = -1 }}]\n')
    res = run_qcdaemon("check-config", "--config", str(bad))
    assert res.returncode == 2 and f'qc[0].metrics."{MS1}".rules: h must be greater than 0' in res.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text(f'[paths]\ndata_dir = "{tmp_path / "d"}"\n[[qc]]\npipeline = "lab/qc"\n'
                    '[qc.metrics."Ms1MedianSumedIntensity"]\nshown = true\n')
    res = run_qcdaemon("check-config", "--config", str(typo))
    # the unknown column is a warning (a source added later may write it); the pipeline that does
    # not exist (no store yet) is an error, as for [[watch]]
    assert 'warning: qc[0].metrics."Ms1MedianSumedIntensity": not a QC column qcdaemon knows' in res.stderr
    assert res.returncode == 2 and "configuration error: qc[0].pipeline: no pipeline 'lab/qc'" in res.stderr
