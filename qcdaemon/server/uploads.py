"""``POST /api/upload/raw``: stream a RAW file to disk (never whole in memory), validate, queue a run.

The bytes go to a ``.part`` file under ``<data_dir>/incoming``, hashed while
they arrive; only a complete, valid upload is moved to ``inputs/<id>/<name>`` and recorded.  On any
failure the partial file is removed.
"""

from __future__ import annotations

import asyncio
import errno
import re
import shutil
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from qcdaemon.core.paths import pipeline_inputs
from qcdaemon.errors import BadRequest, Forbidden, QcdaemonError, TooLarge, Unauthorized
from qcdaemon.server.jsonout import json_response
from qcdaemon.server.keys import AUTH_KIND, CONFIG, SERVICE, USER
from qcdaemon.server.middleware import check_csrf
from qcdaemon.server.uploadsink import Sink
from qcdaemon.store import Store
from qcdaemon.store.rows import PipelineRow

CHUNK = 1 << 20  # bytes asked of the multipart reader at a time
BATCH = 8 << 20  # bytes buffered per write: bounds the upload's memory, amortises the thread hop
RESERVE = 1 << 30
T = TypeVar("T")


class InsufficientStorage(QcdaemonError):
    status = 507


#: File names are cut to this many UTF-8 bytes (file systems allow 255; room is left for suffixes).
MAX_NAME_BYTES = 200
#: A form field other than the file (pid, csrfmiddlewaretoken) is at most this long.
MAX_FIELD_BYTES = 4096
_WINDOWS_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")


