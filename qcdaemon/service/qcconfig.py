"""The config file's ``[[qc]]`` settings, applied to the store at each start of the daemon.

A lab that writes a setting into its config file expects it to hold, as the file says, after every
restart, and to be able to see where it is set. So the file wins for what it names, and only for
that:

* every metric a ``[[qc]]`` table names gets exactly the file's rules and catalogue fields (those
  it leaves out are the shipped defaults), replacing what the API or the CLI set for it; the same
  for the pipeline's ``auto_guide_runs`` and ``offline_hours`` when the table gives either;
* a setting the file wrote earlier and no longer names goes back to the defaults;
* everything the file does not name stays as the API and the CLI left it;
* while a setting comes from the file, the API and the CLI refuse to change it (409, naming the
  file), so an edit is never silently undone by the next restart;
* applying the same file again changes nothing and recomputes nothing; a pipeline whose settings
  changed has its verdicts recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qcdaemon.config import Config, QcPipelineConfig
from qcdaemon.errors import ConfigError
from qcdaemon.qc.verdicts import Settings
from qcdaemon.store import AsyncStore, Store

from .recording import recompute_sync

__all__ = ["PIPELINE_SETTINGS", "apply_qc_config", "apply_qc_config_sync"]

PIPELINE_SETTINGS = "(pipeline settings)"  # in the list of what changed: auto_guide_runs, offline_hours


async def apply_qc_config(store: AsyncStore, cfg: Config) -> list[dict[str, Any]]:
    """Resolve each ``[[qc]]`` table's pipeline (a ConfigError naming the key if there is none) and
    make the stored settings what the file says; returns, per pipeline that changed, what did."""
    entries: list[tuple[int, QcPipelineConfig]] = []
    seen: dict[int, int] = {}
    for i, q in enumerate(cfg.qc):
        p = await store.call(Store.find_pipeline, q.pipeline)
        if p is None:
            raise ConfigError(f"qc[{i}].pipeline: no pipeline {q.pipeline!r} (use project-slug/pipeline-slug or a "
                              "uuid; see qcdaemon list pipelines)")
        if p["id"] in seen:
            raise ConfigError(f"qc[{i}].pipeline: {q.pipeline!r} is the pipeline of qc[{seen[p['id']]}] too; "
                              "one [[qc]] per pipeline")
        seen[p["id"]] = i
        entries.append((p["id"], q))
    return await store.call(apply_qc_config_sync, entries, cfg.source or "the embedded defaults")


def apply_qc_config_sync(store: Any, entries: Sequence[tuple[int, QcPipelineConfig]], source: str,
                         ) -> list[dict[str, Any]]:
    """On the store thread: apply the resolved ``[[qc]]`` tables (pipeline id, table) from the
    file ``source``; settings an earlier file wrote for pipelines it no longer names are removed."""
    wanted = dict(entries)
    pids = sorted({pid for pid, _ in store.qc_settings_from_config()} | set(wanted))
    out = []
    for pid in pids:
        changed = _apply_metrics(store, pid, wanted.get(pid), source)
        if _apply_pipeline(store, pid, wanted.get(pid), source):
            changed.append(PIPELINE_SETTINGS)
        if changed:
            out.append({"pipeline_id": pid, "changed": changed, "recomputed": recompute_sync(store, pid)})
    return out


def _apply_metrics(store: Any, pid: int, q: QcPipelineConfig | None, source: str) -> list[str]:
    rows = {r["metric"]: r for r in store.metric_settings_of(pid)}
    metrics = q.metrics if q is not None else {}
    changed = []
    for metric, m in metrics.items():
        rules = [dict(r) for r in m.rules] if m.rules is not None else None
        overrides = dict(m.overrides) or None
        row = rows.get(metric)
        same = row is not None and row["rules"] == rules and row["overrides"] == overrides
        if row is not None and same and row["config_file"] == source:
            continue
        store.put_metric_settings(pid, metric, rules=rules, overrides=overrides, updated_by=None, config_file=source)
        if not same:
            changed.append(metric)
    for metric, row in rows.items():
        if row["config_file"] is not None and metric not in metrics:
            store.put_metric_settings(pid, metric, rules=None, overrides=None, updated_by=None)
            changed.append(metric)
    return changed


def _apply_pipeline(store: Any, pid: int, q: QcPipelineConfig | None, source: str) -> bool:
    """The pipeline's own settings; whether they changed."""
    row = store.pipeline_qc_settings(pid)
    if q is None or (q.auto_guide_runs is None and q.offline_hours is None):
        if row is None or row["config_file"] is None:
            return False
        store.put_pipeline_qc_settings(pid, auto_guide_runs=None, offline_hours=None, updated_by=None)
        return True
    auto = q.auto_guide_runs if q.auto_guide_runs is not None else Settings.auto_guide_runs
    same = row is not None and row["auto_guide_runs"] == auto and row["offline_hours"] == q.offline_hours
    if row is not None and same and row["config_file"] == source:
        return False
    store.put_pipeline_qc_settings(pid, auto_guide_runs=auto, offline_hours=q.offline_hours, updated_by=None,
                                   config_file=source)
    return not same
