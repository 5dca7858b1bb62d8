"""The daemon's side of a remote job: submit it, or re-attach to it after a restart, wait, cancel.

One job per stage attempt.  Its key is recorded in the stage's row *before* it is submitted, and
the job is published on the scheduler under that key (``publish_dataset``), so the scheduler keeps
it when this daemon dies; a restarted daemon looks it up (``get_dataset``) and waits for it again,
or, when the scheduler no longer knows it, submits a new one.  Only the daemon writes results into
its store, once per attempt, so a re-attached job never gives two results.

Dask's client is synchronous here, run in threads (``asyncio.to_thread``): nothing of it runs on
the daemon's event loop.  ``distributed`` is imported only when a job is run (the ``scale`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from qcdaemon.errors import ToolError
from qcdaemon.remote import task
from qcdaemon.remotecfg import RemoteConfig
from qcdaemon.store import AsyncStore, Store

log = structlog.get_logger("qcdaemon.remote")

POLL_SECONDS = 0.5
WAIT_FOR_SCHEDULER_SECONDS = 5.0  # between connection attempts with on_scheduler_down = "wait"
DEADLINE_MARGIN_SECONDS = 60.0  # the worker enforces the timeout; the daemon gives up this much later


@dataclass(frozen=True)
class RemoteOutcome:
    """What a remote job came to: ``outcome`` is exited, timeout, cancel, not_started or failed."""

    outcome: str
    exit_code: int | None = None
    worker: str | None = None
    error: str | None = None
    files: dict[str, tuple[bytes, str]] | None = None


class _SchedulerLost(Exception):
    pass


@dataclass(frozen=True)
class RemoteJob:
    """One stage attempt's job: the store row it belongs to and the command for the worker."""

    run_id: int
    stage: str
    job: dict[str, Any]
    files: dict[str, tuple[bytes, str]] | None
    timeout: float


async def run_remote(store: AsyncStore, rcfg: RemoteConfig, rj: RemoteJob, cancel: asyncio.Event) -> RemoteOutcome:
    """Run (or re-attach to) the stage's job on the cluster until it ends, times out or is cancelled.

    Raises:
        ToolError: the scheduler cannot be reached or went away (``on_scheduler_down = "fail"``).
    """
    while True:
        try:
            client = await asyncio.to_thread(_connect, rcfg)
        except (OSError, TimeoutError) as exc:
            reason = f"the Dask scheduler at {rcfg.scheduler} cannot be reached: {exc}"
            if not await _wait_for_scheduler(rcfg, reason, cancel):
                return RemoteOutcome("cancel", error="cancelled while waiting for the Dask scheduler")
            continue
        try:
            return await _attached(client, store, rj, cancel)
        except _SchedulerLost as exc:
            if not await _wait_for_scheduler(rcfg, f"the Dask scheduler at {rcfg.scheduler} went away: {exc}", cancel):
                return RemoteOutcome("cancel", error="cancelled while waiting for the Dask scheduler")
        finally:
            await asyncio.to_thread(_close, client)


async def _wait_for_scheduler(rcfg: RemoteConfig, reason: str, cancel: asyncio.Event) -> bool:
    """``fail``: raise; ``wait``: pause (False when cancelled meanwhile) and try again."""
    if rcfg.on_scheduler_down == "fail":
        raise ToolError(reason)
    log.warning("dask_scheduler_waiting", reason=reason)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cancel.wait(), WAIT_FOR_SCHEDULER_SECONDS)
    return not cancel.is_set()


def _connect(rcfg: RemoteConfig) -> Any:
    from distributed import Client
    from distributed.security import Security

    security = None
    if rcfg.tls_cert:
        security = Security(tls_ca_file=rcfg.tls_ca_file or None, tls_client_cert=rcfg.tls_cert,
                            tls_client_key=rcfg.tls_key, require_encryption=True)
    return Client(rcfg.scheduler, timeout=rcfg.connect_timeout_seconds, set_as_default=False,
                  security=security)


