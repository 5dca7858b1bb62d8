"""The composition root: starts store, ingest, server, engine, admin channel, watcher, scheduler and
the systemd notifier, each an async context manager on one ``AsyncExitStack``, in that order, and
takes them down in reverse.  A failure at any point of start-up (or of the stop) therefore tears
down exactly what was started, and :func:`exit_code` turns it into the process's exit code: the
one place where errors become exit codes.  ``run_forever`` is what ``qcdaemon run`` calls.

Signals only flip flags: the first SIGTERM/SIGINT starts a graceful stop (no new files, running
stages may finish within ``engine.shutdown_timeout``, then are stopped and re-queued); a second
one forces the stop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import gc
import json
import os
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from qcdaemon import __version__
from qcdaemon.alerts import AlertsComponent
from qcdaemon.config import Config, transport_problem
from qcdaemon.config_qc import qc_warnings
from qcdaemon.core.files import write_private
from qcdaemon.core.sdnotify import sd_notify, watchdog_interval
from qcdaemon.core.security import load_or_create_key
from qcdaemon.engine.ingest import Ingest
from qcdaemon.engine.reconcile import reconcile
from qcdaemon.engine.workers import Engine
from qcdaemon.errors import ConfigError, PortUnavailable, StoreBusy
from qcdaemon.log import configure_logging
from qcdaemon.server import create_app, is_loopback, serve, serve_admin, url_of
from qcdaemon.server.hub import HubPuller
from qcdaemon.service.qcconfig import apply_qc_config
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import AsyncStore, Store
from qcdaemon.watcher import FolderWatcher

log = structlog.get_logger("qcdaemon")

EXIT_OK = 0
EXIT_FAILURE = 1  # start-up failed (the store or the port busy, a broken data folder) or the daemon failed
EXIT_CONFIG = 2  # the configuration is wrong (the message names the key)


def exit_code(exc: Exception) -> int:
    """Log and print why the daemon could not start or run, and choose its exit code."""
    if isinstance(exc, ConfigError):
        log.error("config_error", detail=str(exc))
        _say(f"configuration error: {exc}")
        return EXIT_CONFIG
    if isinstance(exc, StoreBusy):
        log.error("store_busy", detail=str(exc))
        _say(f"{exc}: is another qcdaemon running with the same data directory?")
    elif isinstance(exc, PortUnavailable):
        log.error("port_unavailable", detail=str(exc))
        _say(str(exc))
    else:
        log.error("daemon_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        _say(f"stopped by an error: {type(exc).__name__}: {exc} (the log has the details)")
    return EXIT_FAILURE


def _say(message: str) -> None:
    if sys.stderr is not None:  # None under a Windows service
        print(f"qcdaemon: {message}", file=sys.stderr)


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stop_event = asyncio.Event()
        self.force_event = asyncio.Event()
        self.store: AsyncStore | None = None
        self.engine: Engine | None = None
        self.watcher: FolderWatcher | None = None
        self.admin_url: str | None = None
        self.hub: HubPuller | None = None
        self.ready = asyncio.Event()  # set once everything runs (after READY=1)

    def request_stop(self) -> None:
        """The signal handler: the first call stops gracefully, the second forces the stop."""
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
        """Start, serve until asked to stop, stop; returns the exit code."""
        try:
            async with AsyncExitStack() as stack:
                await self._start(stack)
                await self.stop_event.wait()
                if self.engine is not None:
                    self.engine.stop_taking()  # from this moment; the others wind down meanwhile
                log.info("stopping", forced=self.force_event.is_set())
        except Exception as exc:
            return exit_code(exc)
        finally:
            gc.unfreeze()  # a daemon run in a process that goes on (tests, the Windows service) leaves nothing frozen
        log.info("stopped")
        return EXIT_OK

    async def _start(self, stack: AsyncExitStack) -> None:
        """Enter every component in dependency order; each one's exit undoes its start."""
        cfg = self.cfg
        self.check_transport()
        await asyncio.to_thread(cfg.data_dir.mkdir, parents=True, exist_ok=True)
        store = self.store = await stack.enter_async_context(_opened_store(cfg))
        svc = QcService(store, cfg, await asyncio.to_thread(load_or_create_key, cfg.files.secret_key))
        ingest = Ingest(svc, cfg)
        await stack.enter_async_context(_running(ingest.resolve, ingest.stop))
        for warning in qc_warnings(cfg.qc):
            log.warning("qc_config_unknown_metric", detail=warning)
        for applied in await apply_qc_config(store, cfg):  # [[qc]]: the file wins for what it names
            log.info("qc_config_applied", **applied)
        # uploads cut off by a crash leave .part files; none can be in flight before the server starts
        await asyncio.to_thread(shutil.rmtree, cfg.files.incoming, True)
        # what a kill left (upload files without a run, ...) is cleared before the server takes uploads:
        # afterwards, an upload's file waits a moment in inputs/ for its run (issue 12, kill chaos)
        await reconcile(store, cfg)
        # bind before any work is taken: a busy port stops start-up at once
        await stack.enter_async_context(serve(create_app(svc, cfg, status=self._status), cfg))
        self.engine = await stack.enter_async_context(Engine(svc, cfg, reconciled=True))
        secret = secrets.token_hex(32)
        self.admin_url = await stack.enter_async_context(serve_admin(svc, secret))
        await stack.enter_async_context(_announced(cfg, secret, self.admin_url))
        watcher = self.watcher = FolderWatcher(cfg.watch, ingest.on_event)
        scheduler = self._scheduler(svc, watcher)
        # before the watcher starts: the alerts listen to its growth observations from the first one
        await stack.enter_async_context(AlertsComponent(store, cfg, watcher=watcher, scheduler=scheduler,
                                                        hub=self.hub))
        await stack.enter_async_context(_running(watcher.start, watcher.stop))
        pending = sum(w.get("pending", 0) for w in watcher.status())
        if pending >= 5:
            ingest.expect(pending)  # a progress line while the first sweep's files are taken in
        stack.enter_context(_scheduled(scheduler))
        await stack.enter_async_context(_notifying())
        log.info("serving", url=url_of(cfg.server), admin=self.admin_url, data_dir=str(cfg.data_dir),
                 version=__version__)
        _freeze_startup_objects()
        self.ready.set()

    def _scheduler(self, svc: QcService, watcher: FolderWatcher) -> AsyncIOScheduler:
        sched = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
        sched.add_job(watcher.sweep, "interval", minutes=self.cfg.scheduler.sweep_minutes, id="sweep")
        sched.add_job(functools.partial(svc.store.call, Store.checkpoint), "cron", hour=self.cfg.scheduler.checkpoint_hour, id="checkpoint")
        sched.add_job(functools.partial(svc.store.call, Store.purge_sessions), "interval", hours=6, id="purge_sessions")
        if self.cfg.hub.enabled:  # the lab-wide view: pull from the instrument daemons (issue 17)
            self.hub = HubPuller(svc, self.cfg)
            sched.add_job(self.hub.pull_all, "interval", seconds=self.cfg.hub.interval_seconds, id="hub_pull",
                          next_run_time=dt.datetime.now(dt.UTC))
        return sched

    async def _status(self) -> dict[str, Any]:
        return {
            "watched_folders": [_iso_times(w) for w in self.watcher.status()] if self.watcher else [],
            "running_stages": self.engine.busy() if self.engine else 0,
            "stopping": self.stop_event.is_set(),
            **({"hub_sources": self.hub.status} if self.hub else {}),
        }


