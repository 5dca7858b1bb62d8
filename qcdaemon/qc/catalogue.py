"""What every QC column means: label, unit, good direction, scale, "not computed" sentinels,
whether it is shown (and judged) by default, and its mzQC term (pure data, no I/O).

Shipped defaults cover the RawTools 2.0.7 ``QcDataTable.csv`` columns
(:data:`qcdaemon.tools.rawtools_parse.RAWTOOLS_COLUMNS` and the 2018 extras), the native
extras, and the MaxQuant columns (:mod:`qcdaemon.tools.maxquant_parse`, reporter channels by
pattern). A column not known here still gets a neutral entry (both directions, linear, not shown),
so a search engine added later works before it is described. A pipeline's overrides
(``{column: {field: value}}``, from the config file or the API) are merged over the defaults by
:meth:`Catalogue.with_overrides`.

Sentinels (RawTools, ``rawtools.md`` and its QC example data):

* RawTools writes ``-1`` for a metric it could not compute (no search: identification rate,
  digestion efficiency, missed cleavages, mass drift, charge ratios; ``ModificationFrequency*``
  always in 2018 files). An exact ``-1`` in a column marked with it is "not computed", never data.
* ``Ms3ScanRate(/s)`` of a run without MS3 scans is ``-1/60`` s⁻¹ (RawTools divides its ``-1``
  placeholder per minute by 60): ``-0.0166666666666667`` in every run of the 140-run HeLa example.
* Without a search the search metrics (PSM counts, scores) are ``0``: they are "not computed"
  when the run's ``SearchParameters`` says no search ran (``None`` or empty).
* MS3 fill time and summed intensity of a run with no MS3 scans are "not computed".

Values on a log scale must be positive; zero or negative ones are "not computed" there too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from qcdaemon.search.catalogue import CATALOGUE as SEARCH_CATALOGUE

__all__ = ["DEFAULTS", "METRIC_FIELDS", "NEED_REASONS", "Catalogue", "Direction", "MetricInfo", "Scale", "Sentinel", "as_number", "is_known"]


class Direction(StrEnum):
    """Which way is good: a change that way is never a fault (one-sided rules)."""

    HIGHER = "higher"  # higher is better: only low values are faults
    LOWER = "lower"  # lower is better: only high values are faults
    BOTH = "both"  # a target value: both sides are faults


class Scale(StrEnum):
    LINEAR = "linear"
    LOG = "log"  # limits computed on log10 values (intensities)


@dataclass(frozen=True)
class Sentinel:
    value: float
    reason: str

    def matches(self, x: float) -> bool:
        # RawTools prints 15 significant digits (-0.0166666666666667 for -1/60)
        return math.isclose(x, self.value, rel_tol=1e-12, abs_tol=1e-15)


NOT_COMPUTED = Sentinel(-1.0, "RawTools wrote -1 (not computed)")
NO_MS3_RATE = Sentinel(-1.0 / 60.0, "RawTools wrote -1/60 (run without MS3 scans)")

# conditions under which a column is "not computed" whatever its value
NEEDS_SEARCH = "search"  # RawTools searched the run (SearchParameters not None/empty)
NEEDS_MS3 = "ms3"  # the run has MS3 scans (NumMs3Scans > 0)
_REASONS = {NEEDS_SEARCH: "no search ran (SearchParameters is None)",
            NEEDS_MS3: "run without MS3 scans"}
NEED_REASONS: Mapping[str, str] = _REASONS  # why a column is "not computed" when its condition is unmet


def as_number(v: Any) -> float | None:
    """A finite number as float; None for gaps (null, text, booleans, inf/NaN)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class MetricInfo:
    column: str
    label: str
    unit: str = ""
    direction: Direction = Direction.BOTH
    scale: Scale = Scale.LINEAR
    sentinels: tuple[Sentinel, ...] = ()
    needs: str | None = None  # NEEDS_SEARCH / NEEDS_MS3
    shown: bool = False  # shown, and judged by the default rules, by default
    mzqc: str | None = None  # PSI-MS accession of the same quantity (see qcdaemon.qc.mzqc.METRICS)
    source: str = "other"  # rawtools (also native), maxquant, search, other

    def clean(self, value: Any, run: Mapping[str, Any] | None = None) -> tuple[float | None, str | None]:
        """(number, None), or (None, reason) when the value is missing or means "not computed"."""
        x = as_number(value)
        if x is None:
            return None, "no value" if value is None else f"not a number ({value!r})"
        if run is not None and self.needs is not None and not _met(self.needs, run):
            return None, _REASONS[self.needs]
        for s in self.sentinels:
            if s.matches(x):
                return None, s.reason
        if self.scale is Scale.LOG and x <= 0:
            return None, f"{x:g} is not positive (log scale)"
        return x, None

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "label": self.label, "unit": self.unit,
                "direction": str(self.direction), "scale": str(self.scale),
                "sentinels": [{"value": s.value, "reason": s.reason} for s in self.sentinels],
                "needs": self.needs, "shown": self.shown, "mzqc": self.mzqc, "source": self.source}