def safe_name(filename: str | None) -> str:
    """The client's file name reduced to a plain, safe base name ending in .raw (any case), at most
    :data:`MAX_NAME_BYTES` bytes of UTF-8 (a longer stem is cut, the extension kept)."""
    if not filename:
        raise BadRequest("orig_file: a file is required")
    base = re.split(r"[\\/]", filename)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*\x00')
    base = "".join(ch for ch in base if not 0xD800 <= ord(ch) <= 0xDFFF).strip().strip(".").strip()
    if not base or not base.lower().endswith(".raw") or len(base) <= 4:
        raise BadRequest(f"orig_file: {filename[:200]!r} is not a .raw file")
    stem, ext = base[:-4], base[-4:]
    while len((stem + ext).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    stem = stem.rstrip(" .")
    if not stem or _WINDOWS_RESERVED.fullmatch(stem):
        stem = f"upload-{stem}" if stem else "upload"
    return stem + ext


_PARSE_ERRORS: tuple[type[BaseException], ...] = (ValueError, LookupError, AssertionError, TypeError,
                                                  HttpProcessingError, RequestPayloadError)


async def _parsed(what: Awaitable[T]) -> T:
    """``await what``, with aiohttp's multipart parser errors turned into a 400."""
    try:
        return await what
    except QcdaemonError:
        raise
    except _PARSE_ERRORS as exc:
        detail = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        raise BadRequest(f"the multipart body could not be read: {detail}"[:300]) from None


async def _read_field(part: BodyPartReader, name: str) -> str:
    data = b""
    while chunk := await _parsed(part.read_chunk(MAX_FIELD_BYTES)):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise BadRequest(f"{name}: longer than {MAX_FIELD_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{name}: not valid UTF-8 text") from None


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


async def _pipeline_for(request: web.Request, pid: str | None) -> PipelineRow:
    if not pid or not pid.strip():
        raise BadRequest("pid: this field is required (the pipeline uuid)")
    user = request[USER]
    if user is None:
        raise Unauthorized("Authentication credentials were not provided.")
    p = await request.app[SERVICE].store.call(Store.visible_pipeline_by_uuid, user, pid.strip())
    if p is None:
        raise Forbidden("Missing permissions for requested pipeline.")
    if p["read_only"]:
        raise Forbidden("this pipeline is read-only (the seeded demo); upload to a pipeline of your own")
    return p


def _precheck(request: web.Request) -> int:
    """What can be refused before a byte of the body is read; the size limit in bytes."""
    if request[USER] is None:
        raise Unauthorized("Authentication credentials were not provided.")  # CSRF: checked below, header or form
    if request[AUTH_KIND] == "session" and request.headers.get("X-CSRFToken"):
        check_csrf(request)
    cfg = request.app[CONFIG]
    limit = cfg.server.max_upload_mb * (1 << 20)
    if request.content_length is not None and request.content_length > limit + (1 << 20):
        raise TooLarge(f"orig_file: the upload is larger than the limit of {cfg.server.max_upload_mb} MiB")
    if request.content_type != "multipart/form-data":
        raise BadRequest("the upload must be multipart/form-data with fields pid and orig_file")
    boundary = request.content_type and request.headers.get("Content-Type", "")
    if "boundary=" not in boundary.lower():
        raise BadRequest("the upload must be multipart/form-data with a boundary")
    return limit


@dataclass
class _Upload:
    """What the multipart body held: the pipeline (checked as soon as ``pid`` and the file are known),
    the file's safe name and its sink, the form's CSRF token."""

    pipeline: PipelineRow | None = None
    pid: str | None = None
    form_csrf: str | None = None
    sink: Sink | None = None
    name: str | None = None


async def _receive(request: web.Request, limit: int, up: _Upload) -> None:
    """Read the parts into ``up``: the file streamed to a sink (refused early if not RAW or too large)."""
    cfg = request.app[CONFIG]
    loop = asyncio.get_running_loop()
    reader = await _parsed(request.multipart())
    while (part := await _parsed(reader.next())) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "orig_file" and up.sink is None:
            up.name = safe_name(part.filename)
            if up.pid is not None:
                up.pipeline = await _pipeline_for(request, up.pid)
            await loop.run_in_executor(None, _check_space, cfg.data_dir, request.content_length,
                                       cfg.engine.min_free_mb << 20)
            up.sink = await loop.run_in_executor(None, Sink, cfg.files.incoming / f"{uuid.uuid4().hex}.part",
                                                 limit, up.name)
            await _stream(part, up.sink)
        elif part.name in ("pid", "csrfmiddlewaretoken"):
            text = await _read_field(part, part.name)
            if part.name == "pid":
                up.pid = text
            else:
                up.form_csrf = text
        else:
            await _parsed(part.release())


async def _keep(sink: Sink, pipeline: PipelineRow, name: str) -> Path:
    """The complete upload moved to ``inputs/<uuid>/<name>`` of the pipeline (nothing left on failure)."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sink.finish)
    sink.check_head()  # a file shorter than the RAW header
    final = pipeline_inputs(Path(pipeline["path"])) / uuid.uuid4().hex / name
    try:
        await loop.run_in_executor(None, _move, sink.path, final)
    except BaseException:
        await loop.run_in_executor(None, shutil.rmtree, final.parent, True)
        raise
    return final


async def upload_raw(request: web.Request) -> web.Response:
    limit = _precheck(request)
    user = request[USER]
    assert user is not None  # _precheck
    loop = asyncio.get_running_loop()
    up = _Upload()
    try:
        await _receive(request, limit, up)
        if request[AUTH_KIND] == "session" and not request.headers.get("X-CSRFToken"):
            check_csrf(request, up.form_csrf)
        pipeline = up.pipeline or await _pipeline_for(request, up.pid)
        if up.sink is None or up.name is None:
            raise BadRequest("orig_file: a file is required")
        name, sink = up.name, up.sink
        final = await _keep(sink, pipeline, name)
        sha256, size = sink.sha.hexdigest(), sink.size
        up.sink = None
    except OSError as exc:
        if disk_full(exc):
            raise InsufficientStorage("orig_file: the daemon's disk is full; the upload was not kept") from None
        raise
    finally:
        if up.sink is not None:
            await loop.run_in_executor(None, up.sink.discard)
    try:
        run = await request.app[SERVICE].new_run(
            pipeline, name, source="upload", owner_id=user["id"], stored_path=str(final), size=size,
            sha256=sha256,
        )
    except BaseException:  # no run, no file: an upload either fully exists or not at all
        await loop.run_in_executor(None, shutil.rmtree, final.parent, True)
        raise
    return json_response(
        {"run_key": run["run_key"], "raw_file_id": run["id"], "name": name, "pipeline": pipeline["uuid"],
         "status": run["state"]},
        status=201,
    )


async def _stream(part: BodyPartReader, sink: Sink) -> None:
    """Copy the part to the sink in batches of ``BATCH`` bytes: each batch is hashed and written by
    two executor jobs at once (both off the loop and without the GIL) while the next batch is read
    from the network, so parsing, hashing and writing overlap (at most two batches in memory)."""
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []
    size = 0
    inflight: list[asyncio.Future[None]] = []

    async def flush() -> None:
        nonlocal inflight
        if inflight:
            await asyncio.shield(asyncio.gather(*inflight))  # a cancelled upload still waits for them (finally)
        inflight = []
        if pending:
            sink.accept(pending)
            inflight = [loop.run_in_executor(None, sink.hash, pending),
                        loop.run_in_executor(None, sink.write, pending)]

    try:
        while chunk := await _parsed(part.read_chunk(CHUNK)):
            pending.append(chunk)
            size += len(chunk)
            if size >= BATCH:
                await flush()
                pending, size = [], 0
        await flush()
        pending = []
        await flush()
    finally:
        if inflight:  # a failure while a batch is written: it ends before the sink is discarded
            await asyncio.wait(inflight)
            for f in inflight:
                if not f.cancelled():
                    f.exception()  # retrieved: the error already raised is the one reported


def _check_space(data_dir: Path, content_length: int | None, reserve: int = RESERVE) -> None:
    """Keep ``[engine] min_free_mb`` free for the database and the tools: refuse an upload that would eat into it."""
    free = shutil.disk_usage(data_dir if Path(data_dir).exists() else Path(data_dir).anchor).free
    if free - (content_length or 0) < reserve:
        raise InsufficientStorage(
            f"orig_file: not enough free disk space on the daemon's machine ({free // (1 << 20)} MiB free)"
        )


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(src, dst)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/upload/raw", upload_raw)
