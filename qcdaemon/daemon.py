"""The composition root: builds store, service, engine, watcher, scheduler and server, in that order,
and takes them down in reverse.  ``run_forever`` is what ``qcdaemon run`` calls.

Signals only flip flags: the first SIGTERM/SIGINT starts a graceful stop (no new files, running
stages may finish within ``engine.shutdown_timeout``, then are stopped and re-queued); a second
one forces the stop at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
import secrets
import shutil
import signal
import sys
import threading
from contextlib import AsyncExitStack
from typing import Any

import structlog

from qcdaemon import __version__
from qcdaemon.alerts import AlertsComponent
from qcdaemon.config import Config, transport_problem
from qcdaemon.core.files import write_private
from qcdaemon.core.security import load_or_create_key
from qcdaemon.engine.ingest import Ingest
from qcdaemon.engine.workers import Engine
from qcdaemon.errors import ConfigError, StoreBusy
from qcdaemon.server import create_app, is_loopback, serve, url_of
from qcdaemon.server.keys import STATE
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import AsyncStore, Store

log = structlog.get_logger("qcdaemon")


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stop_event = asyncio.Event()
        self.force_event = asyncio.Event()
        self.watcher: Any = None
        self.engine: Engine | None = None
        self.store: AsyncStore | None = None

    def request_stop(self) -> None:
        if self.stop_event.is_set():
            log.warning("stop_forced")
            self.force_event.set()
            if self.engine is not None:
                self.engine.force()
        else:
            log.info("stop_requested")
        self.stop_event.set()

    def check_transport(self) -> None:
        problem = transport_problem(self.cfg)
        if problem:
            raise ConfigError(problem)
        s = self.cfg.server
        if s.allow_insecure_http and not s.tls_cert and not is_loopback(s.host):
            log.warning("insecure_http", host=s.host, port=s.port,
                        detail="plain HTTP on a non-loopback address: passwords and tokens cross the network in clear")

    async def run(self) -> int:
        cfg = self.cfg
        self.check_transport()
        data = cfg.data_dir
        await asyncio.to_thread(data.mkdir, parents=True, exist_ok=True)
        try:
            self.store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)
        except StoreBusy as exc:
            log.error("store_busy", detail=str(exc))
            print(f"qcdaemon: {exc}: is another qcdaemon running with the same data directory?")
            return 1
        try:
            return await self._run_with_store(self.store)
        finally:
            await asyncio.to_thread(self.store.close)
            log.info("store_closed")

    async def _run_with_store(self, store: AsyncStore) -> int:
        cfg = self.cfg
        svc = QcService(store, cfg, load_or_create_key(cfg.files.secret_key))
        ingest = Ingest(svc, cfg)
        await ingest.resolve()
        self.engine = engine = Engine(svc, cfg)
        from qcdaemon.core.sdnotify import sd_notify, watchdog_interval
        from qcdaemon.watcher import FolderWatcher

        self.watcher = FolderWatcher(cfg.watch, ingest.on_event)
        scheduler = self._scheduler(svc)
        app = create_app(svc, cfg, status=self._status)
        admin_secret = secrets.token_hex(32)
        app[STATE]["admin_secret"] = admin_secret
        # uploads cut off by a crash leave .part files; none can be in flight before the server starts
        await asyncio.to_thread(shutil.rmtree, cfg.files.incoming, True)
        async with AsyncExitStack() as stack:
            try:  # bind first: a busy port stops start-up before any work is taken
                await stack.enter_async_context(serve(app, cfg))
            except OSError as exc:
                log.error("port_unavailable", host=cfg.server.host, port=cfg.server.port, error=str(exc))
                print(f"qcdaemon: cannot listen on {cfg.server.host}:{cfg.server.port}: {exc.strerror or exc}"
                      " (is another program using the port? set [server] port)", file=sys.stderr)
                return 1
            write_private(cfg.files.admin_secret, admin_secret + "\n")
            info = {"pid": os.getpid(), "url": url_of(cfg.server), "admin_url": url_of(cfg.server) + "/_admin/op",
                    "version": __version__}
            write_private(cfg.files.daemon_info, json.dumps(info))
            await engine.start()
            await stack.enter_async_context(AlertsComponent(store, cfg, watcher=self.watcher, scheduler=scheduler))
            await self.watcher.start()
            pending = sum(w.get("pending", 0) for w in self.watcher.status())
            if pending >= 5:
                ingest.expect(pending)  # a progress line while the first sweep's files are taken in
            scheduler.start()
            log.info("serving", url=url_of(cfg.server), data_dir=str(cfg.data_dir), version=__version__)
            sd_notify("READY=1\nSTATUS=serving")
            pinger = asyncio.create_task(self._watchdog(watchdog_interval(), sd_notify))
            await self.stop_event.wait()
            sd_notify("STOPPING=1")
            pinger.cancel()
            scheduler.shutdown(wait=False)
            timeout = 0 if self.force_event.is_set() else cfg.engine.shutdown_timeout
            # the engine takes no new stage from this moment; the watcher winds down meanwhile
            await asyncio.gather(engine.stop(timeout), self.watcher.stop())
            await ingest.stop()
            for f in (cfg.files.admin_secret, cfg.files.daemon_info):
                f.unlink(missing_ok=True)
        log.info("stopped")
        return 0

    async def _watchdog(self, interval: float | None, notify: Any) -> None:
        if not interval:
            return
        while True:
            await asyncio.sleep(interval / 2)
            notify("WATCHDOG=1")

    def _scheduler(self, svc: QcService) -> Any:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        sched = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        sched.add_job(self.watcher.sweep, "interval", minutes=self.cfg.scheduler.sweep_minutes, id="sweep")
        sched.add_job(functools.partial(svc.store.call, Store.checkpoint), "cron", hour=self.cfg.scheduler.checkpoint_hour, id="checkpoint")
        sched.add_job(functools.partial(svc.store.call, Store.purge_sessions), "interval", hours=6, id="purge_sessions")
        return sched

    async def _status(self) -> dict[str, Any]:
        return {
            "watched_folders": [_iso_times(w) for w in self.watcher.status()] if self.watcher else [],
            "running_stages": self.engine.busy() if self.engine else 0,
            "stopping": self.stop_event.is_set(),
        }


def _iso_times(w: dict[str, Any]) -> dict[str, Any]:
    """Times in the API are ISO 8601 strings (UTC)."""
    seen = w.get("last_seen_at")
    if isinstance(seen, (int, float)):
        w = {**w, "last_seen_at": dt.datetime.fromtimestamp(seen, dt.UTC).isoformat()}
    return w


def _install_signals(loop: asyncio.AbstractEventLoop, daemon: Daemon) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, daemon.request_stop)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(daemon.request_stop))


def run_forever(cfg: Config, *, service: bool = False, stop: threading.Event | None = None) -> int:
    """Run until a signal (or ``stop``, set by the Windows service) asks the daemon to end."""
    from qcdaemon.log import configure_logging

    configure_logging(cfg, service=service)

    async def main() -> int:
        daemon = Daemon(cfg)
        loop = asyncio.get_running_loop()
        if stop is None:
            _install_signals(loop, daemon)
        else:
            threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(daemon.request_stop)),
                             daemon=True).start()
        return await daemon.run()

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        log.error("config_error", detail=str(exc))
        print(f"qcdaemon: configuration error: {exc}")
        return 2


def run_service(cfg: Config, stop_event: threading.Event) -> int:
    """Entry for the Windows service: runs until ``stop_event`` is set."""
    return run_forever(cfg, service=True, stop=stop_event)