def _met(need: str, run: Mapping[str, Any]) -> bool:
    if need == NEEDS_SEARCH:
        p = run.get("SearchParameters")
        return not (p is None or (isinstance(p, str) and p.strip() in ("", "None")))
    if need == NEEDS_MS3:
        n = as_number(run.get("NumMs3Scans"))
        return n is None or n > 0  # unknown count: judge the value itself
    raise ValueError(need)


H, L, B = Direction.HIGHER, Direction.LOWER, Direction.BOTH
LOG = Scale.LOG
RT = "rawtools"
MQ = "maxquant"
_S1 = (NOT_COMPUTED,)


def _m(column: str, label: str, unit: str = "", direction: Direction = B, **kw: Any) -> MetricInfo:
    return MetricInfo(column, label, unit, direction, **kw)


_ENTRIES: tuple[MetricInfo, ...] = (
    # -- RawTools 2.0.7 QcDataTable.csv (also the native engine's names) ------------------------
    _m("TotalAnalysisTime(min)", "Run duration", "min", B, source=RT, mzqc="MS:4000067"),
    _m("TotalScans", "Scans", "count", B, source=RT),
    _m("NumMs1Scans", "MS1 scans", "count", B, source=RT, mzqc="MS:4000059"),
    _m("NumMs2Scans", "MS2 scans", "count", H, source=RT, shown=True, mzqc="MS:4000060"),
    _m("NumMs3Scans", "MS3 scans", "count", B, source=RT),
    _m("Ms1ScanRate(/s)", "MS1 scan rate", "1/s", B, source=RT),
    _m("Ms2ScanRate(/s)", "MS2 scan rate", "1/s", H, source=RT),
    _m("Ms3ScanRate(/s)", "MS3 scan rate", "1/s", H, source=RT, sentinels=(NO_MS3_RATE, NOT_COMPUTED),
       needs=NEEDS_MS3),
    _m("MeanDutyCycle(s)", "Duty cycle", "s", L, source=RT, shown=True),
    _m("MeanMs2TriggerRate(/Ms1Scan)", "MS2 scans per MS1 scan", "count", H, source=RT),
    _m("Ms1MedianSummedIntensity", "MS1 median summed intensity", "", H, scale=LOG, source=RT, shown=True),
    _m("Ms2MedianSummedIntensity", "MS2 median summed intensity", "", H, scale=LOG, source=RT),
    _m("Ms3MedianSummedIntensity", "MS3 median summed intensity", "", H, scale=LOG, source=RT,
       needs=NEEDS_MS3),
    _m("MedianPrecursorIntensity", "Median precursor intensity", "", H, scale=LOG, source=RT, shown=True),
    _m("MedianMs1IsolationInterference", "MS1 isolation interference", "fraction", L, source=RT),
    _m("MedianMs2PeakFractionConsumingTop80PercentTotalIntensity",
       "MS2 peak fraction holding 80 % of intensity", "fraction", B, source=RT),
    _m("NumEsiInstabilityFlags", "ESI instability flags", "count", L, source=RT, shown=True),
    _m("MedianMassDrift(ppm)", "Median mass drift", "ppm", B, source=RT, sentinels=_S1, shown=True),
    _m("IdentificationRate(IDs/Ms2Scan)", "Identification rate", "IDs/MS2 scan", H, source=RT,
       sentinels=_S1, shown=True),
    _m("DigestionEfficiency", "Digestion efficiency", "fraction", H, source=RT, sentinels=_S1),
    _m("MissedCleavageRate(/PSM)", "Missed cleavages per PSM", "1/PSM", L, source=RT, sentinels=_S1),
    _m("MedianPeptideScore", "Median peptide score", "", H, source=RT, sentinels=_S1, needs=NEEDS_SEARCH),
    _m("CutoffDecoyScore(0.05FDR)", "Decoy score cut-off (5 % FDR)", "", B, source=RT, sentinels=_S1,
       needs=NEEDS_SEARCH),
    _m("NumberOfPSMs", "PSMs", "count", H, source=RT, sentinels=_S1, needs=NEEDS_SEARCH),
    _m("NumberOfUniquePeptides", "Unique peptides", "count", H, source=RT, sentinels=_S1,
       needs=NEEDS_SEARCH),
    _m("MedianMs1FillTime(ms)", "MS1 fill time", "ms", L, source=RT),
    _m("MedianMs2FillTime(ms)", "MS2 fill time", "ms", L, source=RT),
    _m("MedianMs3FillTime(ms)", "MS3 fill time", "ms", L, source=RT, needs=NEEDS_MS3),
    _m("MedianPeakWidthAt10%H(s)", "Peak width at 10 % height", "s", L, source=RT),
    _m("MedianPeakWidthAt50%H(s)", "Peak width at half height", "s", L, source=RT, shown=True),
    _m("MedianAsymmetryAt10%H", "Peak asymmetry at 10 % height", "", B, source=RT),
    _m("MedianAsymmetryAt50%H", "Peak asymmetry at half height", "", B, source=RT),
    _m("MeanCyclesPerAveragePeak", "Scan cycles per peak", "count", H, source=RT),
    _m("PeakCapacity", "Peak capacity", "", H, source=RT),
    _m("TimeBeforeFirstExceedanceOf10%MaxIntensity", "Time before signal (10 % max)", "min", B, source=RT),
    _m("TimeAfterLastExceedanceOf10%MaxIntensity", "Time after signal (10 % max)", "min", B, source=RT),
    _m("FractionOfRunAbove10%MaxIntensity", "Run fraction above 10 % max intensity", "fraction", H,
       source=RT),
    _m("PsmChargeRatio3to2", "PSM charge ratio 3+/2+", "", B, source=RT, sentinels=_S1),
    _m("PsmChargeRatio4to2", "PSM charge ratio 4+/2+", "", B, source=RT, sentinels=_S1),
    # RawTools 2018 (IdentiPy era) columns without a 2.0.7 name
    _m("ModificationFrequencyAtNTerm", "Modification frequency at N-term", "fraction", B, source=RT,
       sentinels=_S1),
    _m("ModificationFrequencyAtK", "Modification frequency at K", "fraction", B, source=RT, sentinels=_S1),
    _m("ModificationFrequencyAtX", "Modification frequency at X", "fraction", B, source=RT, sentinels=_S1),
    # native extra
    _m("NumPrecursorPeaksWithShape", "Precursor peaks with a shape", "count", H, source=RT),
    # -- MaxQuant (summary.txt) -------------------------------------------------------------------
    _m("MS", "MS scans (MaxQuant)", "count", B, source=MQ),
    _m("MS/MS", "MS/MS scans (MaxQuant)", "count", H, source=MQ),
    _m("MS3", "MS3 scans (MaxQuant)", "count", B, source=MQ),
    _m("MS/MS Submitted", "MS/MS submitted", "count", H, source=MQ),
    _m("MS/MS Identified", "MS/MS identified", "count", H, source=MQ, mzqc="MS:1003251"),
    _m("MS/MS Identified [%]", "MS/MS identified", "%", H, source=MQ, shown=True),
    _m("Peptide Sequences Identified", "Peptide sequences identified", "count", H, source=MQ,
       mzqc="MS:1003250"),
    _m("Av. Absolute Mass Deviation [mDa]", "Mean absolute mass deviation", "mDa", L, source=MQ),
    _m("Mass Standard Deviation [mDa]", "Mass standard deviation", "mDa", L, source=MQ),
    # proteinGroups.txt
    _m("N_protein_groups", "Protein groups", "count", H, source=MQ, shown=True, mzqc="MS:1003327"),
    _m("N_protein_true_hits", "Protein groups (no contaminants, no decoys)", "count", H, source=MQ),
    _m("N_protein_potential_contaminants", "Contaminant protein groups", "count", L, source=MQ),
    _m("N_protein_reverse_seq", "Reverse (decoy) protein groups", "count", L, source=MQ),
    _m("Protein_mean_seq_cov [%]", "Mean sequence coverage", "%", H, source=MQ),
    # peptides.txt
    _m("N_peptides", "Peptides", "count", H, source=MQ, shown=True),
    _m("N_peptides_potential_contaminants", "Contaminant peptides", "count", L, source=MQ),
    _m("N_peptides_reverse", "Reverse (decoy) peptides", "count", L, source=MQ),
    _m("Oxidations [%]", "Oxidised peptides", "%", L, source=MQ, shown=True),
    _m("N_missed_cleavages_total", "Missed cleavages", "count", L, source=MQ),
    _m("N_missed_cleavages_eq_0 [%]", "Peptides without missed cleavage", "%", H, source=MQ),
    _m("N_missed_cleavages_eq_1 [%]", "Peptides with 1 missed cleavage", "%", L, source=MQ, shown=True),
    _m("N_missed_cleavages_eq_2 [%]", "Peptides with 2 missed cleavages", "%", L, source=MQ),
    _m("N_missed_cleavages_gt_3 [%]", "Peptides with 3 or more missed cleavages", "%", L, source=MQ),
    _m("Missed Cleavages [%]", "Peptides with missed cleavages", "%", L, source=MQ),
    _m("N_peptides_last_amino_acid_K [%]", "Peptides ending in K", "%", B, source=MQ),
    _m("N_peptides_last_amino_acid_R [%]", "Peptides ending in R", "%", B, source=MQ),
    _m("N_peptides_last_amino_acid_other [%]", "Peptides ending in neither K nor R", "%", L, source=MQ),
    # msmsScans.txt, evidence.txt
    _m("Mean_parent_int_frac", "Mean parent intensity fraction", "fraction", H, source=MQ),
    _m("Uncalibrated - Calibrated m/z [ppm] (ave)", "Precursor mass error (mean)", "ppm", B, source=MQ,
       shown=True, mzqc="MS:4000178"),
    _m("Uncalibrated - Calibrated m/z [ppm] (sd)", "Precursor mass error (SD)", "ppm", L, source=MQ,
       mzqc="MS:4000179"),
    _m("Uncalibrated - Calibrated m/z [Da] (ave)", "Precursor mass error (mean)", "Da", B, source=MQ),
    _m("Uncalibrated - Calibrated m/z [Da] (sd)", "Precursor mass error (SD)", "Da", L, source=MQ),
    _m("Peak Width(ave)", "Retention length (mean)", "min", L, source=MQ),
    _m("Peak Width (std)", "Retention length (SD)", "min", L, source=MQ),
    _m("N_of_Protein_qc_pepts", "QC protein peptides", "count", H, source=MQ),
    _m("N_Protein_qc_missing_values", "QC protein missing values", "count", L, source=MQ),
    _m("reporter_intensity_corrected_Protein_qc_ave", "QC protein reporter intensity (mean)", "", H,
       scale=LOG, source=MQ),
    _m("reporter_intensity_corrected_Protein_qc_sd", "QC protein reporter intensity (SD)", "", B,
       scale=LOG, source=MQ),
    _m("reporter_intensity_corrected_Protein_qc_cv", "QC protein reporter intensity (CV)", "%", L,
       source=MQ),
)