def _freeze_startup_objects() -> None:
    """What start-up made (modules, classes, the app, the engine) out of the cyclic garbage
    collector's full collections (``gc.freeze``), after one collection of what it left unreachable.
    A full collection otherwise walks all of it, holding the GIL: measured with bench/bench.py at
    10,000 runs, 10 full collections of 90-118 ms each during the heavy requests, and a small
    request waiting behind one took 100-220 ms."""
    gc.collect()
    gc.freeze()


# -- the components that are not context managers themselves ----------------------------------


@asynccontextmanager
async def _opened_store(cfg: Config) -> AsyncIterator[AsyncStore]:
    store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)  # StoreBusy: another daemon has it
    try:
        yield store
    finally:
        await asyncio.to_thread(store.close)
        log.info("store_closed")


@asynccontextmanager
async def _running(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """``start`` on enter, ``stop`` on exit, also after a ``start`` that failed half-way."""
    try:
        await start()
        yield
    finally:
        await stop()


@asynccontextmanager
async def _announced(cfg: Config, secret: str, admin_url: str) -> AsyncIterator[None]:
    """``admin.secret`` and ``daemon.json``, through which the CLI finds the running daemon."""
    files = cfg.files
    info = {"pid": os.getpid(), "url": url_of(cfg.server), "admin_url": admin_url, "version": __version__}
    try:
        await asyncio.to_thread(write_private, files.admin_secret, secret + "\n")
        await asyncio.to_thread(write_private, files.daemon_info, json.dumps(info))
        yield
    finally:
        for f in (files.admin_secret, files.daemon_info):
            try:
                f.unlink(missing_ok=True)
            except OSError as exc:  # e.g. a folder in its place, which made start-up fail
                log.warning("cannot_remove", path=str(f), error=str(exc))


@contextlib.contextmanager
def _scheduled(sched: AsyncIOScheduler) -> Iterator[None]:
    sched.start()
    try:
        yield
    finally:
        sched.shutdown(wait=False)


@asynccontextmanager
async def _notifying() -> AsyncIterator[None]:
    """READY=1 to systemd, a watchdog ping every half interval while running, STOPPING=1 at the end."""
    sd_notify("READY=1\nSTATUS=serving")
    pinger = asyncio.create_task(_watchdog(watchdog_interval()), name="sd-watchdog")
    try:
        yield
    finally:
        sd_notify("STOPPING=1")
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger


async def _watchdog(interval: float | None) -> None:
    if not interval:
        return
    while True:
        await asyncio.sleep(interval / 2)
        sd_notify("WATCHDOG=1")


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

    return asyncio.run(main())


def run_service(cfg: Config, stop_event: threading.Event) -> int:
    """Entry for the Windows service: runs until ``stop_event`` is set."""
    return run_forever(cfg, service=True, stop=stop_event)
