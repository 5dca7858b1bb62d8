"""An mzQC 1.0.0 document (HUPO-PSI) from runs and their QC values (pure: values in, JSON object out).

What goes in, and why (``docs/api.md``, "``/api/mzqc``"):

* One ``runQuality`` per run, labelled with its run key (``rf12``; unique in the file). A run
  without any value that maps to a PSI-MS term is left out, because ``qualityMetrics`` needs at
  least one item; the document's ``description`` names the runs left out.
* Only columns that have a PSI-MS term with the same meaning, value type and unit become
  ``qualityMetrics`` (:data:`METRICS`). Everything else stays in ``/api/qc-data`` only: a made-up
  accession, a wrong value type or unit fails mzQC semantic validation.
* ``inputFiles``: the RAW file with its displayed name (unique in the file: a name shared by several
  runs gets the run key added), a ``file://`` URI of the stored path (the run key when the path is
  unknown; unique in the file), and completion time, SHA-256 and instrument model when known.
* When the Sage search (``search`` stage) produced values of the run, the pipeline's FASTA is a second
  input file (``MS:1001348`` FASTA format): the identification input; Sage is listed as software and
  its counts fill the identification terms (MS:1003251, MS:1003250, MS:1003327) unless MaxQuant's
  counts are there (a term appears once per run; MaxQuant's come first).
* ``analysisSoftware``: qcdaemon itself, RawTools and MaxQuant when they produced values of the run.
  RawTools has no PSI-MS term, so both qcdaemon and RawTools are ``MS:1000799`` "custom unreleased
  software tool" with the tool's name as value. qcdaemon does not record which RawTools/MaxQuant
  version ran, so their ``version`` is ``"unknown"``.

Accession/name pairs are those of psi-ms.obo (4.1.x) and the Unit Ontology.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from qcdaemon.errors import NotFound
from qcdaemon.qc.qcdata import merge_run_values

MZQC_VERSION = "1.0.0"

PSI_MS = {
    "name": "Proteomics Standards Initiative Mass Spectrometry Ontology",
    "uri": "http://purl.obolibrary.org/obo/ms/psi-ms.obo",
    "version": "4.1.257",
}
UO = {"name": "Unit Ontology", "uri": "http://purl.obolibrary.org/obo/uo.obo"}

# qcdaemon has no public home yet; the schema requires a URI for every analysisSoftware.
QCDAEMON_URI = "urn:qcdaemon"
RAWTOOLS_URI = "https://github.com/kevinkovalchik/RawTools"
MAXQUANT_URI = "https://www.maxquant.org"
SAGE_URI = "https://github.com/lazear/sage"
UNKNOWN_VERSION = "unknown"

THERMO_RAW = {"accession": "MS:1000563", "name": "Thermo RAW format"}
COMPLETION_TIME = ("MS:1000747", "completion time")
SHA256 = ("MS:1003151", "SHA-256")
INSTRUMENT_MODEL = ("MS:1000031", "instrument model")
CUSTOM_TOOL = ("MS:1000799", "custom unreleased software tool")
MAXQUANT = ("MS:1001583", "MaxQuant")
FASTA_FORMAT = {"accession": "MS:1001348", "name": "FASTA format"}

COUNT_UNIT = {"accession": "UO:0000189", "name": "count unit"}
SECOND = {"accession": "UO:0000010", "name": "second"}
PPM = {"accession": "UO:0000169", "name": "parts per million"}


def _count(value: Any) -> int | None:
    """A non-negative whole number (xsd:int), else None (placeholders such as -1 or text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _float(value: Any) -> float | None:
    """A finite number (xsd:float), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _minutes_to_seconds(value: Any) -> float | None:
    minutes = _float(value)
    return minutes * 60.0 if minutes is not None and minutes >= 0 else None


@dataclass(frozen=True)
class Metric:
    column: str  # our column (``/api/qc-data``)
    accession: str
    name: str  # exactly as in psi-ms.obo
    unit: dict[str, str]
    convert: Callable[[Any], Any]


#: Our columns with a PSI-MS QC term of the same meaning, value type and unit, in output order.
METRICS: tuple[Metric, ...] = (
    Metric("NumMs1Scans", "MS:4000059", "number of MS1 spectra", COUNT_UNIT, _count),
    Metric("NumMs2Scans", "MS:4000060", "number of MS2 spectra", COUNT_UNIT, _count),
    # RawTools reports minutes; the term is in seconds.
    Metric("TotalAnalysisTime(min)", "MS:4000067", "MS run duration", SECOND, _minutes_to_seconds),
    Metric("MS/MS Identified", "MS:1003251", "count of identified spectra", COUNT_UNIT, _count),
    Metric("Peptide Sequences Identified", "MS:1003250", "count of identified peptidoforms", COUNT_UNIT, _count),
    Metric("N_protein_groups", "MS:1003327", "number of identified protein groups", COUNT_UNIT, _count),
    # the Sage search's counts at its FDR (qcdaemon.search.metrics), where MaxQuant's are absent
    Metric("SearchPsms", "MS:1003251", "count of identified spectra", COUNT_UNIT, _count),
    Metric("SearchPeptides", "MS:1003250", "count of identified peptidoforms", COUNT_UNIT, _count),
    Metric("SearchProteinGroups", "MS:1003327", "number of identified protein groups", COUNT_UNIT, _count),
    # mean / sd over evidence.txt's "Uncalibrated - Calibrated m/z [ppm]" column: ppm, as the terms
    Metric("Uncalibrated - Calibrated m/z [ppm] (ave)", "MS:4000178", "precursor ppm deviation mean", PPM, _float),
    Metric("Uncalibrated - Calibrated m/z [ppm] (sd)", "MS:4000179", "precursor ppm deviation sigma", PPM, _float),
)


def quality_metrics(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The mappable metrics of one run's merged values (each term once; missing values left out)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for m in METRICS:
        value = m.convert(values.get(m.column))
        if value is None or m.accession in seen:
            continue
        seen.add(m.accession)
        out.append({"accession": m.accession, "name": m.name, "value": value, "unit": dict(m.unit)})
    return out


def _timestamp(t: dt.datetime) -> str:
    """RFC 3339 with a time zone; a naive datetime is UTC (as everywhere in the store)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\[^\\]+\\[^\\]+)")


