"""The inputs of a pipeline's verdicts and charts, loaded from the store as :mod:`qcdaemon.qc` wants
them: runs in acquisition order (times, rejections), the pipeline's settings (catalogue overrides,
rules, automatic guide sets), guide sets, annotations, exclusions, and the runs' merged values."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qcdaemon.qc import qcdata
from qcdaemon.qc.catalogue import Catalogue
from qcdaemon.qc.guidesets import Annotation, AnnotationKind, GuideSet, Run, as_utc
from qcdaemon.qc.rules import parse_rules
from qcdaemon.qc.verdicts import Settings, judged_columns

__all__ = ["Ids", "Inputs", "iso", "load_inputs", "settings_of", "with_values"]

_KEY = re.compile(r"rf([0-9]{1,18})\Z")
_CONDITIONS = ("SearchParameters", "NumMs3Scans")  # what the catalogue's "needs" look at


def utc_or_none(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else as_utc(t)


def iso(t: dt.datetime | None) -> str | None:
    return None if t is None else as_utc(t).isoformat()


@dataclass
class Inputs:
    """Everything a pipeline's verdicts depend on, as the pure package wants it."""

    pipeline_id: int
    runs: list[Run]
    ids: dict[str, int]  # run key -> run id
    settings: Settings
    guide_sets: list[GuideSet]
    annotations: list[Annotation]
    exclusions: dict[str, list[str]]
    offline_hours: float | None
    where: dict[str, int] = field(default_factory=dict)  # run key -> position in runs


def settings_of(store: Any, pid: int) -> tuple[Settings, float | None]:
    rows = store.metric_settings_of(pid)
    overrides = {r["metric"]: r["overrides"] for r in rows if r["overrides"]}
    rules = {r["metric"]: parse_rules(r["rules"]) for r in rows if r["rules"]}
    kinds = {k["name"]: AnnotationKind(k["name"], k["label"], bool(k["resets_baseline"]))
             for k in store.annotation_kinds()}
    ps = store.pipeline_qc_settings(pid)
    settings = Settings(catalogue=Catalogue(overrides), rules=rules, kinds=kinds,
                        auto_guide_runs=ps["auto_guide_runs"] if ps else Settings.auto_guide_runs)
    return settings, (ps["offline_hours"] if ps else None)


class Ids(dict[str, int]):
    """run key -> run id, for keys of the form ``rf<id>`` (no table needed)."""

    def __missing__(self, key: str) -> int:
        return int(key[2:])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _KEY.match(key) is not None


# Each pipeline's QC configuration as last loaded, with the signature it was loaded under
# (:meth:`Store.qc_signature`'s QC part): reused while that is unchanged.
_CONFIGS: dict[tuple[str, int], tuple[tuple[Any, ...], tuple[Any, ...]]] = {}


def load_inputs(store: Any, pid: int, *, with_runs: bool = True, signature: tuple[Any, ...] | None = None) -> Inputs:
    """The pipeline's runs (times, rejections; no values yet) and QC configuration; the latter
    from the cache when ``signature`` (of the QC configuration, as the store gives it) still holds."""
    meta = store.qc_run_tuples(pid) if with_runs else []
    utc = dt.UTC
    runs = [Run(f"rf{rid}", t.replace(tzinfo=utc), bool(rej), {}) for rid, t, rej in meta]
    ids = {f"rf{m[0]}": m[0] for m in meta}
    ck = (str(getattr(store, "path", "")), pid)
    hit = _CONFIGS.get(ck)
    if signature is not None and hit is not None and hit[0] == signature:
        settings, offline, gsets, anns, excl = hit[1]
        return Inputs(pid, runs, ids, settings, list(gsets), list(anns), {m: list(k) for m, k in excl.items()}, offline)
    inp = _load_config(store, pid, runs, ids)
    if signature is not None:
        _CONFIGS[ck] = (signature, (inp.settings, inp.offline_hours, tuple(inp.guide_sets), tuple(inp.annotations),
                                    {m: tuple(k) for m, k in inp.exclusions.items()}))
    return inp


def _load_config(store: Any, pid: int, runs: list[Run], ids: dict[str, int]) -> Inputs:
    settings, offline = settings_of(store, pid)
    gsets = [GuideSet(f"gs{g['id']}", utc_or_none(g["start_at"]), utc_or_none(g["end_at"]),
                      frozenset(g["run_keys"]) if g["run_keys"] is not None else None, label=g["label"])
             for g in store.guide_sets_of(pid)]
    anns = [Annotation(a["id"], a["kind"], as_utc(a["happened_at"]), a["text"], a["author"])
            for a in store.annotations_of(pid)]
    excl: dict[str, list[str]] = {}
    for e in store.exclusions_of(pid):
        excl.setdefault(e["metric"], []).append(e["run_key"])
    return Inputs(pid, runs, ids, settings, gsets, anns, excl, offline)


def with_values(store: Any, inp: Inputs, keys: Sequence[str] | None = None,
                columns: Sequence[str] | None = None) -> dict[str, set[str]]:
    """Fill in the runs' merged values (of ``keys``, default all; of the judged ``columns``).
    Returns each filled run's value sources."""
    cols = list(columns) if columns is not None else judged_columns(inp.settings)
    wanted = None if keys is None else [inp.ids[k] for k in keys if k in inp.ids]
    triples: dict[int, list[tuple[str, str, Any]]] = {}
    numeric = [c for c in cols if c not in _CONDITIONS]
    for run_id, source, name, value in store.qc_metric_values(wanted, [*cols, *_CONDITIONS], numeric=numeric,
                                                              pipeline_id=inp.pipeline_id):
        triples.setdefault(run_id, []).append((source, name, value))
    sources: dict[str, set[str]] = {}
    if len(inp.where) != len(inp.runs):
        inp.where = {r.key: i for i, r in enumerate(inp.runs)}
    for run_id, trs in triples.items():
        key = f"rf{run_id}"
        i = inp.where[key]
        r = inp.runs[i]
        merged, _ = qcdata.merge_run_values(trs)
        inp.runs[i] = Run(r.key, r.acquired, r.rejected, merged)
        sources[key] = {t[0] for t in trs}
    return sources
