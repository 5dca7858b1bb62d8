"""JSON responses: ``application/json; charset=utf-8``, datetimes as ISO strings, no NaN."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import zlib
from typing import Any, BinaryIO, Protocol

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
    """A read route's answer: JSON bytes, or an open gzip file of them (``service.reads.Answer``)."""

    @property
    def body(self) -> bytes: ...

    @property
    def gzip_file(self) -> BinaryIO | None: ...


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
    """A read route's answer.  A cached one (a gzip file) goes out as it is to a client that
    accepts gzip, and decompressed for one that does not, a chunk at a time either way, read and
    decompressed off the event loop.  A large computed one is written a chunk at a time too, each
    waiting until the socket has taken the one before: handed over whole, asyncio's transport
    copies what the socket did not take at once into its buffer and moves the rest to the front
    after every send (at 38 MB, tens of ms on the loop in steps that small requests wait behind)."""
    headers = {"Vary": "Accept-Encoding"}
    if answer.gzip_file is not None:
        with answer.gzip_file as fh:
            return await _send_file(request, fh, headers)
    body = answer.body
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


async def _send_file(request: web.Request, fh: BinaryIO, headers: dict[str, str]) -> web.StreamResponse:
    """The gzip file ``fh`` as it is (``Content-Encoding: gzip``) or decompressed (sent chunked: its
    length is known only once decompressed), a chunk at a time, read off the event loop."""
    loop = asyncio.get_running_loop()
    resp = web.StreamResponse(headers=headers)
    resp.content_type, resp.charset = "application/json", "utf-8"
    gzipped = accepts_gzip(request)
    inflate = zlib.decompressobj(wbits=31)

    def step() -> tuple[bytes, bool]:
        """The next piece to send, and whether the file has ended."""
        raw = fh.read(STREAM_CHUNK)
        if gzipped:
            return raw, not raw
        return (inflate.decompress(raw), False) if raw else (inflate.flush(), True)

    if gzipped:
        resp.headers["Content-Encoding"] = "gzip"
        resp.content_length = os.fstat(fh.fileno()).st_size
    await resp.prepare(request)
    done = False
    while not done:
        chunk, done = await loop.run_in_executor(None, step)
        if chunk:
            await resp.write(chunk)
    await resp.write_eof()
    return resp
