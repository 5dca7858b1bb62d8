"""The two baselines the read routes are measured against, run in the benchmark's own process.

``Original``: the original ProteomicsQC server's read path as the behaviour spec describes it
(``shared/spec/proteomicsqc-behaviour.md`` 3.1-3.4 and 4.1-4.2): per run, its RawTools
``QcDataTable.csv`` and MaxQuant ``maxquant_quality_control.csv`` read with pandas, then concatenated
and merged per request; protein routes read each run's ``protein_groups/<stem>.parquet`` with
pandas and merge.  Reading only the needed Parquet columns is kinder to it than reading whole files.

``PyArrowScan``: one plain ``pyarrow.dataset`` scan over the same per-run Parquet files (column
projection and a filter pushed into the scan), then pyarrow's own group-by.

Each returns the JSON text of the answer, since that is what a client waits for.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

REPORTER = "Reporter intensity corrected"


def _jsonable(frame: pd.DataFrame) -> dict[str, list[Any]]:
    out = frame.astype(object).where(frame.notna(), None)
    return {str(c): out[c].tolist() for c in out.columns}


class Original:
    def __init__(self, pipeline_dir: Path, run_names: Sequence[str]) -> None:
        self.dir = pipeline_dir
        self.names = list(run_names)  # in creation order

    def _selected(self, data_range: int | None) -> list[tuple[int, str]]:
        pairs = list(enumerate(self.names, start=1))
        return pairs[-data_range:] if data_range else pairs

    def qc_data(self, data_range: int | None) -> str:
        rt_frames: list[pd.DataFrame] = []
        mq_frames: list[pd.DataFrame] = []
        meta: list[dict[str, Any]] = []
        for rid, name in self._selected(data_range):
            stem = name[:-4]
            out = self.dir / "output" / name
            key = f"rf{rid}"
            tables = [pd.read_csv(f) for f in glob.glob(str(out / "**" / "QcDataTable.csv"), recursive=True)]
            if tables:
                df = pd.concat(tables)
                df["DateAcquired"] = pd.to_datetime(df["DateAcquired"], format="%m/%d/%Y %H:%M:%S")
                df = df.sort_values("DateAcquired", ascending=False).reset_index(drop=True)
                df["Index"] = list(range(len(df)))[::-1]
                df["RawFilePath"] = df["RawFile"].map(os.path.dirname)
                df["RawFile"] = df["RawFile"].map(os.path.basename)
                d = df["DateAcquired"]
                df["Date"] = d.dt.strftime("%Y-%m-%d")
                df["Day"] = d.dt.strftime("%Y-%j")
                df["Week"] = d.dt.year.astype(str) + "-" + d.dt.isocalendar().week.astype(str).str.zfill(2)
                df["Month"] = d.dt.strftime("%Y-%m")
                df["Year"] = d.dt.strftime("%Y")
                df.insert(0, "RawFile", df.pop("RawFile").map(lambda _n, s=stem: s))
                df["RunKey"] = key
                rt_frames.append(df)
            mq_csv = out / "maxquant" / "maxquant_quality_control.csv"
            if mq_csv.exists():
                df = pd.read_csv(mq_csv)
                df["Index"] = list(range(len(df)))[::-1]
                df["Missed Cleavages [%]"] = 100 - df["N_missed_cleavages_eq_0 [%]"]
                df["RawFile"] = stem
                df["RunKey"] = key
                mq_frames.append(df)
            meta.append({"RunKey": key, "RawFile_meta": stem, "Flagged": False, "Use Downstream": True,
                         "Uploader": "bench@lab.org"})
        if not rt_frames and not mq_frames:
            return "{}"
        rt = pd.concat(rt_frames, ignore_index=True)
        rt["Index"] = rt["DateAcquired"].rank()
        mq = pd.concat(mq_frames, ignore_index=True).drop(columns=["Index"])
        df = rt.merge(mq, on=["RunKey", "RawFile"], how="outer")
        df = df.merge(pd.DataFrame(meta), on="RunKey", how="left")
        df["RawFile"] = df["RawFile_meta"].where(df["RawFile_meta"].notna(), df["RawFile"])
        df = df.drop(columns=["RawFile_meta"])
        df = df.sort_values("Index", na_position="last").reset_index(drop=True)
        df["Index"] = np.arange(1, len(df) + 1)
        df["DateAcquired"] = df["DateAcquired"].astype("int64")
        assert not df.columns.duplicated().any()
        return json.dumps(_jsonable(df))

    def _parquets(self, data_range: int | None) -> list[Path]:
        base = self.dir / "parquet" / "protein_groups"
        return [base / f"{name[:-4]}.parquet" for _, name in self._selected(data_range)]

    def protein_names(self, data_range: int | None, remove_con: bool, remove_rev: bool) -> str:
        cols = ["Majority protein IDs", "Fasta headers", "Score", "Intensity"]
        frames = [pd.read_parquet(f, columns=cols) for f in self._parquets(data_range)]
        if not frames:
            return "{}"
        df = pd.concat(frames, ignore_index=True)
        ids = df["Majority protein IDs"]
        if remove_con:
            df = df[~ids.str.contains("CON__")]
        if remove_rev:
            df = df[~df["Majority protein IDs"].str.contains("REV__")]
        g = df.groupby(["Majority protein IDs", "Fasta headers"]).mean().sort_values("Score").reset_index()
        g = g.rename(columns={"Majority protein IDs": "protein_names"})
        return json.dumps(_jsonable(g))

    def protein_groups(self, data_range: int | None, names: Sequence[str], columns: Sequence[str]) -> str:
        files = self._parquets(data_range)
        if not files:
            return "{}"
        first = pq_columns(files[0])
        wanted: list[str] = []
        for c in columns:
            wanted += [x for x in first if x.startswith(REPORTER)] if c == REPORTER else [c]
        read = ["RawFile", "Majority protein IDs", *wanted]
        frames = []
        for f in files:
            df = pd.read_parquet(f, columns=read)
            frames.append(df[df["Majority protein IDs"].isin(list(names))])
        df = pd.concat(frames, ignore_index=True)
        df["RawFile"] = df["RawFile"].str.replace(r"(?i)^[0-9a-f]{32}_", "", regex=True).map(lambda s: s[:-4])
        return df.to_json()


def pq_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


class PyArrowScan:
    def __init__(self, files: Sequence[Path]) -> None:
        self.files = [str(f) for f in files]

    def _dataset(self, data_range: int | None) -> ds.Dataset:
        files = self.files[-data_range:] if data_range else self.files
        return ds.dataset(files, format="parquet")

    def protein_names(self, data_range: int | None, remove_con: bool, remove_rev: bool) -> str:
        ids = pc.field("Majority protein IDs")
        flt = None
        if remove_con:
            flt = ~pc.match_substring(ids, "CON__")
        if remove_rev:
            rev = ~pc.match_substring(ids, "REV__")
            flt = rev if flt is None else flt & rev
        t = self._dataset(data_range).to_table(
            columns=["Majority protein IDs", "Fasta headers", "Score", "Intensity"], filter=flt)
        g = t.group_by(["Majority protein IDs", "Fasta headers"]).aggregate([("Score", "mean"), ("Intensity", "mean")])
        g = g.sort_by("Score_mean")
        return json.dumps({"protein_names": g["Majority protein IDs"].to_pylist(),
                           "Fasta headers": g["Fasta headers"].to_pylist(),
                           "Score": g["Score_mean"].to_pylist(), "Intensity": g["Intensity_mean"].to_pylist()})

    def protein_groups(self, data_range: int | None, names: Sequence[str], columns: Sequence[str]) -> str:
        d = self._dataset(data_range)
        wanted: list[str] = []
        for c in columns:
            wanted += [x for x in d.schema.names if x.startswith(REPORTER)] if c == REPORTER else [c]
        t = d.to_table(columns=["RawFile", "Majority protein IDs", *wanted],
                       filter=pc.field("Majority protein IDs").isin(pa.array(list(names))))
        return json.dumps({c: dict(enumerate(t[c].to_pylist())) for c in t.column_names})
