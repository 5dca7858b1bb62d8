"""Each control rule on small hand-computed series; expected values come from the textbook
definitions written out here with ``statistics`` and plain loops, or from a published example."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest

from qcdaemon.qc.rules import Baseline, baseline, evaluate, parse_rule, parse_rules

GUIDE = [10.0, 12.0, 11.0, 13.0, 9.0, 10.0, 11.0]
HIGH_BAD, LOW_BAD, BOTH = +1, -1, 0


def base_of(mean: float, sd: float) -> Baseline:
    return Baseline(30, mean, sd, mean, sd / 1.4826, None)


def sev(spec, ys, base, side=BOTH, **kw):
    res = evaluate(parse_rule(spec), np.asarray(ys, dtype=float), base, side, **kw)
    assert res is not None
    return [int(s) for s in res.severity], res


def test_baseline_statistics_are_the_textbook_ones():
    b = baseline(GUIDE)
    assert b is not None and b.n == 7
    assert b.mean == pytest.approx(statistics.mean(GUIDE))
    assert b.sd == pytest.approx(statistics.stdev(GUIDE))  # sample SD, n - 1
    med = statistics.median(GUIDE)
    assert b.median == med
    assert b.mad == statistics.median(abs(x - med) for x in GUIDE)
    assert b.sigma_robust == pytest.approx(1.4826 * b.mad)
    assert b.mr_mean == pytest.approx(statistics.mean(abs(a - c) for a, c in itertools.pairwise(GUIDE)))


def test_fewer_than_five_points_give_no_baseline():
    assert baseline(GUIDE[:4]) is None
    assert baseline([*GUIDE[:4], math.nan, math.nan]) is None
    assert baseline(GUIDE[:5]) is not None


def test_levey_jennings_warn_at_2_fail_at_3_sd():
    b = baseline(GUIDE)
    m, s = statistics.mean(GUIDE), statistics.stdev(GUIDE)
    ys = [m, m + 1.9 * s, m + 2.1 * s, m - 2.1 * s, m + 3.1 * s, m - 3.1 * s]
    got, res = sev("levey_jennings", ys, b)
    assert got == [0, 0, 1, 1, 2, 2]
    assert res.limits["fail_high"] == pytest.approx(m + 3 * s)
    assert res.limits["warn_low"] == pytest.approx(m - 2 * s)
    assert res.statistic[4] == pytest.approx(3.1)


def test_levey_jennings_is_one_sided_by_good_direction():
    b = baseline(GUIDE)
    m, s = statistics.mean(GUIDE), statistics.stdev(GUIDE)
    ys = [m + 5 * s, m - 5 * s]
    assert sev("levey_jennings", ys, b, LOW_BAD)[0] == [0, 2]  # higher is better
    assert sev("levey_jennings", ys, b, HIGH_BAD)[0] == [2, 0]  # lower is better
    got, res = sev({"rule": "levey_jennings", "warn": 1.5, "fail": 4}, [m - 1.6 * s, m - 4.1 * s], b, LOW_BAD)
    assert got == [1, 2]
    assert res.limits["fail_high"] is None


def test_robust_limits_ignore_an_outlier_in_the_guide_set():
    guide = [10, 10.5, 9.5, 10, 100, 10.2, 9.8]
    b = baseline(guide)
    # by hand: median 10; |x - 10| = 0, .5, .5, 0, 90, .2, .2 -> median 0.2; σ̂ = 1.4826 * 0.2
    sigma = 1.4826 * 0.2
    assert b.median == 10 and b.mad == pytest.approx(0.2)
    got, res = sev("robust", [10.5, 10.0 + 2.5 * sigma, 12.0, 10.0 - 3.5 * sigma], b)
    assert got == [0, 1, 2, 2]
    assert res.limits["fail_high"] == pytest.approx(10 + 3 * sigma)
    # Levey-Jennings on the same guide set is blind to the 12 (the outlier inflates the SD)
    assert sev("levey_jennings", [12.0], b)[0] == [0]


def test_moving_range_ucl_is_3_267_mean_mr_and_one_sided():
    b = baseline([10, 12, 11, 13, 9])
    mr_bar = statistics.mean([2, 1, 2, 4])  # 2.25
    ucl = 3.267 * mr_bar  # 7.35075 (Montgomery: D4 = 3.267 for n = 2)
    ys = [10, 12, 11, 13, 9, 10, 18, 9, 16.3]
    got, res = sev("moving_range", ys, b)
    assert res.limits["ucl"] == pytest.approx(ucl)
    assert got == [0, 0, 0, 0, 0, 0, 2, 2, 0]  # MR 8 and 9 > 7.35; 7.3 is not
    assert math.isnan(res.statistic[0]) and res.statistic[6] == pytest.approx(8)
    assert sev("moving_range", ys, b, LOW_BAD)[0] == [0, 0, 0, 0, 0, 0, 0, 2, 0]  # only the fall
    assert sev("moving_range", ys, b, HIGH_BAD)[0] == [0, 0, 0, 0, 0, 0, 2, 0, 0]  # only the rise


# Montgomery, Introduction to Statistical Quality Control, Example 9.1 (Table 9.1): 20 values
# from N(10, 1), then 10 after a shift to 11; tabular CUSUM with K = 0.5, H = 5 (Table 9.2)
# signals at periods 29 (C+ = 5.28) and 30 (C+ = 5.30).
MONTGOMERY_9_1 = [9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34, 9.03, 11.47,
                  10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84, 10.90, 9.33, 12.29, 11.50,
                  10.60, 11.08, 10.38, 11.62, 11.31, 10.52]


def test_cusum_mean_reproduces_montgomery_example_9_1():
    got, res = sev("cusum_mean", MONTGOMERY_9_1, base_of(10.0, 1.0))
    cpos = res.series["cusum_pos"]
    assert round(float(cpos[28]), 2) == 5.28 and round(float(cpos[29]), 2) == 5.30
    assert round(float(cpos[27]), 2) == 4.47
    assert [i + 1 for i, s in enumerate(got) if s] == [29, 30]
    assert res.series["cusum_neg"][1] == pytest.approx(1.56)  # 9.5 - 7.99 + 0.05


def test_cusum_mean_matches_the_recursion_and_is_one_sided():
    b = baseline(GUIDE)
    m, s = statistics.mean(GUIDE), statistics.stdev(GUIDE)
    ys = [m - 1.5 * s] * 6 + [m + 2 * s] * 6
    cp = cn = 0.0
    want_pos, want_neg = [], []
    for y in ys:  # Montgomery §9.1, on z = (y - mean)/SD, k = 0.5
        z = (y - m) / s
        cp, cn = max(0.0, z - 0.5 + cp), max(0.0, -z - 0.5 + cn)
        want_pos.append(cp)
        want_neg.append(cn)
    got, res = sev("cusum_mean", ys, b)
    assert np.allclose(res.series["cusum_pos"], want_pos)
    assert np.allclose(res.series["cusum_neg"], want_neg)
    assert got == [2 if p > 5 or q > 5 else 0 for p, q in zip(want_pos, want_neg, strict=True)]
    assert any(got[:6]) and any(got[6:])
    up, _ = sev("cusum_mean", ys, b, LOW_BAD)  # higher is better: only the downward CUSUM
    assert up == [2 if q > 5 else 0 for q in want_neg]


def test_cusum_variability_is_hawkins_scale_cusum():
    b = base_of(0.0, 1.0)
    ys = [0.1, -0.2, 3.0, -3.2, 2.8, -3.1, 0.05, 2.9, -3.3, 3.0]
    cp = cn = 0.0
    want_pos, want_neg = [], []
    for z in ys:  # v = (sqrt|z| - 0.822) / 0.349 (Hawkins 1981), then the tabular CUSUM
        v = (math.sqrt(abs(z)) - 0.822) / 0.349
        cp, cn = max(0.0, v - 0.5 + cp), max(0.0, -v - 0.5 + cn)
        want_pos.append(cp)
        want_neg.append(cn)
    got, res = sev("cusum_var", ys, b)
    assert np.allclose(res.series["cusum_pos"], want_pos)
    assert np.allclose(res.series["cusum_neg"], want_neg)
    assert got == [2 if p > 5 else 0 for p in want_pos]  # variability down is never a fault
    assert any(got)
    quiet, res2 = sev("cusum_var", [0.0] * 12, b)
    assert not any(quiet) and res2.series["cusum_neg"][-1] > 5


@pytest.mark.parametrize(("ys", "rules", "want"), [
    ([0, 3.1], ("1-3s",), [0, 2]),
    ([0, 2.9], ("1-3s",), [0, 0]),
    ([0, 2.9], ("1-2s", "1-3s"), [0, 1]),
    ([2.1, 2.2], ("2-2s",), [0, 2]),
    ([2.1, -2.2], ("2-2s",), [0, 0]),
    ([2.1, 1.9], ("2-2s",), [0, 0]),
    ([2.1, -2.2], ("R-4s",), [0, 2]),
    ([-2.1, 2.2], ("R-4s",), [0, 2]),
    ([2.1, 1.0], ("R-4s",), [0, 0]),
    ([1.1, 1.2, 1.3, 1.1], ("4-1s",), [0, 0, 0, 2]),
    ([1.1, 1.2, 0.9, 1.1], ("4-1s",), [0, 0, 0, 0]),
    ([-1.1, -1.2, -1.3, -1.1, -1.5], ("4-1s",), [0, 0, 0, 2, 2]),
    ([0.1] * 10, ("10-x",), [0] * 9 + [2]),
    ([0.1] * 9 + [-0.1], ("10-x",), [0] * 10),
    ([2.1, 2.2, 1.5, 1.2], ("1-3s",), [0, 0, 0, 0]),  # a subset only applies its rules
    ([2.1, 2.2, 1.5, 1.2], ("2-2s", "4-1s"), [0, 2, 0, 2]),
])
def test_westgard_rules(ys, rules, want):
    got, _ = sev({"rule": "westgard", "rules": list(rules)}, ys, base_of(0.0, 1.0))
    assert got == want


def test_westgard_names_the_rules_that_fired_and_is_one_sided():
    b = base_of(0.0, 1.0)
    _, res = sev("westgard", [1.1, 2.1, 2.5, 1.5], b)
    assert res.what[2] == "2-2s" and res.what[3] == "4-1s"
    assert sev("westgard", [2.1, 2.2, 3.5], b, LOW_BAD)[0] == [0, 0, 0]  # higher is better
    assert sev("westgard", [-2.1, -2.2, -3.5], b, LOW_BAD)[0] == [0, 2, 2]
    # R-4s: the newest value must be on the faulty side
    assert sev({"rule": "westgard", "rules": ["R-4s"]}, [-2.5, 2.5], b, LOW_BAD)[0] == [0, 0]
    assert sev({"rule": "westgard", "rules": ["R-4s"]}, [2.5, -2.5], b, LOW_BAD)[0] == [0, 2]


def test_fixed_cutoffs_need_no_guide_set():
    res = evaluate(parse_rule({"rule": "cutoff", "min": 5, "warn_min": 7, "max": 20}),
                   np.array([4.0, 6.0, 8.0, 21.0]), None, BOTH)
    assert [int(s) for s in res.severity] == [2, 1, 0, 2]
    assert res.what[0] == "below min 5" and res.what[3] == "above max 20"


def test_percent_deviation_from_the_guide_mean():
    b = baseline([100.0, 98.0, 102.0, 101.0, 99.0])  # mean 100
    got, res = sev({"rule": "percent", "warn": 5, "fail": 10}, [104, 106, 111, 89], b)
    assert got == [0, 1, 2, 2]
    assert res.statistic[2] == pytest.approx(11.0)
    assert sev({"rule": "percent", "fail": 10}, [111, 89], b, LOW_BAD)[0] == [0, 2]
    # log scale: computed on log10 values, the centre is the geometric mean (100 here)
    logs = np.log10([10.0, 1000.0, 100.0, 100.0, 100.0])
    gb = baseline(logs)
    got, res = sev({"rule": "percent", "fail": 50}, np.log10([140.0, 160.0]), gb,
                   raw=np.array([140.0, 160.0]), log=True)
    assert got == [0, 2] and res.statistic[0] == pytest.approx(40.0)


def test_rules_without_a_usable_baseline_give_nothing():
    flat = baseline([5.0] * 6)
    assert evaluate(parse_rule("levey_jennings"), np.array([6.0]), flat, BOTH) is None
    assert evaluate(parse_rule("cusum_mean"), np.array([6.0]), None, BOTH) is None


@pytest.mark.parametrize("bad", [
    {"rule": "nope"}, {"rule": "levey_jennings", "warn": 4, "fail": 3},
    {"rule": "levey_jennings", "fail": -1}, {"rule": "westgard", "rules": ["1-5s"]},
    {"rule": "westgard", "rules": []}, {"rule": "cutoff"}, {"rule": "percent"},
    {"rule": "cusum_mean", "h": 0}, {"rule": "robust", "k": 3}, 7, {"rule": "levey_jennings", "fail": True},
])
def test_bad_rules_are_refused(bad):
    with pytest.raises(ValueError):
        parse_rule(bad)


def test_rule_lists():
    assert [s.kind for s in parse_rules("plot_only")] == ["plot_only"]
    assert [s.kind for s in parse_rules([{"rule": "robust"}, "westgard"])] == ["robust", "westgard"]
    with pytest.raises(ValueError):
        parse_rules(["off", "robust"])
    with pytest.raises(ValueError):
        parse_rules([])
    spec = parse_rule({"rule": "westgard", "rules": ["1-3s", "2-2s"]})
    assert parse_rule(spec.as_dict()) == spec
