"""The aiohttp application: its state, its middlewares and the route table."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from qcdaemon.config import Config
from qcdaemon.server import alerts, api, dashapi, qcapi, uploads
from qcdaemon.server.keys import CONFIG, SERVICE, STATE
from qcdaemon.server.middleware import (
    LoginLimiter,
    allowed_hosts,
    error_middleware,
    host_middleware,
    identity_middleware,
)
from qcdaemon.server.pages import dashboard, home, trends
from qcdaemon.server.pages import web as pages_web
from qcdaemon.service.qcservice import QcService


def create_app(service: QcService, cfg: Config, *, status: Callable[[], Awaitable[dict]] | None = None) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, host_middleware, identity_middleware],
        client_max_size=20 * 1024 * 1024,
    )
    app[SERVICE] = service
    app[CONFIG] = cfg
    app[STATE] = {
        "hosts": allowed_hosts(cfg),
        "started": time.time(),
        "limiter": LoginLimiter(cfg.server.login_attempts_per_minute),
        "status": status,
    }
    pages_web.setup(app)
    home.add_routes(app)
    trends.add_routes(app)
    api.add_routes(app)
    qcapi.add_routes(app)
    uploads.add_routes(app)
    alerts.add_routes(app)
    dashboard.add_routes(app)
    dashapi.add_routes(app)
    return app
