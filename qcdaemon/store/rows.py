"""The rows the store hands out, typed: what every caller may rely on being there.

They are plain dicts at run time (``TypedDict``), so JSON answers and templates use them as they
are; mypy checks every key a caller reads.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, NotRequired, TypedDict


class UserRow(TypedDict):
    id: int
    email: str
    password_hash: str | None
    is_admin: bool
    created_at: dt.datetime
    token_digest: NotRequired[str]  # when found by its API token


class UserSummary(TypedDict):
    id: int
    email: str
    is_admin: bool
    created_at: dt.datetime


class ProjectRow(TypedDict):
    id: int
    name: str
    slug: str
    description: str
    created_by: int | None
    created_at: dt.datetime


class PipelineRow(TypedDict):
    id: int
    uuid: str
    project_id: int
    name: str
    slug: str
    path: str
    fasta_path: str | None
    mqpar_path: str | None
    rawtools_args: str
    read_only: bool
    created_by: int | None
    created_at: dt.datetime
    search_params: str | None  # JSON object: the pipeline's own search parameters (migration "search psms")
    project_slug: NotRequired[str]


class RunRow(TypedDict):
    id: int
    pipeline_id: int
    name: str
    stored_path: str | None
    source: str
    size: int | None
    sha256: str | None
    owner_id: int | None
    created_at: dt.datetime
    acquired_at: dt.datetime | None
    flagged: bool
    use_downstream: bool | None
    state: str
    error: str | None
    metrics_engine: str | None
    run_key: str
    owner_email: str | None
    pipeline_uuid: NotRequired[str]
    pipeline_slug: NotRequired[str]
    project_slug: NotRequired[str]


class StageRow(TypedDict):
    run_id: int
    stage: str
    seq: int
    state: str
    attempts: int
    queued_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    exit_code: int | None
    log_dir: str | None
    error: str | None
    remote_key: NotRequired[str | None]  # the Dask job of a stage run on a cluster (issue 17)
    worker: NotRequired[str | None]  # the Dask worker it ran on


class RunOverview(TypedDict):
    """A run as the runs overview lists it, with its stages."""

    id: int
    run_key: str
    name: str
    state: str
    error: str | None  # the failed stages' reasons ("native: ...; rawtools: ..."), None when none failed
    source: str
    created_at: dt.datetime
    acquired_at: dt.datetime | None
    flagged: bool
    use_downstream: bool | None
    metrics_engine: str | None
    owner: str | None
    project: str
    pipeline: str
    stages: list[StageRow]
    superseded_by: NotRequired[str | None]  # the run key of the later, complete version of the file
    origin: NotRequired[str | None]  # a run a hub pulled: the [[hub.source]] name it came from
    origin_key: NotRequired[str | None]  # ... and its run key there


class TokenRow(TypedDict):
    user_id: int
    digest: str
    sealed: str
    created_at: dt.datetime


class SessionRow(TypedDict):
    digest: str
    user_id: int | None
    csrf: str
    created_at: dt.datetime
    expires_at: dt.datetime


class LedgerKey(TypedDict):
    """One version of a file in a watched folder."""

    watch_path: str
    path: str
    size: int
    mtime_ns: int
    sha256: str


class LedgerRow(LedgerKey):
    id: int
    state: str
    reason: str | None
    run_id: int | None
    first_seen: dt.datetime
    updated_at: dt.datetime


QcValue = tuple[int, str, str, Any]  # (run id, source, column, value)