def _close(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.close(timeout=5)


async def _attached(client: Any, store: AsyncStore, rj: RemoteJob, cancel: asyncio.Event) -> RemoteOutcome:
    recorded = await store.read(Store.remote_job, rj.run_id, rj.stage)
    future = await asyncio.to_thread(_published, client, recorded) if recorded else None
    key = recorded or ""
    if future is not None:
        log.info("remote_job_reattached", key=key)
    else:
        key = f"qcdaemon-{rj.stage}-rf{rj.run_id}-{uuid.uuid4().hex[:12]}"
        await store.call(Store.set_remote_job, rj.run_id, rj.stage, key)  # before the job exists
        future = await asyncio.to_thread(_submit, client, key, rj)
        log.info("remote_job_submitted", key=key, scheduler=client.scheduler.address)
    try:
        return await _wait(client, store, rj, key, future, cancel)
    except asyncio.CancelledError:  # the daemon stops at once: the job goes on, found again at the next start
        raise
    except BaseException:
        await asyncio.to_thread(_forget, client, key)
        raise
    finally:
        if future is not None and future.done():
            await asyncio.to_thread(_forget, client, key)


def _published(client: Any, key: str) -> Any:
    try:
        future = client.get_dataset(key)
    except KeyError:
        return None
    return future if future.status in ("pending", "finished", "error") else None


def _names(key: str) -> tuple[str, str]:
    return f"{key}-started", f"{key}-cancel"


def _submit(client: Any, key: str, rj: RemoteJob) -> Any:
    import cloudpickle

    cloudpickle.register_pickle_by_value(task)  # the workers need no qcdaemon
    marker, cancel = _names(key)
    job = {**rj.job, "marker": marker, "cancel": cancel}
    # one piece of data under a fresh key (a dict would be scattered under its own keys), straight to a worker
    files = client.scatter([rj.files], hash=False)[0] if rj.files else None
    future = client.submit(task.run_job, job, files, key=key, pure=False, retries=0)
    # held by the scheduler, the job and its scattered inputs (which cannot be recomputed): they
    # survive this client, and this daemon
    client.publish_dataset(**{key: future, f"{key}-inputs": [files] if files is not None else []})
    return future


def _forget(client: Any, key: str) -> None:
    from distributed import Event

    marker, cancel = _names(key)
    for name in (key, f"{key}-inputs"):
        with contextlib.suppress(Exception):
            client.unpublish_dataset(name)
    with contextlib.suppress(Exception):
        client.set_metadata([task.MARKERS, marker], "")  # a few bytes stay; the scheduler has no delete
    with contextlib.suppress(Exception):
        Event(cancel, client=client).clear()


def _worker_of(client: Any, key: str) -> str | None:
    try:
        return str(client.get_metadata([task.MARKERS, _names(key)[0]], None) or "") or None
    except Exception:
        return None


def _stop(client: Any, key: str, future: Any) -> None:
    from distributed import Event

    with contextlib.suppress(Exception):
        Event(_names(key)[1], client=client).set()  # the worker stops the tool's process group
    with contextlib.suppress(Exception):
        client.cancel([future])


async def _wait(client: Any, store: AsyncStore, rj: RemoteJob, key: str, future: Any,
                cancel: asyncio.Event) -> RemoteOutcome:
    deadline = time.monotonic() + rj.timeout + DEADLINE_MARGIN_SECONDS
    worker = None
    while not future.done():
        if cancel.is_set() or time.monotonic() > deadline:
            await asyncio.to_thread(_stop, client, key, future)
            stop = "cancel" if cancel.is_set() else "timeout"
            return RemoteOutcome(stop, worker=worker, error="cancelled" if stop == "cancel" else
                                 f"timed out after {rj.timeout:g} s (the worker did not answer)")
        if client.status != "running":
            raise _SchedulerLost(f"the client is {client.status}")
        if worker is None and (worker := await asyncio.to_thread(_worker_of, client, key)):
            await store.call(Store.set_stage_worker, rj.run_id, rj.stage, worker)
            log.info("remote_job_running", key=key, worker=worker)
        await asyncio.sleep(POLL_SECONDS)
    return await _ended(client, store, rj, key, future, worker)


async def _ended(client: Any, store: AsyncStore, rj: RemoteJob, key: str, future: Any,
                 worker: str | None) -> RemoteOutcome:
    if future.status == "finished":
        res = await asyncio.to_thread(future.result)
        await store.call(Store.set_stage_worker, rj.run_id, rj.stage, res["worker"])
        return RemoteOutcome(res["outcome"], res["exit_code"], res["worker"], res.get("error"), res.get("files"))
    if client.status != "running":
        raise _SchedulerLost(f"the job {key} was dropped by the scheduler")
    if future.status != "error":  # cancelled with the scheduler up: its scattered inputs went with a worker
        error = f"the job was dropped by the cluster ({future.status}): a worker holding its inputs was lost"
        log.warning("remote_job_failed", key=key, worker=worker, error=error)
        return RemoteOutcome("failed", worker=worker, error=error)
    exc = await asyncio.to_thread(future.exception)
    name = type(exc).__name__
    if name == "KilledWorker":
        error = f"the Dask worker running it died ({exc})"
    elif isinstance(exc, task.WorkerLost) or name == "WorkerLost":
        error = f"the Dask worker running it was lost: {exc}"
    else:
        error = f"the job failed on the worker: {name}: {exc}"
    log.warning("remote_job_failed", key=key, worker=worker, error=error)
    return RemoteOutcome("failed", worker=worker, error=error)
