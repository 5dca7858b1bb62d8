"""JSON responses: ``application/json; charset=utf-8``, datetimes as ISO strings, no NaN."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import math
from typing import Any, Protocol

from aiohttp import web


def _default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def dumps(data: Any) -> str:
    try:
        return json.dumps(data, default=_default, allow_nan=False)
    except ValueError:
        return json.dumps(_clean(data), default=_default, allow_nan=False)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", charset="utf-8")


def json_bytes_response(body: bytes, status: int = 200) -> web.Response:
    """An answer the store already serialised (off the event loop)."""
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


class CompressibleAnswer(Protocol):
    """A read route's JSON bytes, plain or gzip-compressed (``service.reads.Answer``)."""

    @property
    def body(self) -> bytes: ...

    @property
    def gzipped(self) -> bool: ...


def accepts_gzip(request: web.Request) -> bool:
    """Whether the request's ``Accept-Encoding`` admits gzip (RFC 9110 12.5.3: a coding with
    ``q=0`` is refused; ``*`` stands for any coding not named)."""
    named: dict[str, float] = {}
    for item in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            k, _, v = param.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if coding.strip():
            named[coding.strip().lower()] = q
    if "gzip" in named:
        return named["gzip"] > 0
    return named.get("*", 0.0) > 0


STREAM_CHUNK = 256 * 1024


async def answer_response(request: web.Request, answer: CompressibleAnswer) -> web.StreamResponse:
    """A read route's answer: a compressed one goes out as it is to a client that accepts gzip,
    and is decompressed (off the event loop) for one that does not.  A large answer is written a
    chunk at a time, each waiting until the socket has taken the one before: handed over whole,
    asyncio's transport copies what the socket did not take at once into its buffer and moves the
    rest to the front after every send (at 38 MB, tens of ms on the loop in steps that small
    requests wait behind)."""
    headers = {"Vary": "Accept-Encoding"}
    body = answer.body
    if answer.gzipped:
        if accepts_gzip(request):
            headers["Content-Encoding"] = "gzip"
        else:
            body = await asyncio.to_thread(gzip.decompress, body)
    if len(body) <= STREAM_CHUNK:
        return web.Response(body=body, headers=headers, content_type="application/json", charset="utf-8")
    resp = web.StreamResponse(headers=headers)
    resp.content_type, resp.charset = "application/json", "utf-8"
    resp.content_length = len(body)
    await resp.prepare(request)
    view = memoryview(body)
    for at in range(0, len(body), STREAM_CHUNK):
        await resp.write(view[at:at + STREAM_CHUNK])
    await resp.write_eof()
    return resp
