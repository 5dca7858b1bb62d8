"""The embedded HTTP server (aiohttp): the only package that knows HTTP."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from qcdaemon.config import Config, ServerConfig
from qcdaemon.core.net import is_loopback
from qcdaemon.errors import PortUnavailable
from qcdaemon.server.admin import serve_admin
from qcdaemon.server.app import create_app

__all__ = ["create_app", "is_loopback", "serve", "serve_admin", "url_of"]


def url_of(cfg: ServerConfig) -> str:
    scheme = "https" if cfg.tls_cert else "http"
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "") else ("[::1]" if cfg.host == "::" else cfg.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{cfg.port}"


def ssl_context(cfg: ServerConfig) -> ssl.SSLContext | None:
    if not cfg.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return ctx


@asynccontextmanager
async def serve(app: web.Application, cfg: Config) -> AsyncIterator[web.AppRunner]:
    """Serve ``app`` on ``[server] host`` and ``port``; a port that cannot be bound is PortUnavailable."""
    runner = web.AppRunner(app, shutdown_timeout=10.0, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host=cfg.server.host, port=cfg.server.port, ssl_context=ssl_context(cfg.server))
        try:
            await site.start()
        except OSError as exc:
            raise PortUnavailable(f"cannot listen on {cfg.server.host}:{cfg.server.port}: {exc.strerror or exc}"
                                  " (is another program using the port? set [server] port)") from exc
        yield runner
    finally:
        await runner.cleanup()