# columns described by pattern: (regex, factory(match) -> MetricInfo)
_PATTERNS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"TMT(\d+)_missing_values\Z"),
     lambda m: _m(m.string, f"TMT{m[1]} missing values", "count", L, source=MQ)),
    (re.compile(r"TMT(\d+)_peptide_count\Z"),
     lambda m: _m(m.string, f"TMT{m[1]} peptides", "count", H, source=MQ)),
    (re.compile(r"TMT(\d+)_protein_group_count\Z"),
     lambda m: _m(m.string, f"TMT{m[1]} protein groups", "count", H, source=MQ)),
    (re.compile(r"N_qc(\d+)_missing_values\Z"),
     lambda m: _m(m.string, f"QC peptide {m[1]} missing values", "count", L, source=MQ)),
    (re.compile(r"reporter_intensity_corrected_qc(\d+)_ave\Z"),
     lambda m: _m(m.string, f"QC peptide {m[1]} reporter intensity (mean)", "", H, scale=LOG, source=MQ)),
    (re.compile(r"reporter_intensity_corrected_qc(\d+)_sd\Z"),
     lambda m: _m(m.string, f"QC peptide {m[1]} reporter intensity (SD)", "", B, scale=LOG, source=MQ)),
    (re.compile(r"reporter_intensity_corrected_qc(\d+)_cv\Z"),
     lambda m: _m(m.string, f"QC peptide {m[1]} reporter intensity (CV)", "%", L, source=MQ)),
    (re.compile(r"calibrated_retention_time_qc(\d+)\Z"),
     lambda m: _m(m.string, f"QC peptide {m[1]} retention time", "min", B, source=MQ)),
    (re.compile(r"retention_length_qc(\d+)\Z"),
     lambda m: _m(m.string, f"QC peptide {m[1]} retention length", "min", L, source=MQ)),
    (re.compile(r"N_of_scans_qc(\d+)\Z"),
     lambda m: _m(m.string, f"QC peptide {m[1]} scans", "count", B, source=MQ)),
)

