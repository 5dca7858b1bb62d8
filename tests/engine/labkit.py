"""Helpers of the in-process engine tests: a real DuckDB store, the real service and engine, real tool processes
(the native reader's child process and the MaxQuant stand-in), small real RAW files.

``Lab`` is one private data directory with a user, a project and a pipeline (fasta + mqpar), and
the pieces the daemon would build over it.  Runs are created as the ingest creates them
(``QcService.new_run`` with the file's real SHA-256).  Nothing of qcdaemon is mocked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from conftest import TEST_DATA, free_port

from qcdaemon.config import Config, config_from_dict
from qcdaemon.core import security
from qcdaemon.log import LOG_FILE, configure_logging
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import AsyncStore, Store

STANDIN = TEST_DATA.parent / "tools" / "MaxQuantCmd"
MQPAR = TEST_DATA / "maxquant" / "mqpar" / "mqpar_tmt11_test.xml"
FASTA = TEST_DATA / "maxquant" / "qc-test.fasta"
RAW = TEST_DATA / "raw" / "small2.RAW"
OWNER = "op@lab.org"
PIPELINE = "lab-qc/exploris"


def lab_settings(root: Path, *, maxquant: Mapping[str, Any] | None = None, watch: bool = False,
                 **sections: Mapping[str, Any]) -> dict[str, Any]:
    """Native metrics and the MaxQuant stand-in; RawTools off (it needs mono and is slow).

    With ``watch``, ``<root>/instrument`` is a watched folder of the lab's pipeline."""
    engine = {"shutdown_timeout": 5, "maxquant": {"command": [sys.executable, str(STANDIN)], "runtime": "none",
                                                  "timeout_seconds": 60, **(maxquant or {})}}
    data: dict[str, Any] = {
        "paths": {"data_dir": str(root / "data"), "log_dir": str(root / "logs")},
        "log": {"format": "json"},
        "server": {"port": free_port()},
    }
    data["engine"] = {**engine, **sections.pop("engine", {})}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    if watch:
        data["watch"] = [{"path": str(root / "instrument"), "pipeline": PIPELINE, "owner": OWNER,
                          "settle_seconds": 0.5, "poll_interval": 0.5}]
    return data


def lab_config(root: Path, **kw: Any) -> Config:
    return config_from_dict(lab_settings(root, **kw))


async def prepare_lab(root: Path, **kw: Any) -> Config:
    """A seeded data directory (closed again: a daemon may open it) and its instrument folder."""
    cfg = lab_config(root, **kw)
    await seed(cfg)
    (root / "instrument").mkdir(exist_ok=True)
    return cfg


async def seed(cfg: Config) -> None:
    """The user, project and pipeline of the lab, through the service (as the CLI makes them)."""
    store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)
    try:
        svc = QcService(store, cfg, security.load_or_create_key(cfg.files.secret_key))
        await svc.add_user(OWNER, "operator-pass")
        await svc.add_project("Lab QC", members=[OWNER])
        await svc.add_pipeline("lab-qc", "Exploris", fasta=str(FASTA), mqpar=str(MQPAR))
    finally:
        await asyncio.to_thread(store.close)


@dataclass
class Lab:
    cfg: Config
    store: AsyncStore
    svc: QcService
    instrument: Path  # where the test puts RAW files (the runs' stored paths)

    async def add_run(self, name: str, src: Path = RAW) -> dict[str, Any]:
        """A queued run of a copy of ``src`` named ``name``, as the ingest makes it."""
        path = self.instrument / name
        await asyncio.to_thread(shutil.copyfile, src, path)
        sha = await asyncio.to_thread(lambda: hashlib.sha256(path.read_bytes()).hexdigest())
        pipeline = await self.store.call(Store.find_pipeline, PIPELINE)
        owner = await self.store.call(Store.user_by_email, OWNER)
        assert pipeline is not None and owner is not None
        return await self.svc.new_run(pipeline, name, source="watch", owner_id=owner["id"], stored_path=str(path),
                                      size=path.stat().st_size, sha256=sha)

    async def stages(self, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {s["stage"]: s for s in await self.store.call(Store.stages, run["id"])}

    async def stage(self, run: dict[str, Any], stage: str) -> dict[str, Any]:
        return (await self.stages(run))[stage]

    async def sql(self, query: str, params: list[Any] | None = None) -> None:
        """A statement on the store's own connection (on its thread, between two engine calls)."""
        await self.store.call(Store.execute, query, params or [])


@asynccontextmanager
async def open_lab(root: Path, *, cfg: Config | None = None, **kw: Any) -> AsyncIterator[Lab]:
    """``async with open_lab(tmp_path, maxquant={"attempts": 2}) as lab``: a seeded data directory,
    opened (``cfg``: one ``prepare_lab`` made)."""
    if cfg is None:
        cfg = await prepare_lab(root, **kw)
    store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)
    try:
        yield Lab(cfg, store, QcService(store, cfg, security.load_or_create_key(cfg.files.secret_key)),
                  root / "instrument")
    finally:
        await asyncio.to_thread(store.close)


async def until(cond: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll the async ``cond`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


class JsonLog:
    """The daemon's own logging set-up (JSON lines in ``<log_dir>/qcdaemon.log``, as a service)."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def start(self, cfg: Config) -> None:
        configure_logging(cfg, service=True)
        self.path = cfg.log_dir / LOG_FILE

    def lines(self) -> list[dict[str, Any]]:
        assert self.path is not None, "start() first"
        return [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e.get("event") == name]


@contextmanager
def json_logging(cfg: Config) -> Iterator[JsonLog]:
    """The daemon's logging set-up for ``cfg`` while in the block; the root logger and structlog
    are restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    log = JsonLog()
    log.start(cfg)
    try:
        yield log
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        root.setLevel(level)
        structlog.reset_defaults()
