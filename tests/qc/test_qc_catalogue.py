"""The metric catalogue: every QC column described, sentinels read as "not computed", overrides."""

from __future__ import annotations

import pytest

from qcdaemon.qc import mzqc
from qcdaemon.qc.catalogue import DEFAULTS, Catalogue, Direction, Scale, default_info
from qcdaemon.tools.maxquant_parse import MAXQUANT_COLUMNS
from qcdaemon.tools.rawtools_parse import RAWTOOLS_COLUMNS

TEXT_COLUMNS = {"DateAcquired", "RawFile", "Instrument", "ExperimentMsOrder", "Ms1Analyzer",
                "Ms2Analyzer", "Ms3Analyzer", "SearchParameters"}
MQ_TEXT = {"qc1_peptide_charges", "qc2_peptide_charges"}


def test_every_numeric_column_has_a_shipped_entry():
    for col in RAWTOOLS_COLUMNS:
        if col not in TEXT_COLUMNS:
            assert col in DEFAULTS, col
    for col in MAXQUANT_COLUMNS:
        if col not in MQ_TEXT:
            info = default_info(col)
            assert info.source == "maxquant", col
            assert info.label != col, col  # described, not the neutral fallback


def test_unknown_columns_get_a_neutral_entry():
    info = default_info("SomeSearchEngineScore")
    assert info.direction is Direction.BOTH and info.scale is Scale.LINEAR and not info.shown


def test_intensities_are_log_scale_and_directions_are_sensible():
    cat = Catalogue()
    for col in ("Ms1MedianSummedIntensity", "Ms2MedianSummedIntensity", "MedianPrecursorIntensity",
                "reporter_intensity_corrected_qc1_ave"):
        assert cat[col].scale is Scale.LOG, col
    assert cat["IdentificationRate(IDs/Ms2Scan)"].direction is Direction.HIGHER
    assert cat["MedianPeakWidthAt50%H(s)"].direction is Direction.LOWER
    assert cat["MedianMassDrift(ppm)"].direction is Direction.BOTH
    assert cat["TMT3_missing_values"].direction is Direction.LOWER


def test_mzqc_terms_agree_with_the_mzqc_export():
    exported = {m.column: m.accession for m in mzqc.METRICS}
    described = {c: i.mzqc for c, i in DEFAULTS.items() if i.mzqc}
    assert described == exported


@pytest.mark.parametrize(("column", "value", "run", "why"), [
    ("IdentificationRate(IDs/Ms2Scan)", -1, {}, "-1"),
    ("MedianMassDrift(ppm)", -1.0, {}, "-1"),
    ("ModificationFrequencyAtNTerm", -1, {}, "-1"),
    ("Ms3ScanRate(/s)", -0.0166666666666667, {}, "-1/60"),
    ("Ms3ScanRate(/s)", 0.0, {"NumMs3Scans": 0}, "MS3"),
    ("MedianMs3FillTime(ms)", 0, {"NumMs3Scans": 0}, "MS3"),
    ("NumberOfPSMs", 0, {"SearchParameters": "None"}, "search"),
    ("NumberOfPSMs", 0, {"SearchParameters": None}, "search"),
    ("Ms1MedianSummedIntensity", 0.0, {}, "log scale"),
    ("Ms1MedianSummedIntensity", None, {}, "no value"),
    ("NumMs2Scans", "n/a", {}, "not a number"),
])
def test_sentinels_are_not_data(column, value, run, why):
    x, reason = Catalogue()[column].clean(value, run)
    assert x is None and why in reason


@pytest.mark.parametrize(("column", "value", "run"), [
    ("MedianMassDrift(ppm)", -0.99, {}),
    ("MedianMassDrift(ppm)", -0.0166666666666667, {}),  # only the MS3 rate has the -1/60 sentinel
    ("Ms3ScanRate(/s)", 2.5, {"NumMs3Scans": 300}),
    ("NumberOfPSMs", 0, {"SearchParameters": "IdentiPy, tolerance 10 ppm"}),
    ("NumMs2Scans", 9798, {}),
])
def test_real_values_stay(column, value, run):
    assert Catalogue()[column].clean(value, run) == (float(value), None)


def test_pipeline_overrides_merge_over_defaults():
    cat = Catalogue({"NumMs1Scans": {"direction": "higher", "shown": True},
                     "MyScore": {"label": "My score", "scale": "log", "sentinels": [{"value": 0, "reason": "none"}]}})
    assert cat["NumMs1Scans"].direction is Direction.HIGHER and cat["NumMs1Scans"].shown
    assert cat["NumMs1Scans"].label == DEFAULTS["NumMs1Scans"].label  # untouched fields stay
    assert cat["MyScore"].scale is Scale.LOG
    assert cat["MyScore"].clean(0, {}) == (None, "none")
    assert cat["MyScore"].clean(-3, {})[1] == "-3 is not positive (log scale)"
    more = cat.with_overrides({"NumMs1Scans": {"unit": "scans"}})
    assert more["NumMs1Scans"].direction is Direction.HIGHER and more["NumMs1Scans"].unit == "scans"
    assert "NumMs1Scans" in more.shown()


@pytest.mark.parametrize("bad", [{"direction": "up"}, {"scale": "sqrt"}, {"colour": "red"},
                                 {"shown": "yes"}, {"needs": "luck"}, {"sentinels": [{"reason": "x"}]}])
def test_bad_overrides_are_refused(bad):
    with pytest.raises(ValueError):
        Catalogue({"NumMs2Scans": bad})
