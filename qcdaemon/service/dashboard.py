"""Use cases of the web dashboard that the contract's routes do not cover: one run's full QC
report (every metric with its limits, z-score and violations), the tails of its stages' tool logs,
a page of a pipeline's runs with their verdicts, and project membership.  Same visibility rules as
every read (``decisions.md``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import stat
from pathlib import Path
from typing import Any

from qcdaemon.core.paths import DataPaths
from qcdaemon.errors import BadRequest, Forbidden, NotFound
from qcdaemon.qc.verdicts import chart, judged_columns
from qcdaemon.service.quality import load_inputs, with_values
from qcdaemon.store import Store
from qcdaemon.store.rows import UserRow

_RUN_KEY = re.compile(r"rf([0-9]{1,18})")
LOG_TAIL = 64 * 1024  # bytes of each log shown
LOG_FILES = 12  # logs of one stage shown at most
LOG_SUFFIXES = (".out", ".err")  # what tools/runner.py writes: <name>.out and <name>.err


def log_tails(log_dir: Path, allowed: Path, tail: int = LOG_TAIL) -> list[dict[str, Any]]:
    """The last ``tail`` bytes of each tool log (``*.out``, ``*.err``) directly in ``log_dir``,
    which must lie inside ``allowed`` (the run's own work folder); regular files only, never a
    symbolic link.  Blocking."""
    try:
        where = log_dir.resolve(strict=True)
        inside = where.is_relative_to(allowed.resolve(strict=True))
    except OSError:
        return []
    if not inside or not where.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for entry in sorted(os.scandir(where), key=lambda e: e.name):
        if len(out) >= LOG_FILES:
            break
        if entry.name.startswith(".") or not entry.name.endswith(LOG_SUFFIXES):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue  # a link (O_NOFOLLOW), gone, or unreadable
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                continue
            start = max(st.st_size - tail, 0)
            f.seek(start)
            data = f.read(tail)
        if start:  # from the first whole line on
            nl = data.find(b"\n")
            data = data[nl + 1:] if 0 <= nl < len(data) - 1 else data
        out.append({"name": entry.name, "size": st.st_size, "shown": len(data), "truncated": start > 0,
                    "text": data.decode("utf-8", "replace")})
    return out


def _iso(t: Any) -> str | None:
    if not isinstance(t, dt.datetime):
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).isoformat()


def run_id_of(run_key: Any) -> int:
    m = _RUN_KEY.fullmatch(str(run_key or "").strip())
    if not m:
        raise BadRequest(f"run_key: {str(run_key)[:40]!r} is not a run key like 'rf12'")
    return int(m.group(1))


class DashboardService:
    def __init__(self, store: Any, files: DataPaths | None = None) -> None:
        self.store = store
        self.files = files

    async def visible_run(self, user: UserRow, run_key: Any) -> dict[str, Any]:
        """The run (with its stages) when the user sees its pipeline; 404 otherwise (one answer for
        both, so run keys of other labs are not confirmed)."""
        rid = run_id_of(run_key)
        try:
            run = await self.store.call(Store.run, rid)
        except NotFound:
            raise NotFound(f"run rf{rid}: not found or not visible to you") from None
        if await self.store.call(Store.visible_pipeline, user, run["project_slug"], run["pipeline_slug"]) is None:
            raise NotFound(f"run rf{rid}: not found or not visible to you")
        run["stages"] = await self.store.call(Store.stages, rid)
        return run

    async def run_metrics(self, user: UserRow, run_key: Any) -> dict[str, Any]:
        """Every judged metric of one run: value, z, the limits of its guide set, violations."""
        run = await self.visible_run(user, run_key)
        key = run["run_key"]

        def work(store: Any) -> list[dict[str, Any]]:
            inp = load_inputs(store, run["pipeline_id"])
            cols = judged_columns(inp.settings)
            with_values(store, inp, columns=cols)
            out = []
            for col in cols:
                c = chart(inp.runs, inp.settings, col, "values", inp.guide_sets, inp.exclusions, inp.annotations)
                pt = next((p for p in c["points"] if p["run"] == key), None)
                if pt is None or (pt["value"] is None and pt.get("why_no_value") in (None, "no value")):
                    continue
                lim = next((lm for lm in c["limits"] if lm.get("guide_set") == pt["guide_set"]), None)
                out.append({"metric": col, "label": c["metric"].get("label", col), "unit": c["metric"].get("unit"),
                            "value": pt["value"], "z": pt["z"], "guide_set": pt["guide_set"],
                            "why_no_value": pt.get("why_no_value"), "excluded": pt["excluded"],
                            "violations": pt.get("violations", []), "limits": lim})
            return out

        return {"run_key": key, "project": run["project_slug"], "pipeline": run["pipeline_slug"],
                "metrics": await self.store.call(work)}

    async def stage_logs(self, user: UserRow, run_key: Any, stage: Any) -> dict[str, Any]:
        """The tails of one stage's tool logs.  The folder is the one the store recorded for the
        stage, and only when it lies inside the run's own work folder: nothing in the request
        names a path."""
        run = await self.visible_run(user, run_key)
        row = next((s for s in run["stages"] if s["stage"] == stage), None)
        if row is None:
            raise NotFound(f"run {run['run_key']} has no stage {str(stage)[:40]!r}")
        files: list[dict[str, Any]] = []
        if row["log_dir"] and self.files is not None:
            files = await asyncio.to_thread(log_tails, Path(row["log_dir"]), self.files.work_of(run["run_key"]))
        return {"run_key": run["run_key"], "stage": row["stage"], "state": row["state"],
                "log_dir": row["log_dir"], "tail_bytes": LOG_TAIL, "files": files}

    async def runs_page(self, user: UserRow, project: str, pipeline: str, offset: int,
                        limit: int) -> dict[str, Any]:
        p = await self.store.call(Store.visible_pipeline, user, project, pipeline)
        if p is None:
            raise Forbidden("Missing permissions for requested pipeline.")
        total, rows = await self.store.call(Store.runs_page, p["id"], offset, limit)
        runs = [{"run_key": r["run_key"], "name": r["name"], "state": r["state"], "acquired": _iso(r["acquired_at"]),
                 "created": _iso(r["created_at"]), "flagged": bool(r["flagged"]),
                 "use_downstream": bool(r["use_downstream"]) if r["use_downstream"] is not None else None,
                 "owner": r["owner"], "verdict": r["verdict"], "summary": r["summary"]} for r in rows]
        return {"project": project, "pipeline": pipeline, "total": total, "offset": offset, "runs": runs}

    async def _project(self, user: UserRow, project: Any, *, manage: bool) -> dict[str, Any]:
        if not isinstance(project, str) or not project:
            raise BadRequest("project: this field is required")
        proj = await self.store.call(Store.visible_project, user, project)
        if proj is None:
            raise Forbidden("Missing permissions for requested project.")
        if manage and not user["is_admin"] and proj["created_by"] != user["id"]:
            raise Forbidden("changing the members needs the project's creator or an admin")
        return proj

    async def members(self, user: UserRow, project: Any) -> dict[str, Any]:
        proj = await self._project(user, project, manage=False)
        rows = await self.store.call(Store.members_of, proj["id"])
        creator = await self.store.call(Store.user, proj["created_by"]) if proj["created_by"] is not None else None
        may = bool(user["is_admin"] or proj["created_by"] == user["id"])
        return {"project": proj["slug"], "creator": creator["email"] if creator else None, "may_change": may,
                "members": [{"email": r["email"], "is_admin": bool(r["is_admin"])} for r in rows]}

    async def set_member(self, user: UserRow, project: Any, email: Any, member: bool) -> dict[str, Any]:
        proj = await self._project(user, project, manage=True)
        if not isinstance(email, str) or not email.strip():
            raise BadRequest("email: this field is required")
        other = await self.store.call(Store.user_by_email, email.strip())
        if other is None:
            raise NotFound(f"no user with e-mail {email.strip()[:200]!r}")
        if member:
            await self.store.call(Store.add_member, proj["id"], other["id"])
            changed = True
        else:
            changed = await self.store.call(Store.remove_member, proj["id"], other["id"])
        return {"project": proj["slug"], "email": other["email"], "member": member, "changed": changed}