def file_uri(path: str | None) -> str | None:
    """``file://`` URI of an absolute stored path (Windows or POSIX); None when unknown or relative."""
    if not path:
        return None
    try:
        if _WINDOWS_PATH.match(path):
            return PureWindowsPath(path).as_uri()
        return PurePosixPath(path).as_uri()
    except ValueError:  # relative path
        return None


def _param(term: tuple[str, str], value: Any) -> dict[str, Any]:
    return {"accession": term[0], "name": term[1], "value": value}


def _file_properties(run: Mapping[str, Any], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    props = []
    acquired = run.get("acquired_at")
    if isinstance(acquired, dt.datetime):
        props.append(_param(COMPLETION_TIME, _timestamp(acquired)))
    sha = run.get("sha256")
    if isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha):
        props.append(_param(SHA256, sha.lower()))
    model = next((v for v in (values.get("InstrumentModel"), values.get("Instrument"))
                  if isinstance(v, str) and v.strip()), None)
    if model:
        props.append(_param(INSTRUMENT_MODEL, model.strip()))
    return props


def _software(sources: set[str], version: str, values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    tools = [{**_param(CUSTOM_TOOL, f"qcdaemon {version}"), "version": version, "uri": QCDAEMON_URI}]
    if "rawtools" in sources:
        tools.append({**_param(CUSTOM_TOOL, "RawTools"), "version": UNKNOWN_VERSION, "uri": RAWTOOLS_URI})
    if "maxquant" in sources:
        tools.append({"accession": MAXQUANT[0], "name": MAXQUANT[1], "version": UNKNOWN_VERSION,
                      "uri": MAXQUANT_URI})
    if "search" in sources:  # Sage has no PSI-MS term in 4.1.257: named like RawTools
        engine = (values or {}).get("SearchEngine")
        match = re.search(r"\((.+)\)", engine) if isinstance(engine, str) else None
        tools.append({**_param(CUSTOM_TOOL, "Sage"), "version": match.group(1) if match else UNKNOWN_VERSION,
                      "uri": SAGE_URI})
    return tools


def _fasta_input(pipeline: Mapping[str, Any], values: Mapping[str, Any], run_key: str) -> dict[str, Any] | None:
    """The search's protein database as an input file (its identification input)."""
    path = pipeline.get("fasta_path")
    name = values.get("SearchFasta") or (PurePosixPath(str(path).replace("\\", "/")).name if path else None)
    if not name:
        return None
    return {"name": str(name), "location": file_uri(path) or f"{run_key}-fasta", "fileFormat": dict(FASTA_FORMAT)}


def _unique_names(runs: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """Displayed names, with the run key added where several runs share one (case-insensitively)."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["name"].casefold()] = counts.get(r["name"].casefold(), 0) + 1
    names: dict[int, str] = {}
    for r in runs:
        name: str = r["name"]
        if counts[name.casefold()] > 1:
            stem, dot, ext = name.rpartition(".")
            name = f"{stem} ({r['run_key']}).{ext}" if dot and stem else f"{name} ({r['run_key']})"
        names[r["id"]] = name
    if len({n.casefold() for n in names.values()}) < len(names):  # a real file named like that
        names = {r["id"]: f"{r['run_key']}_{r['name']}" for r in runs}
    return names


_Kept = tuple[Mapping[str, Any], dict[str, Any], set[str], list[dict[str, Any]]]  # run, values, sources, metrics


def _with_metrics(runs: Sequence[Mapping[str, Any]],
                  values_by_run: Mapping[int, Iterable[tuple[str, str, Any]]]) -> tuple[list[_Kept], list[str]]:
    """The runs with at least one mappable metric (merged values, their sources, the metrics), and the
    run keys of the others."""
    kept: list[_Kept] = []
    omitted: list[str] = []
    for run in runs:
        triples = list(values_by_run.get(run["id"], ()))
        merged, _engine = merge_run_values(triples)
        metrics = quality_metrics(merged)
        if not metrics:
            omitted.append(run["run_key"])
            continue
        sources = {source for source, _name, value in triples if value is not None}
        kept.append((run, merged, sources, metrics))
    return kept, omitted


class _InputFiles:
    """The ``inputFiles`` of each run, with names and locations unique in the file (a RAW file shared by
    several runs, two runs searched against one FASTA)."""

    def __init__(self, names: dict[int, str], pipeline: Mapping[str, Any]) -> None:
        self.names = names
        self.pipeline = pipeline
        self.raw_names = {n.casefold() for n in names.values()}
        self.fasta_names: set[str] = set()
        self.locations: set[str] = set()

    def of(self, run: Mapping[str, Any], merged: dict[str, Any], sources: set[str]) -> list[dict[str, Any]]:
        location = file_uri(run.get("stored_path")) or run["run_key"]
        if location in self.locations:  # the same stored file behind two runs
            location = f"{location}#{run['run_key']}"
        self.locations.add(location)
        input_file: dict[str, Any] = {"name": self.names[run["id"]], "location": location,
                                      "fileFormat": dict(THERMO_RAW)}
        if props := _file_properties(run, merged):
            input_file["fileProperties"] = props
        inputs = [input_file]
        if "search" in sources and (fasta := _fasta_input(self.pipeline, merged, run["run_key"])) is not None:
            # names and locations stay unique in the file, as for RAW files shared by several runs
            if fasta["name"].casefold() in self.fasta_names or fasta["name"].casefold() in self.raw_names:
                fasta["name"] = f"{fasta['name']} ({run['run_key']})"
            if fasta["location"] in self.locations:
                fasta["location"] = f"{fasta['location']}#{run['run_key']}"
            self.fasta_names.add(fasta["name"].casefold())
            self.locations.add(fasta["location"])
            inputs.append(fasta)
        return inputs


def build_mzqc(
    runs: Sequence[Mapping[str, Any]],
    values_by_run: Mapping[int, Iterable[tuple[str, str, Any]]],
    *,
    pipeline: Mapping[str, Any],
    created: dt.datetime,
    version: str,
) -> dict[str, Any]:
    """The mzQC document (``{"mzQC": {...}}``) of ``runs`` in their order.

    ``runs`` are run rows (``id``, ``run_key``, ``name``, ``stored_path``, ``sha256``,
    ``acquired_at``); ``values_by_run`` maps a run id to its ``(source, column, value)`` triples
    (``store.qc_values``), merged here as ``/api/qc-data`` merges them. ``pipeline`` is the pipeline
    row (``slug``, ``project_slug``). Raises :class:`NotFound` when no run has a mappable metric
    (an mzQC file needs at least one ``runQuality``).
    """
    kept, omitted = _with_metrics(runs, values_by_run)
    where = f"{pipeline.get('project_slug', '?')}/{pipeline.get('slug', '?')}"
    if not kept:
        raise NotFound(f"nothing to export from {where}: "
                       + ("none of the selected runs has a QC metric with a PSI-MS term" if runs
                          else "the selection has no runs"))
    files = _InputFiles(_unique_names([k[0] for k in kept]), pipeline)
    qualities = [{
        "metadata": {
            "label": run["run_key"],
            "inputFiles": files.of(run, merged, sources),
            "analysisSoftware": _software(sources, version, merged),
        },
        "qualityMetrics": metrics,
    } for run, merged, sources, metrics in kept]
    description = (f"QC metrics of pipeline {where} exported by qcdaemon {version}: {len(kept)} run(s), "
                   "labelled with their run keys.")
    if omitted:
        description += f" Left out for lack of a QC metric with a PSI-MS term: {', '.join(omitted)}."
    return {
        "mzQC": {
            "version": MZQC_VERSION,
            "creationDate": _timestamp(created),
            "description": description,
            "runQualities": qualities,
            "controlledVocabularies": [dict(PSI_MS), dict(UO)],
        }
    }
