"""Guide sets: windows, the one in force at a run's time, automatic ones, exclusions, too few runs."""

from __future__ import annotations

import datetime as dt
import statistics

import pytest

from qcdaemon.qc.guidesets import Annotation, GuideSet, GuideSetIndex, Run, automatic_guide_sets, resolve
from qcdaemon.qc.rules import parse_rules
from qcdaemon.qc.verdicts import NOT_ENOUGH, PASS, Settings, chart, evaluate_pipeline

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
M = "NumMs2Scans"  # higher is better, shown by default (Levey-Jennings)


def hours(h: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=h)


def series(values, rejected=()) -> list[Run]:
    return [Run(f"rf{i + 1}", hours(i), f"rf{i + 1}" in rejected, {M: v} if v is not None else {})
            for i, v in enumerate(values)]


def test_date_window_is_inclusive_at_both_ends():
    g = GuideSet("gs1", start=hours(2), end=hours(4))
    runs = series([1] * 7)
    assert [r.key for r in runs if g.trains(r)] == ["rf3", "rf4", "rf5"]
    late = Run("x", hours(4) + dt.timedelta(seconds=1))
    assert not g.trains(late)


def test_naive_times_are_utc():
    g = GuideSet("gs1", start=dt.datetime(2026, 1, 5, 10, 0), end=dt.datetime(2026, 1, 5, 10, 0))
    assert g.trains(Run("a", hours(2)))


def test_guide_set_in_force_at_acquisition_time():
    runs = series([1] * 10)
    sets = resolve([GuideSet("gs1", start=hours(0), end=hours(3)),
                    GuideSet("gs2", start=hours(6), end=hours(8)),
                    GuideSet("gs3", run_keys=frozenset({"rf9", "rf10"}))], runs)
    idx = GuideSetIndex(sets)
    assert idx.in_force(hours(-1)) is None
    assert idx.in_force(hours(0)).id == "gs1"
    assert idx.in_force(hours(5.99)).id == "gs1"
    assert idx.in_force(hours(6)).id == "gs2"  # exactly at its start the new one takes over
    assert idx.in_force(hours(8)).id == "gs3"  # by run keys: from its earliest run (rf9)
    assert idx.until(sets[0]) == hours(6)


def test_manual_wins_over_automatic_at_the_same_time():
    runs = series([1] * 6)
    sets = resolve([*automatic_guide_sets(runs, 3), GuideSet("gs1", start=hours(0), end=hours(5))], runs)
    assert GuideSetIndex(sets).in_force(hours(1)).id == "gs1"


def test_automatic_guide_sets_first_n_accepted_and_after_resets():
    runs = series([1] * 12, rejected={"rf2"})
    anns = [Annotation(1, "column_change", hours(6.5)), Annotation(2, "source_cleaned", hours(3.5))]
    sets = automatic_guide_sets(runs, 3, anns)
    assert [g.run_keys for g in sets] == [frozenset({"rf1", "rf3", "rf4"}), frozenset({"rf8", "rf9", "rf10"})]
    assert sets[1].effective == hours(6.5)  # in force from the annotation, not from its first run
    assert "column change #1" in sets[1].label
    assert automatic_guide_sets(runs, 0) == []


def test_rejected_and_excluded_runs_are_left_out_of_the_limits():
    vals = [100, 110, 90, 105, 95, 300, 102, 98, 101, 99]
    runs = series(vals, rejected={"rf6"})
    g = GuideSet("gs1", start=hours(0), end=hours(9))
    settings = Settings(auto_guide_runs=0)
    ch = chart(runs, settings, M, guide_sets=[g], exclusions={M: ["rf2"]})
    used = [v for i, v in enumerate(vals) if i not in (1, 5)]  # rf2 excluded, rf6 rejected
    (lim,) = ch["limits"]
    assert lim["n"] == len(used)
    assert lim["mean"] == pytest.approx(statistics.mean(used))
    assert lim["sd"] == pytest.approx(statistics.stdev(used))
    assert [p["training"] for p in ch["points"]] == [i not in (1, 5) for i in range(10)]
    assert ch["points"][1]["excluded"] and ch["points"][5]["rejected"]
    # the exclusion is per metric: another metric still uses rf2
    runs2 = [Run(r.key, r.acquired, r.rejected, {**r.values, "MeanDutyCycle(s)": 1.0 + i / 100})
             for i, r in enumerate(runs)]
    ch2 = chart(runs2, settings, "MeanDutyCycle(s)", guide_sets=[g], exclusions={M: ["rf2"]})
    assert ch2["limits"][0]["n"] == 9


def test_fewer_than_five_usable_runs_mean_no_limits():
    runs = series([100, 101, None, 99, 102, 50], rejected={"rf5"})
    g = GuideSet("gs1", start=hours(0), end=hours(4))  # rf1..rf5: 4 valued, 1 of them rejected
    ev = evaluate_pipeline(runs, Settings(auto_guide_runs=0), [g])
    v = ev.verdicts["rf6"]
    assert v.status == NOT_ENOUGH
    assert "not enough runs for limits (3 usable" in v.unchecked[M]
    assert "not enough runs" in v.summary()
    more = series([100, 101, 98, 99, 102, 100.5])
    assert evaluate_pipeline(more, Settings(auto_guide_runs=0), [g]).verdicts["rf6"].status == PASS


def test_runs_before_any_guide_set_have_no_limits():
    runs = series([100, 101, 98, 99, 102, 100.5, 99.5, 50])
    g = GuideSet("gs1", start=hours(2), end=hours(6))  # rf3..rf7; in force from rf3 on
    ev = evaluate_pipeline(runs, Settings(auto_guide_runs=0), [g])
    assert ev.verdicts["rf1"].status == NOT_ENOUGH
    assert ev.verdicts["rf1"].unchecked[M] == "no guide set in force"
    assert ev.verdicts["rf8"].status == "fail"


def test_a_new_guide_set_restarts_sequential_rules():
    # 10-x fires at rf16 (rf7..rf16 below the mean 100) unless the sequence restarts at rf11
    vals = [98, 102, 97, 103, 99, 101] + [99.5] * 10  # below: NumMs2Scans is higher-is-better
    runs = series(vals)
    rules = {M: parse_rules({"rule": "westgard", "rules": ["10-x"]})}
    one = [GuideSet("gs1", start=hours(0), end=hours(5))]
    two = [*one, GuideSet("gs2", run_keys=frozenset({"rf1", "rf2", "rf3", "rf4", "rf5", "rf6"}),
                          effective=hours(10))]
    settings = Settings(rules=rules, auto_guide_runs=0)
    a = evaluate_pipeline(runs, settings, one).verdicts
    b = evaluate_pipeline(runs, settings, two).verdicts
    assert a["rf16"].status == "fail" and "10-x" in a["rf16"].reasons[0].detail
    assert b["rf16"].status == PASS and b["rf16"].guide_set == "gs2"
