"""The connection level under the application: aiohttp's own errors as JSON, slow clients dropped.

aiohttp answers what never reaches the application (a request line or header its parser refuses, a
handler that raised past every middleware) with ``text/plain``; :class:`JsonErrorHandler` answers
with the same ``{"detail": ...}`` JSON as the application.  It also drops clients that hold a
connection without making progress, and :class:`JsonErrorServer` limits connections per address:

- ``header_timeout``: a request's head (request line and headers) must arrive within this time;
- ``keepalive_timeout`` (aiohttp's): an idle connection is closed after this time;
- ``min_body_rate`` over ``body_rate_window``: a request body that arrives slower than this
  (bytes/s, measured over each window while the server waits for it) is cut off;
- ``max_connections_per_client``: more open connections from one address are refused with a 429.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import ERROR, RequestHandler
from aiohttp.web_request import BaseRequest

log = structlog.get_logger("qcdaemon.server")

MAX_DETAIL = 300
_TICK = 0.5
_METHOD = re.compile(rb"[A-Z]{3,10}")


def _last_head_method(data: bytes) -> bytes | None:
    """The method of the last request line (RFC 9112 section 3: method SP request-target SP
    HTTP-version) begun in the chunk's first 64 KiB, if any.  Found from the version backwards with
    ``bytes.rfind``: no per-byte scan of upload bodies, which pass through here too."""
    end = data.rfind(b" HTTP/1.", 0, 65536)
    while end >= 0:  # a header or body may hold the text too: go on back to a real request line
        start = data.rfind(b"\n", 0, end) + 1
        method, _, target = data[start:end].partition(b" ")
        if _METHOD.fullmatch(method) and target and b" " not in target and b"\r" not in target:
            return method
        end = data.rfind(b" HTTP/1.", 0, start)
    return None


def _detail(status: int, message: str | None) -> str:
    if status >= 500:
        return "internal error; the daemon's log has the details" if status != 504 else "the request took too long"
    text = (message or "").strip() or "the request could not be read"
    return text[:MAX_DETAIL]


class JsonErrorHandler(RequestHandler):
    """aiohttp's request handler, with JSON error answers and progress deadlines."""

    def __init__(self, manager: JsonErrorServer, *, header_timeout: float = 0.0, min_body_rate: float = 0.0,
                 body_rate_window: float = 30.0, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._qcd_server = manager
        self._qcd_header_timeout = header_timeout
        self._qcd_min_rate = min_body_rate
        self._qcd_window = body_rate_window
        self._qcd_head_since: float | None = None
        self._qcd_body: tuple[BaseRequest, float, int] | None = None
        self._qcd_tick: asyncio.TimerHandle | None = None
        self._qcd_peer: str | None = None
        self._qcd_method: bytes | None = None  # of the request head being received
        self._qcd_last_method: bytes | None = None  # of the last complete (or refused) head

    # -- JSON errors ---------------------------------------------------------------------------

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 and status != 504:
            log.error("request_failed", remote=request.remote, status=status, exc_info=exc)
        else:
            log.info("request_refused", remote=request.remote, status=status, detail=_detail(status, message))
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; cannot send an error answer")
        stand_in = getattr(request, "_message", None) is ERROR  # aiohttp's request for a head it refused
        refused_head = request.method == "HEAD" or (self._qcd_last_method == b"HEAD" and stand_in)
        if refused_head:
            # a head the parser refused: aiohttp's stand-in request says GET, but a HEAD answer has no body
            resp = web.Response(status=status, content_type="application/json", charset="utf-8")
            resp.force_close()
            return resp
        resp = web.Response(status=status, text=json.dumps({"detail": _detail(status, message)}),
                            content_type="application/json", charset="utf-8")
        resp.force_close()
        return resp

    # -- connection limits and deadlines ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._qcd_peer = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else None
        if not self._qcd_server.admit(self._qcd_peer):
            self._qcd_peer = None
            body = json.dumps({"detail": "too many connections from this address"}).encode()
            head = (f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            log.warning("connection_refused", remote=str(peer[0]) if peer else None, reason="per-client limit")
            transport.write(head + body)  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)
        if self._qcd_header_timeout > 0:
            self._qcd_head_since = self._loop.time()  # a connection that sends nothing is timed like a slow head
        if self._qcd_header_timeout > 0 or self._qcd_min_rate > 0:
            self._qcd_tick = self._loop.call_later(_TICK, self._qcd_check)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._qcd_tick is not None:
            self._qcd_tick.cancel()
            self._qcd_tick = None
        if self._qcd_peer is not None:
            self._qcd_server.release(self._qcd_peer)
            self._qcd_peer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        idle = self._current_request is None and not self._messages
        if idle and data and self._qcd_head_since is None and self._qcd_header_timeout > 0:
            self._qcd_head_since = self._loop.time()
        method = _last_head_method(data)
        if method is not None:
            # the last head begun in this chunk, also one pipelined behind another or arriving while
            # the last request is still being finished, so that a HEAD the parser refuses is not
            # answered with a body (the client would read it as the start of the next answer)
            self._qcd_method = method
        elif idle and data and self._qcd_method is None:
            token = data[:16].split(b" ", 1)[0]
            if _METHOD.fullmatch(token) or (len(token) == len(data) and token.isupper()):
                self._qcd_method = token  # a head begun here (or a method cut by the chunk's end)
            # else: the rest of a body whose request was already answered (a HEAD's, say): an error
            # in it belongs to that request's method, kept in _qcd_last_method
        super().data_received(data)
        if self._messages or self._current_request is not None:
            self._qcd_head_since = None  # a complete head arrived
            if self._qcd_method is not None:
                self._qcd_last_method, self._qcd_method = self._qcd_method, None

    def _qcd_check(self) -> None:
        self._qcd_tick = None
        if self.transport is None or self._force_close:
            return
        now = self._loop.time()
        idle = self._current_request is None and not self._messages
        since = self._qcd_head_since
        if idle and since is not None and now - since > self._qcd_header_timeout:
            log.info("slow_client_dropped", remote=self._qcd_peer, reason="request head not complete in time",
                     seconds=self._qcd_header_timeout)
            self.force_close()
            return
        req = self._current_request
        if self._qcd_min_rate > 0 and req is not None and not req.content.is_eof():
            content = req.content
            if self._qcd_body is None or self._qcd_body[0] is not req:
                self._qcd_body = (req, now, content.total_bytes)
            else:
                _req, t0, b0 = self._qcd_body
                if now - t0 >= self._qcd_window:
                    rate = (content.total_bytes - b0) / (now - t0)
                    waiting = not content._buffer and not self._reading_paused  # the server waits for the client
                    if waiting and rate < self._qcd_min_rate:
                        log.info("slow_client_dropped", remote=self._qcd_peer, reason="request body too slow",
                                 bytes_per_second=round(rate, 1), minimum=self._qcd_min_rate)
                        self.force_close()
                        return
                    self._qcd_body = (req, now, content.total_bytes)
        else:
            self._qcd_body = None
        self._qcd_tick = self._loop.call_later(_TICK, self._qcd_check)


class JsonErrorServer(web.Server):
    """aiohttp's connection factory, making :class:`JsonErrorHandler` connections, counted per address."""

    max_per_client: int = 0

    def __call__(self) -> RequestHandler:
        if not hasattr(self, "_qcd_counts"):
            self._qcd_counts: dict[str, int] = {}
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)

    def admit(self, peer: str | None) -> bool:
        if peer is None or self.max_per_client <= 0:
            return True
        n = self._qcd_counts.get(peer, 0)
        if n >= self.max_per_client:
            return False
        self._qcd_counts[peer] = n + 1
        return True

    def release(self, peer: str) -> None:
        n = self._qcd_counts.get(peer, 0) - 1
        if n > 0:
            self._qcd_counts[peer] = n
        else:
            self._qcd_counts.pop(peer, None)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose server makes :class:`JsonErrorHandler` connections.

    ``handler_args`` (header_timeout, min_body_rate, body_rate_window, keepalive_timeout, ...) reach
    each connection's handler; ``max_connections_per_client`` is the server's.
    """

    def __init__(self, app: web.Application, *, max_connections_per_client: int = 0, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._qcd_max_per_client = max_connections_per_client

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = JsonErrorServer  # the same object, making our handlers (aiohttp has no hook for it)
        assert isinstance(server, JsonErrorServer)
        server.max_per_client = self._qcd_max_per_client
        return server