# The search stage's identification values (qcdaemon.search.catalogue describes each): "zero" (best
# near 0, mass errors) judges both ways, "none" (descriptive: a distribution, a setting) is shown
# only on request; the main counts, the ID rate and the precursor error are shown and judged.
_SEARCH_DIRECTION = {"higher": H, "lower": L, "zero": B, "none": B}
_SEARCH_SHOWN = {"SearchPsms", "SearchPeptides", "SearchProteinGroups", "SearchMs2IdRate",
                 "SearchPrecursorErrorMedianPpm"}
_SEARCH_ENTRIES = tuple(
    _m(s.name, s.description[:1].upper() + s.description[1:], "" if s.unit == "count" else s.unit,
       _SEARCH_DIRECTION[s.direction], source="search", shown=s.name in _SEARCH_SHOWN,
       mzqc=s.term[0] if s.term else None)
    for s in SEARCH_CATALOGUE.values() if s.unit  # text values (notes) are not metrics
)
DEFAULTS: dict[str, MetricInfo] = {e.column: e for e in (*_ENTRIES, *_SEARCH_ENTRIES)}
_FIELDS = {f.name for f in fields(MetricInfo)} - {"column"}
METRIC_FIELDS = frozenset(_FIELDS)  # what a pipeline may override of a metric's entry


