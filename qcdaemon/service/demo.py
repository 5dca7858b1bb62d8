"""The seeded demo: "Demo Project" / "TMT QC Demo" with three runs built from real tool outputs.

Idempotent: running it again changes nothing that exists.  The pipeline is read-only (uploads
are refused), like the original's demo.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qcdaemon.service.qcservice import QcService
from qcdaemon.store import Store
from qcdaemon.store.rows import PipelineRow, UserRow
from qcdaemon.tools.maxquant_parse import parse_maxquant, parse_protein_groups
from qcdaemon.tools.rawtools_parse import parse_rawtools

DATA = Path(__file__).resolve().parents[1] / "demo" / "data"  # the package data of qcdaemon.demo
PROJECT = "Demo Project"
DESCRIPTION = "Seeded demo project for first-run onboarding."
PIPELINE = "TMT QC Demo"
DEFAULT_USER = "user@email.com"

# (displayed name, folder under data/, has RawTools output, has MaxQuant output)
RUNS = (
    ("SA001-R3-C-2ulF.raw", "sa001"),
    ("200304-SA002-R3-G-V14-90min-AGC90-MS2-1-2.raw", "sa002"),
    ("small2.RAW", "small2"),
)


def _unpacked(folder: Path, into: Path) -> Path:
    """A copy of ``folder`` with ``*.gz`` files decompressed (the package ships them compressed)."""
    out = into / folder.name
    out.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.suffix == ".gz":
            with gzip.open(f, "rb") as src, open(out / f.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(f, out / f.name)
    return out


def _chromatograms(folder: Path) -> dict[str, list[tuple[float, float]]]:
    names = {"Ms_TIC": "MS1_TIC", "Ms_BP": "MS1_BPC", "Ms2_TIC": "MS2_TIC", "Ms2_BP": "MS2_BPC"}
    out: dict[str, list[tuple[float, float]]] = {}
    for f in sorted(folder.glob("*_chromatogram.txt")):
        key = next((v for k, v in names.items() if f.name.endswith(f"_{k}_chromatogram.txt")), None)
        if key is None:
            continue
        points = []
        for line in f.read_text().splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 2:
                try:
                    points.append((float(parts[0]), float(parts[1])))
                except ValueError:
                    continue
        out[key] = points
    return out


def load_run(folder_name: str) -> dict[str, Any]:
    """Parse one seeded run's real outputs with the production parsers (blocking)."""
    src = DATA / folder_name
    result: dict[str, Any] = {"rawtools": None, "maxquant": None, "groups": [], "chromatograms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if (src / "rawtools_qc").is_dir() or (src / "rawtools").is_dir():
            result["rawtools"] = parse_rawtools(src / "rawtools", src / "rawtools_qc")
            result["chromatograms"] = _chromatograms(src / "rawtools")
        if (src / "txt").is_dir():
            txt = _unpacked(src / "txt", Path(tmp))
            result["maxquant"] = parse_maxquant(txt)
            if (txt / "proteinGroups.txt").exists():
                result["groups"] = parse_protein_groups(txt / "proteinGroups.txt")
    return result


async def bootstrap(svc: QcService, email: str = DEFAULT_USER, password: str | None = None) -> dict[str, Any]:
    """Create (or complete) the demo; returns what it did, and a new user's generated password."""
    report: dict[str, Any] = {"user": email, "created": []}
    user = await svc.store.call(Store.user_by_email, email)
    if user is None:
        if password is None:
            password = secrets.token_urlsafe(12)
            report["generated_password"] = password
        user = await svc.add_user(email, password)
        report["created"].append(f"user {email}")
    elif password is not None:
        from qcdaemon.core import security

        await svc.store.call(Store.set_password, user["id"], await asyncio.to_thread(security.hash_password, password))
        report["password_updated"] = True
    project = await svc.store.call(Store.project_by_slug, "demo-project")
    if project is None:
        project = await svc.add_project(PROJECT, DESCRIPTION, created_by=email)
        report["created"].append(f"project {PROJECT}")
    await svc.store.call(Store.add_member, project["id"], user["id"])
    pipeline = await svc.store.call(Store.find_pipeline, "demo-project/tmt-qc-demo")
    if pipeline is None:
        pipeline = await svc.add_pipeline("demo-project", PIPELINE, read_only=True)
        report["created"].append(f"pipeline {PIPELINE}")
    existing = {r["name"]: r for r in await svc.store.call(Store.runs_of, pipeline["id"])}
    for name, folder in RUNS:
        if name in existing:
            if await svc.store.call(Store.run_has_values, existing[name]["id"]):
                continue
            await svc.store.call(Store.delete_run, existing[name]["id"])  # a seeding cut off by a crash: redo it
        parsed = await asyncio.to_thread(load_run, folder)
        await _seed_run(svc, pipeline, user, name, parsed)
        report["created"].append(f"run {name}")
    if report["created"]:
        await svc.quality.recompute(pipeline["id"])  # the seeded runs' QC verdicts
    report["project"] = "demo-project"
    report["pipeline"] = {"slug": pipeline["slug"], "uuid": pipeline["uuid"]}
    return report


async def _seed_run(svc: QcService, pipeline: PipelineRow, user: UserRow, name: str,
                    parsed: dict[str, Any]) -> None:
    acquired = (parsed["rawtools"] or {}).get("DateAcquired")
    run = await svc.store.call(Store.create_run,
        pipeline["id"], name, source="demo", owner_id=user["id"], state="done",
        acquired_at=acquired if isinstance(acquired, dt.datetime) else None,
    )
    if parsed["rawtools"]:
        await svc.store.call(Store.put_qc_values, run["id"], "rawtools", parsed["rawtools"])
        await svc.store.call(Store.set_run_fields, [run["id"]], {"metrics_engine": "rawtools"})
    if parsed["maxquant"]:
        await svc.store.call(Store.put_qc_values, run["id"], "maxquant", parsed["maxquant"])
    if parsed["groups"]:
        await svc.store.call(Store.put_protein_groups, run["id"], parsed["groups"])
    if parsed["chromatograms"]:
        await svc.store.call(Store.put_chromatograms, run["id"], parsed["chromatograms"])
