"""Administrative operations shared by the CLI and the running daemon.

DuckDB allows one writer process.  The CLI runs an operation directly on the store when no
daemon holds it; otherwise it sends the same operation to the running daemon's local admin
endpoint, authenticated with a random secret in ``<data_dir>/admin.secret`` (mode 0600) and
accepted from loopback only.  Either way the same function below does the work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from qcdaemon.alerts import ops
from qcdaemon.core.paths import DataPaths
from qcdaemon.errors import NotFound
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import Store
from qcdaemon.store.rows import UserRow

Op = Callable[..., Awaitable[Any]]


def _public_user(u: UserRow) -> dict[str, Any]:
    return {"id": u["id"], "email": u["email"], "is_admin": bool(u["is_admin"])}


async def user_add(svc: QcService, email: str, password: str | None, admin: bool = False) -> dict[str, Any]:
    return _public_user(await svc.add_user(email, password, admin))


async def project_add(svc: QcService, name: str, description: str = "", members: list[str] | None = None) -> dict:
    p = await svc.add_project(name, description, members or [])
    return {"pk": p["id"], "name": p["name"], "slug": p["slug"], "description": p["description"]}


async def pipeline_add(svc: QcService, project: str, name: str, fasta: str | None = None, mqpar: str | None = None,
                       rawtools_args: str | None = None) -> dict[str, Any]:
    p = await svc.add_pipeline(project, name, fasta=fasta, mqpar=mqpar, rawtools_args=rawtools_args)
    return {"uuid": p["uuid"], "slug": p["slug"], "name": p["name"], "path": p["path"]}


async def member_add(svc: QcService, project: str, email: str) -> dict[str, Any]:
    await svc.add_member(project, email)
    return {"project": project, "member": email}


async def token_create(svc: QcService, email: str) -> dict[str, Any]:
    user = await svc.store.call(Store.user_by_email, email)
    if user is None:
        from qcdaemon.errors import NotFound

        raise NotFound(f"no user {email}")
    token, created = await svc.token_create(user)
    return {"token": token, "created": created}


async def bootstrap_demo(svc: QcService, email: str, password: str | None = None) -> dict[str, Any]:
    from qcdaemon.service.demo import bootstrap

    return await bootstrap(svc, email, password)


async def runs(svc: QcService, project: str | None = None, pipeline: str | None = None, limit: int = 50) -> list:
    return await svc.runs_overview(None, project, pipeline, limit)


async def retry(svc: QcService, run_key: str, stages: list[str] | None = None) -> dict[str, Any]:
    return await svc.retry(None, run_key, stages)


async def cancel(svc: QcService, run_key: str) -> dict[str, Any]:
    return await svc.cancel(None, run_key)


async def alerts_list(svc: QcService, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    return await ops.list_alerts(svc.store, svc.cfg, None, state=state, limit=limit)


async def alerts_ack(svc: QcService, alert_id: int) -> dict[str, Any]:
    return await ops.acknowledge(svc.store, None, alert_id)


async def alerts_test(svc: QcService, channel: str) -> dict[str, Any]:
    return await ops.test_channel(svc.store, svc.cfg, channel)


async def alerts_channels(svc: QcService) -> list[dict[str, Any]]:
    return await ops.channel_status(svc.store, svc.cfg)


async def snapshot(svc: QcService) -> dict[str, Any]:
    """A consistent copy of the database, written inside the data folder (the one place a hardened
    service may write); the CLI then moves it where the operator asked."""
    import datetime as dt

    folder = svc.cfg.files.snapshots
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"qcdaemon-{dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}.duckdb"
    await svc.store.call(Store.snapshot, path)
    os.chmod(path, 0o600)
    return {"snapshot": str(path), "bytes": path.stat().st_size}


# -- quality control (the operator acts as an admin; annotations may name their author) ----------

# The operator at the console acts as an admin with no user row of its own: every use case reads only
# "id" (None: no author), "email" and "is_admin" of it.
OPERATOR = cast(UserRow, {"id": None, "email": None, "is_admin": True})


async def qc_status(svc: QcService, project: str | None = None, pipeline: str | None = None) -> list[dict[str, Any]]:
    return await svc.quality.status(OPERATOR, project, pipeline)


async def qc_verdicts(svc: QcService, project: str, pipeline: str, run_keys: list[str] | None = None) -> dict:
    return await svc.quality.verdicts(OPERATOR, project, pipeline, run_keys)


async def qc_guide_sets(svc: QcService, project: str, pipeline: str) -> dict[str, Any]:
    return await svc.quality.guide_sets(OPERATOR, project, pipeline)


async def qc_guide_set_add(svc: QcService, project: str, pipeline: str, label: str = "", start: str | None = None,
                           end: str | None = None, run_keys: list[str] | None = None) -> dict[str, Any]:
    return await svc.quality.add_guide_set(OPERATOR, project, pipeline, label=label, start=start, end=end,
                                           run_keys=run_keys)


async def qc_guide_set_delete(svc: QcService, project: str, pipeline: str, guide_set: str) -> dict[str, Any]:
    return await svc.quality.delete_guide_set(OPERATOR, project, pipeline, guide_set)


async def qc_annotate(svc: QcService, project: str, pipeline: str, kind: str, time: str, text: str = "",
                      author: str | None = None) -> dict[str, Any]:
    user = OPERATOR
    if author:
        found = await svc.store.call(Store.user_by_email, author)
        if found is None:
            raise NotFound(f"user {author} does not exist")
        user = cast(UserRow, {**found, "is_admin": True})  # the operator writes it on the author's behalf
    return await svc.quality.add_annotation(user, project, pipeline, kind=kind, time=time, text=text)


async def qc_exclude(svc: QcService, project: str, pipeline: str, metric: str, run_keys: list[str],
                     reason: str = "", undo: bool = False) -> dict[str, Any]:
    return await svc.quality.set_exclusions(OPERATOR, project, pipeline, metric=metric, run_keys=run_keys,
                                            excluded=not undo, reason=reason)


async def qc_rules(svc: QcService, project: str, pipeline: str, metric: str, rules: Any = None,
                   overrides: Any = None) -> dict[str, Any]:
    return await svc.quality.set_rules(OPERATOR, project, pipeline, metric, rules, overrides)


async def qc_recompute(svc: QcService, project: str, pipeline: str) -> dict[str, Any]:
    return await svc.quality.recompute_for(OPERATOR, project, pipeline)


OPS: dict[str, Op] = {
    "user_add": user_add,
    "project_add": project_add,
    "pipeline_add": pipeline_add,
    "member_add": member_add,
    "token_create": token_create,
    "bootstrap_demo": bootstrap_demo,
    "runs": runs,
    "retry": retry,
    "cancel": cancel,
    "snapshot": snapshot,
    "alerts_list": alerts_list,
    "alerts_ack": alerts_ack,
    "alerts_test": alerts_test,
    "alerts_channels": alerts_channels,
    "qc_status": qc_status,
    "qc_verdicts": qc_verdicts,
    "qc_guide_sets": qc_guide_sets,
    "qc_guide_set_add": qc_guide_set_add,
    "qc_guide_set_delete": qc_guide_set_delete,
    "qc_annotate": qc_annotate,
    "qc_exclude": qc_exclude,
    "qc_rules": qc_rules,
    "qc_recompute": qc_recompute,
}




def read_daemon_info(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads(DataPaths(data_dir).daemon_info.read_text())
    except (OSError, ValueError):
        return None