def is_known(column: str) -> bool:
    """Whether the shipped catalogue describes ``column`` (by name or by pattern)."""
    return column in DEFAULTS or any(pattern.match(column) for pattern, _ in _PATTERNS)


def default_info(column: str) -> MetricInfo:
    """The shipped entry of a column (by name, then by pattern, else a neutral one)."""
    if (info := DEFAULTS.get(column)) is not None:
        return info
    for pattern, make in _PATTERNS:
        if (m := pattern.match(column)) is not None:
            return make(m)
    return MetricInfo(column, column)


def _override(info: MetricInfo, changes: Mapping[str, Any]) -> MetricInfo:
    unknown = set(changes) - _FIELDS
    if unknown:
        raise ValueError(f"{info.column}: unknown metric field(s) {sorted(unknown)}; "
                         f"known: {sorted(_FIELDS)}")
    out: dict[str, Any] = {}
    for key, val in changes.items():
        try:
            if key == "direction":
                out[key] = Direction(val)
            elif key == "scale":
                out[key] = Scale(val)
            elif key == "sentinels":
                out[key] = tuple(s if isinstance(s, Sentinel) else
                                 Sentinel(float(s["value"]), str(s.get("reason") or "not computed"))
                                 if isinstance(s, Mapping) else Sentinel(float(s), "not computed")
                                 for s in val)
            elif key == "shown":
                if not isinstance(val, bool):
                    raise ValueError("must be true or false")
                out[key] = val
            elif key == "needs":
                if val not in (None, NEEDS_SEARCH, NEEDS_MS3):
                    raise ValueError(f"must be null, {NEEDS_SEARCH!r} or {NEEDS_MS3!r}")
                out[key] = val
            else:
                if val is not None and not isinstance(val, str):
                    raise ValueError("must be text")
                out[key] = val
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{info.column}.{key}: {exc}") from exc
    return replace(info, **out)


@dataclass(frozen=True)
class Catalogue:
    """Shipped defaults with one pipeline's overrides merged over them."""

    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cache = {c: _override(default_info(c), ch) for c, ch in self.overrides.items()}
        object.__setattr__(self, "_cache", cache)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Catalogue:
        merged = {c: dict(ch) for c, ch in self.overrides.items()}
        for column, changes in overrides.items():
            merged.setdefault(column, {}).update(changes)
        return Catalogue(merged)

    def __getitem__(self, column: str) -> MetricInfo:
        cache: dict[str, MetricInfo] = self._cache  # type: ignore[attr-defined]
        info = cache.get(column)
        if info is None:
            info = cache[column] = default_info(column)
        return info

    def shown(self, columns: list[str] | tuple[str, ...] | None = None) -> list[str]:
        """Columns shown by default: of ``columns`` if given, else of the shipped defaults."""
        names = list(columns) if columns is not None else list(DEFAULTS) + list(self.overrides)
        return [c for c in dict.fromkeys(names) if self[c].shown]
