"""Run verdicts with reasons, recomputation after edits, incremental = full, instrument status."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import statistics

import pytest

from qcdaemon.qc.catalogue import Catalogue
from qcdaemon.qc.guidesets import Annotation, GuideSet, Run
from qcdaemon.qc.rules import parse_rules
from qcdaemon.qc.verdicts import (
    FAIL,
    NOT_ENOUGH,
    PASS,
    WARN,
    Settings,
    chart,
    evaluate_pipeline,
    evaluate_run,
    instrument_status,
)

T0 = dt.datetime(2026, 2, 2, 7, 0, tzinfo=dt.UTC)
IDS = "IdentificationRate(IDs/Ms2Scan)"  # higher is better
DRIFT = "MedianMassDrift(ppm)"  # both sides
MS1 = "Ms1MedianSummedIntensity"  # higher is better, log scale
GUIDE = [0.50, 0.55, 0.45, 0.52, 0.48]
LJ_ONLY = parse_rules("levey_jennings")
NO_AUTO = Settings(default_rules=LJ_ONLY, auto_guide_runs=0)  # shown metrics: Levey-Jennings only


def at(i: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=i)


def runs_of(column: str, values, rejected=(), extra=None) -> list[Run]:
    out = []
    for i, v in enumerate(values):
        vals = {} if v is None else {column: v}
        if extra:
            vals |= extra(i)
        out.append(Run(f"rf{i + 1}", at(i), f"rf{i + 1}" in rejected, vals))
    return out


GS = GuideSet("gs1", start=at(0), end=at(4))


def test_a_fail_has_one_reason_with_value_limits_z_and_guide_set():
    m, s = statistics.mean(GUIDE), statistics.stdev(GUIDE)
    ev = evaluate_pipeline(runs_of(IDS, [*GUIDE, 0.30, m - 2.5 * s, 0.9]), NO_AUTO, [GS])
    v = ev.verdicts["rf6"]
    assert v.status == FAIL and len(v.reasons) == 1
    (r,) = v.reasons
    assert (r.metric, r.rule, r.severity, r.guide_set) == (IDS, "levey_jennings", "fail", "gs1")
    assert r.value == 0.30
    assert r.low == pytest.approx(m - 3 * s) and r.high is None  # one-sided: only low is a fault
    assert r.z == pytest.approx((0.30 - m) / s)
    assert "Identification rate" in r.text() and "gs1" in r.text()
    assert ev.verdicts["rf7"].status == WARN
    assert ev.verdicts["rf7"].reasons[0].low == pytest.approx(m - 2 * s)
    assert ev.verdicts["rf8"].status == PASS  # far above: more identifications are never a fault
    assert ev.verdicts["rf8"].checked == (IDS,)


def test_default_rules_add_the_westgard_run_rules():
    m, s = statistics.mean(GUIDE), statistics.stdev(GUIDE)
    v = evaluate_pipeline(runs_of(IDS, [*GUIDE, m - 2.5 * s, m - 2.2 * s]), Settings(auto_guide_runs=0),
                          [GS]).verdicts["rf7"]
    assert v.status == FAIL
    assert {(r.rule, r.detail, r.severity) for r in v.reasons} == {
        ("levey_jennings", "beyond mean ± 2·SD", "warn"), ("westgard", "2-2s", "fail")}


def test_log_scale_metrics_are_judged_on_log10_values():
    guide = [1.0e9, 2.0e9, 5.0e8, 1.2e9, 1.5e9]
    logs = [math.log10(x) for x in guide]
    m, s = statistics.mean(logs), statistics.stdev(logs)
    ev = evaluate_pipeline(runs_of(MS1, [*guide, 1.0e8, 9.0e8]), NO_AUTO, [GS])
    (r,) = ev.verdicts["rf6"].reasons
    assert r.z == pytest.approx((8.0 - m) / s)
    assert r.low == pytest.approx(10 ** (m - 3 * s))
    assert ev.verdicts["rf7"].status == PASS
    # on a linear scale the same fall would be judged differently (z from the raw SD)
    lin = Settings(catalogue=Catalogue({MS1: {"scale": "linear"}}), auto_guide_runs=0)
    (r2,) = evaluate_pipeline(runs_of(MS1, [*guide, 1.0e8]), lin, [GS]).verdicts["rf6"].reasons
    assert r2.z == pytest.approx((1.0e8 - statistics.mean(guide)) / statistics.stdev(guide))


def test_sentinels_are_never_flagged_nor_used_for_limits():
    vals = [0.50, -1, 0.55, 0.45, 0.52, 0.48, -1, 0.49]
    ev = evaluate_pipeline(runs_of(IDS, vals), NO_AUTO, [GuideSet("gs1", start=at(0), end=at(5))])
    v = ev.verdicts["rf7"]
    assert v.status == NOT_ENOUGH and "-1" in v.unchecked[IDS]
    ch = chart(runs_of(IDS, vals), NO_AUTO, IDS, guide_sets=[GuideSet("gs1", start=at(0), end=at(5))])
    assert ch["limits"][0]["n"] == 5
    assert ch["limits"][0]["mean"] == pytest.approx(statistics.mean(GUIDE))
    assert ch["points"][1]["value"] is None and "-1" in ch["points"][1]["why_no_value"]
    assert ev.verdicts["rf8"].status == PASS


def test_a_run_with_no_values_has_not_enough_data():
    ev = evaluate_pipeline(runs_of(IDS, [*GUIDE, None]), NO_AUTO, [GS])
    assert ev.verdicts["rf6"].status == NOT_ENOUGH
    assert ev.verdicts["rf6"].summary() == "no judged metric has a value"
    assert ev.verdicts["rf6"].unchecked == {IDS: "no value"}
    assert evaluate_pipeline([Run("rf1", at(0))], NO_AUTO).verdicts["rf1"].summary() == "no metric to judge"


def _random_pipeline(n=160, seed=7):
    rnd = random.Random(seed)
    runs = []
    for i in range(n):
        shift = 0.0 if i < 90 else -0.08
        vals = {IDS: round(rnd.gauss(0.5 + shift, 0.03), 4), DRIFT: rnd.gauss(1.0 + (i > 120) * 2, 0.4),
                MS1: 10 ** rnd.gauss(9 - (i > 100) * 0.6, 0.15), "NumMs2Scans": rnd.randint(9000, 10000)}
        if i % 17 == 5:
            vals[IDS] = -1  # not computed
        if i % 23 == 7:
            del vals[DRIFT]
        runs.append(Run(f"rf{i + 1}", at(i + rnd.random() * 0.5), i % 31 == 3, vals))
    return runs


RICH = {
    IDS: parse_rules([{"rule": "levey_jennings"}, {"rule": "westgard"}, {"rule": "cusum_mean"}]),
    DRIFT: parse_rules([{"rule": "robust"}, {"rule": "moving_range"}, {"rule": "cusum_var"},
                        {"rule": "cutoff", "max": 4.5, "warn_max": 3.5}]),
    MS1: parse_rules([{"rule": "percent", "warn": 40, "fail": 70}, {"rule": "westgard", "rules": ["1-3s", "10-x"]}]),
}


@pytest.mark.parametrize("rules", [RICH, {IDS: RICH[IDS][:2], DRIFT: RICH[DRIFT][:2]}])
def test_one_run_alone_gets_the_same_verdict_as_in_a_full_evaluation(rules):
    runs = _random_pipeline()
    settings = Settings(rules=rules, auto_guide_runs=15)
    gsets = [GuideSet("gs1", start=at(60), end=at(75))]
    anns = [Annotation(1, "column_change", at(110)), Annotation(2, "maintenance", at(130))]
    excl = {IDS: ["rf62", "rf63"]}
    full = evaluate_pipeline(runs, settings, gsets, excl, anns).verdicts
    assert {v.status for v in full.values()} >= {PASS, FAIL}
    for r in runs:
        assert evaluate_run(runs, settings, r.key, gsets, excl, anns) == full[r.key], r.key


def test_later_runs_do_not_change_earlier_verdicts():
    """The old trend band moved with the display window; a verdict must not."""
    runs = _random_pipeline()
    settings = Settings(rules=RICH, auto_guide_runs=20)
    full = evaluate_pipeline(runs, settings).verdicts
    for newest in (100, 140):
        part = evaluate_pipeline(runs[:newest], settings).verdicts
        later = [r.key for r in runs[40:newest]]  # after the automatic guide set
        assert {k: part[k] for k in later} == {k: full[k] for k in later}
    only = evaluate_pipeline(runs, settings, only=["rf120", "rf150"]).verdicts
    assert only == {k: full[k] for k in ("rf120", "rf150")}


def test_edits_recompute_verdicts():
    vals = [0.50, 0.55, 0.05, 0.45, 0.52, 0.48, 0.38]  # rf3 is a bad run inside the guide set
    runs = runs_of(IDS, vals)
    gs = [GuideSet("gs1", start=at(0), end=at(5))]
    assert evaluate_pipeline(runs, NO_AUTO, gs).verdicts["rf7"].status == PASS  # SD inflated by rf3
    excluded = evaluate_pipeline(runs, NO_AUTO, gs, {IDS: ["rf3"]}).verdicts
    assert excluded["rf7"].status == FAIL
    rejected = evaluate_pipeline(runs_of(IDS, vals, rejected={"rf3"}), NO_AUTO, gs).verdicts
    assert rejected["rf7"] == excluded["rf7"]
    plot_only = Settings(rules={IDS: parse_rules("plot_only")}, default_rules=LJ_ONLY, auto_guide_runs=0)
    assert evaluate_pipeline(runs, plot_only, gs, {IDS: ["rf3"]}).verdicts["rf7"].status == NOT_ENOUGH
    stricter = Settings(rules={IDS: parse_rules({"rule": "levey_jennings", "warn": 1, "fail": 1.5})},
                        default_rules=LJ_ONLY, auto_guide_runs=0)
    assert evaluate_pipeline(runs_of(IDS, [*GUIDE, 0.45]), stricter, [GS]).verdicts["rf6"].status == WARN


def test_a_baseline_resetting_annotation_starts_a_new_automatic_guide_set():
    level = [0.50, 0.55, 0.45, 0.52, 0.48, 0.51]
    after = [0.30, 0.33, 0.28, 0.31, 0.29, 0.30]  # a new column: a new normal
    runs = runs_of(IDS, level + after)
    settings = Settings(default_rules=LJ_ONLY, auto_guide_runs=5)
    before = evaluate_pipeline(runs, settings).verdicts
    assert before["rf12"].status == FAIL
    ann = Annotation(1, "column_change", at(5.5), "new column", "alice")
    reset = evaluate_pipeline(runs, settings, annotations=[ann]).verdicts
    assert reset["rf12"].status == PASS and reset["rf12"].guide_set == "auto-2"
    assert reset["rf6"] == before["rf6"]
    not_resetting = Annotation(2, "source_cleaned", at(5.5))
    assert evaluate_pipeline(runs, settings, annotations=[not_resetting]).verdicts["rf12"].status == FAIL


def test_chart_data_cusum_and_moving_range():
    vals = [*GUIDE, 0.40, 0.41, 0.42, 0.40, 0.39, 0.60]
    runs = runs_of(IDS, vals)
    m, s = statistics.mean(GUIDE), statistics.stdev(GUIDE)
    ch = chart(runs, NO_AUTO, IDS, "cusum_mean", guide_sets=[GS],
               annotations=[Annotation(3, "calibration", at(6), "cal")])
    cp = cn = 0.0
    for p, x in zip(ch["points"], vals, strict=True):
        z = (x - m) / s
        cp, cn = max(0.0, z - 0.5 + cp), max(0.0, -z - 0.5 + cn)
        assert p["cusum_pos"] == pytest.approx(cp) and p["cusum_neg"] == pytest.approx(cn)
    assert ch["limits"][0]["h"] == 5.0 and ch["scale"] == "sd"
    assert ch["annotations"][0]["kind"] == "calibration"
    assert ch["guide_sets"][0]["id"] == "gs1"
    mr = chart(runs, NO_AUTO, IDS, "moving_range", guide_sets=[GS])
    assert mr["limits"][0]["ucl"] == pytest.approx(3.267 * statistics.mean(
        abs(a - b) for a, b in itertools.pairwise(GUIDE)))
    assert mr["points"][5]["plotted"] == pytest.approx(abs(0.40 - GUIDE[-1]))
    values = chart(runs, NO_AUTO, IDS, guide_sets=[GS])
    assert values["points"][5]["violations"][0]["rule"] == "levey_jennings"
    with pytest.raises(ValueError):
        chart(runs, NO_AUTO, IDS, "pareto")


def test_instrument_status():
    runs = runs_of(IDS, [*GUIDE, 0.30])
    ev = evaluate_pipeline(runs, NO_AUTO, [GS]).verdicts
    latest = runs[-1]
    assert instrument_status(None, None)["status"] == "NO_DATA"
    danger = instrument_status(latest, ev["rf6"])
    assert danger["status"] == "DANGER" and "Identification rate" in danger["reason"]
    assert danger["latest_run"]["run"] == "rf6" and danger["latest_run"]["verdict"] == FAIL
    assert instrument_status(runs[4], ev["rf5"])["status"] == "OK"
    warn = evaluate_pipeline(runs_of(IDS, [*GUIDE, 0.41]), NO_AUTO, [GS]).verdicts["rf6"]  # z ≈ -2.4
    assert instrument_status(latest, warn)["status"] == "WARNING"
    few = evaluate_pipeline(runs_of(IDS, GUIDE[:3]), NO_AUTO, [GS]).verdicts["rf3"]
    nt = instrument_status(runs[2], few)
    assert nt["status"] == "NO_THRESHOLD" and "not enough runs for limits" in nt["reason"]
    off = instrument_status(latest, ev["rf6"], now=latest.acquired + dt.timedelta(hours=30),
                            offline_after=dt.timedelta(hours=24))
    assert off["status"] == "OFFLINE" and "30.0 h" in off["reason"]
    assert instrument_status(latest, None)["status"] == "NO_DATA"


def test_a_pipeline_without_runs_has_no_verdicts_and_an_empty_chart() -> None:
    assert evaluate_pipeline([], NO_AUTO).verdicts == {}
    out = chart([], NO_AUTO, MS1)
    assert out["points"] == [] and out["limits"] == []
