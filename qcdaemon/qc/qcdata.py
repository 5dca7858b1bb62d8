"""Assemble the column-oriented answers of ``/api/qc-data`` and the protein routes (pure functions).

The store gives runs (oldest to newest) and their QC values per source; this module merges the
sources (RawTools over native, as RawTools is the reference engine when it ran), adds run
metadata and calendar columns, and lays the result out as ``{column: [value per run]}``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Any

from qcdaemon.tools.maxquant_columns import MAXQUANT_COLUMNS
from qcdaemon.tools.rawtools_parse import RAWTOOLS_COLUMNS, calendar_columns

CALENDAR = ("Date", "Day", "Week", "Month", "Year")
META_TAIL = ("Flagged", "Use Downstream", "Uploader", "State", "MetricsEngine")
VERDICT_COLUMNS = ("Verdict", "Verdict reasons")  # the stored QC verdict (qcdaemon.qc.verdicts)
REPORTER_TOKEN = "Reporter intensity corrected"
_SCAN_SOURCES = ("native", "rawtools")  # later wins


def stem(name: str) -> str:
    """Displayed raw-file name without its ``.raw`` extension (any case)."""
    return name[:-4] if name.lower().endswith(".raw") else name


def epoch_ns(t: dt.datetime | None) -> int | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def dirname(path: str | None) -> str | None:
    """The folder of a stored raw-file path (POSIX, or Windows when it only has backslashes)."""
    if not path:
        return None
    cls: type[PurePath] = PureWindowsPath if ("\\" in path and "/" not in path) else PurePosixPath
    return str(cls(path).parent)


def merge_run_values(values: Iterable[tuple[str, str, Any]]) -> tuple[dict[str, Any], str | None]:
    """Merge (source, name, value) triples of one run; returns values and the scan-metrics engine."""
    by_source: dict[str, dict[str, Any]] = {}
    for source, name, value in values:
        by_source.setdefault(source, {})[name] = value
    merged: dict[str, Any] = {}
    engine = None
    for source in _SCAN_SOURCES:
        if by_source.get(source):
            engine = source
            merged.update({k: v for k, v in by_source[source].items() if v is not None or k not in merged})
    for source, vals in by_source.items():
        if source not in _SCAN_SOURCES:
            merged.update(vals)
    return merged, engine


def _tmt_sort_key(col: str) -> tuple[int, int]:
    kind = 0 if col.endswith("_missing_values") else 1 if col.endswith("_peptide_count") else 2
    num = int("".join(ch for ch in col[3:].split("_")[0] if ch.isdigit()) or 0)
    return kind, num


KNOWN = frozenset(RAWTOOLS_COLUMNS) | frozenset(MAXQUANT_COLUMNS) | frozenset(CALENDAR) | frozenset(META_TAIL) | frozenset(VERDICT_COLUMNS) | {
    "RawFile", "Index", "DateAcquired", "RawFilePath", "RunKey"}


def column_order(seen: Iterable[str]) -> list[str]:
    """The ``/api/qc-data`` columns: the known ones in the original's order, then the value names
    ``seen`` (first-seen order over the runs) that are not known, TMT counts sorted by channel."""
    extra_cols: dict[str, None] = {}
    tmt_cols: dict[str, None] = {}
    for col in seen:
        if col in KNOWN:
            continue
        if col.startswith("TMT"):
            tmt_cols[col] = None
        else:
            extra_cols[col] = None
    order = [
        "RawFile", "Index", "DateAcquired",
        *[c for c in RAWTOOLS_COLUMNS if c not in ("DateAcquired", "RawFile")],
        "RawFilePath", *CALENDAR, "RunKey",
        *[c for c in MAXQUANT_COLUMNS if not c.startswith("TMT")],
        *extra_cols,
        *META_TAIL, *VERDICT_COLUMNS,
        *sorted((c for c in MAXQUANT_COLUMNS if c.startswith("TMT")), key=_tmt_sort_key),
        *sorted((c for c in tmt_cols if c not in MAXQUANT_COLUMNS), key=_tmt_sort_key),
    ]
    return list(dict.fromkeys(order))


def assemble_json(columns: Sequence[str], arrays: Mapping[str, str], n: int) -> bytes:
    """``{column: [...]}`` from each column's JSON array body (its items joined by commas); a
    column without one is ``n`` nulls.  No per-cell work: the store made the arrays."""
    if n == 0:
        return b"{}"
    nulls = ",".join(["null"] * n)
    parts = [f"{json.dumps(c)}:[{arrays.get(c, nulls)}]" for c in dict.fromkeys(columns)]
    return ("{" + ",".join(parts) + "}").encode()


def build_qc_data(
    runs: Sequence[Mapping[str, Any]],
    values: Iterable[tuple[int, str, str, Any]],
    columns: Sequence[str] | None = None,
    verdicts: Mapping[int, tuple[str, str]] | None = None,
) -> dict[str, list[Any]]:
    """Column-oriented QC table: one entry per run, in the order of ``runs``; ``verdicts`` (run id
    -> verdict, reasons) fill ``Verdict`` and ``Verdict reasons`` (null before a verdict exists).

    The reference assembly in Python (the trends page uses it); ``/api/qc-data`` answers with
    ``Store.qc_data_json``, which builds the same answer in SQL (tests hold the two equal)."""
    if not runs:
        return {}
    per_run: dict[int, list[tuple[str, str, Any]]] = {}
    for run_id, source, name, value in values:
        per_run.setdefault(run_id, []).append((source, name, value))

    rows: list[dict[str, Any]] = []
    seen: dict[str, None] = {}
    for index, run in enumerate(runs, start=1):
        merged, engine = merge_run_values(per_run.get(run["id"], []))
        acquired = run.get("acquired_at")
        row = dict(merged)
        row.update(
            {
                "RawFile": stem(run["name"]),
                "Index": index,
                "DateAcquired": epoch_ns(acquired),
                "RawFilePath": merged.get("RawFilePath") or dirname(run.get("stored_path")),
                "RunKey": f"rf{run['id']}",
                "Flagged": bool(run["flagged"]),
                "Use Downstream": run["use_downstream"],
                "Uploader": run.get("owner_email"),
                "State": run["state"],
                "MetricsEngine": engine,
            }
        )
        verdict = (verdicts or {}).get(run["id"])
        row["Verdict"], row["Verdict reasons"] = verdict if verdict is not None else (None, None)
        cal = calendar_columns(acquired) if acquired else dict.fromkeys(CALENDAR)
        row.update(cal)
        seen.update(dict.fromkeys(merged))
        rows.append(row)

    order = column_order(seen)
    wanted = list(columns) if columns is not None else order
    return {col: [row.get(col) for row in rows] for col in wanted}


def protein_names_answer(groups: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    if not groups:
        return {}
    return {
        "protein_names": [g["majority_ids"] for g in groups],
        "Fasta headers": [g["fasta_headers"] for g in groups],
        "Score": [g["score"] for g in groups],
        "Intensity": [g["intensity"] for g in groups],
    }


def protein_columns(columns: Sequence[str]) -> list[str]:
    """The requested protein-groups columns after the three always given first (order kept, no repeats)."""
    return [c for c in dict.fromkeys(columns) if c not in ("RawFile", "RunKey", "Majority protein IDs")]


def expand_reporter(columns: Sequence[str], width: int) -> list[str]:
    """``Reporter intensity corrected`` expands to one column per channel present (1..width)."""
    out: list[str] = []
    for c in columns:
        if c == REPORTER_TOKEN:
            out.extend(f"{REPORTER_TOKEN} {n}" for n in range(1, width + 1))
        else:
            out.append(c)
    return list(dict.fromkeys(out))


def reporter_channel(col: str) -> int | None:
    """n of ``Reporter intensity corrected <n>``, else None."""
    if col.startswith(REPORTER_TOKEN + " "):
        tail = col[len(REPORTER_TOKEN) + 1:]
        if tail.isdigit():
            return int(tail)
    return None


def protein_groups_answer(
    rows: Sequence[Mapping[str, Any]], runs: Mapping[int, Mapping[str, Any]], columns: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """pandas "columns" orientation: ``{column: {"0": value, "1": value, ...}}``.

    The reference assembly in Python; the API answers with ``Store.protein_groups_json``, which
    builds the same answer in SQL (tests hold the two equal)."""
    if not rows:
        return {}
    width = max((len(r["reporter"] or []) for r in rows), default=0)
    expanded = expand_reporter(protein_columns(columns), width)
    out: dict[str, dict[str, Any]] = {c: {} for c in ["RawFile", "RunKey", "Majority protein IDs", *expanded]}
    for i, r in enumerate(rows):
        key = str(i)
        out["RawFile"][key] = stem(runs[r["run_id"]]["name"])
        out["RunKey"][key] = r["run_key"]
        out["Majority protein IDs"][key] = r["majority_ids"]
        for c in expanded:
            out[c][key] = _protein_value(r, c)
    return out


def _protein_value(r: Mapping[str, Any], col: str) -> Any:
    fixed = {"Fasta headers": "fasta_headers", "Score": "score", "Intensity": "intensity"}
    if col in fixed:
        return r[fixed[col]]
    n = reporter_channel(col)
    if n is not None:
        rep = r["reporter"] or []
        return rep[n - 1] if 0 < n <= len(rep) else None
    return r["extra"].get(col)
