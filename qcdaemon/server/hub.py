"""The hub's puller (issue 17, the lab-wide view): runs and values from other qcdaemon instances.

Each ``[[hub.source]]`` (``qcdaemon/hubcfg.py``) is asked, on a schedule, for what changed after
the cursor the hub holds for it (``GET /api/changes``, docs/api.md).  Each page is applied in one
transaction together with the new cursor (``Store.hub_apply``): a hub killed mid-pull resumes from
the last committed page, and a page applied twice changes nothing (runs are upserted by origin and
run key).  An unreachable source is logged and asked again next time; the others go on.  After a
pull the hub recomputes the QC verdicts of the pipelines it touched, so its dashboard and alerts
judge the pulled runs as its own.

A page's runs whose per-run data changed (their data fingerprint, ``Store.hub_apply``) are marked
pending in the same transaction; after the page the hub fetches each pending run's protein groups,
PSMs and chromatograms page by page (``GET /api/changes/run``) and marks it done only when every
page came with the same fingerprint.  A pull killed half-way leaves the run pending: the next pull
fetches it again from the start (each part replaces the run's rows), so it never holds a mixture.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from qcdaemon.config import Config
from qcdaemon.hubcfg import HubSource
from qcdaemon.service.qcservice import QcService
from qcdaemon.store import Store, hubdata

log = structlog.get_logger("qcdaemon.hub")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")  # as qcdaemon's slugify makes them


class SourceError(Exception):
    """A source answered something the hub cannot use (or not at all)."""


class HubPuller:
    def __init__(self, svc: QcService, cfg: Config) -> None:
        self.svc = svc
        self.cfg = cfg
        self.hub = cfg.hub
        self.workdir = str(cfg.data_dir / "hub")
        # per source: reachable at the last pull (None before the first), and when not, the error
        # (read by the hub_unreachable alert and /api/status)
        self.status: dict[str, dict[str, Any]] = {s.name: {"ok": None, "new_runs": 0} for s in self.hub.sources}
        self._lock = asyncio.Lock()
        self._first = True

    async def pull_all(self) -> dict[str, int]:
        """One pull of every source; returns how many new runs each gave."""
        async with self._lock:  # the scheduler and a test may both ask: one pull at a time
            timeout = aiohttp.ClientTimeout(total=self.hub.timeout_seconds)
            touched: set[int] = set()
            counts: dict[str, int] = {}
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for src in self.hub.sources:
                    try:
                        counts[src.name] = await self.pull(session, src, touched)
                        self.status[src.name] = {"ok": True, "new_runs": counts[src.name]}
                    except (aiohttp.ClientError, TimeoutError, SourceError, OSError) as exc:
                        self.status[src.name] = {"ok": False, "new_runs": 0, "error": str(exc) or type(exc).__name__}
                        log.warning("hub_source_unreachable", source=src.name, url=src.url, error=str(exc))
                    except Exception as exc:  # a page the store refused (e.g. a bad value): the next pull tries again
                        self.status[src.name] = {"ok": False, "new_runs": 0, "error": f"{type(exc).__name__}: {exc}"}
                        log.error("hub_page_refused", source=src.name, url=src.url, error=f"{type(exc).__name__}: {exc}")
            if self._first:  # a hub killed after a commit and before its verdicts: judge everything once
                rows = await self.svc.store.read(Store.rows, "SELECT DISTINCT pipeline_id FROM runs WHERE origin IS NOT NULL")
                touched |= {int(r["pipeline_id"]) for r in rows}
                self._first = False
            for pid in sorted(touched):
                await self.svc.quality.recompute(pid)
            return counts

    async def pull(self, session: aiohttp.ClientSession, src: HubSource, touched: set[int]) -> int:
        """Pull one source page by page up to now; returns the number of new runs."""
        token = src.token or (await asyncio.to_thread(Path(src.token_file).read_text, "utf-8")).strip()
        cursor = await self.svc.store.read(Store.hub_cursor, src.name)
        mapping = dict(src.pipelines)
        new = 0
        await self._fetch_pending(session, src, token)  # left by a pull that was cut short
        while True:
            page = await self._page(session, src, token, cursor)
            if page["runs"] or page["deleted"]:
                result = await self.svc.store.call(Store.hub_apply, src.name, page["runs"], page["next"], mapping,
                                                   self.workdir, page["deleted"])
                new += result["new"]
                touched.update(result["pipelines"])
                log.info("hub_pulled", source=src.name, runs=len(page["runs"]), new=result["new"],
                         deleted=result["deleted"], cursor=page["next"])
                await self._fetch_pending(session, src, token)
            cursor = page["next"]
            if not page["more"] or not (page["runs"] or page["deleted"]):
                return new

    async def _fetch_pending(self, session: aiohttp.ClientSession, src: HubSource, token: str) -> None:
        for run in await self.svc.store.read(Store.hub_pending, src.name):
            prints = await self._fetch_run(session, src, token, int(run["id"]), str(run["origin_key"]))
            if len(prints) == 1:  # every page of every part of one state of the run
                await self.svc.store.call(Store.hub_data_applied, int(run["id"]), prints.pop())
                log.info("hub_run_data", source=src.name, run_key=run["origin_key"])
            elif prints:
                log.info("hub_run_data_moved", source=src.name, run_key=run["origin_key"])  # again next pull

    async def _fetch_run(self, session: aiohttp.ClientSession, src: HubSource, token: str, run_id: int,
                         key: str) -> set[str]:
        """Fetch and store the run's parts; returns the fingerprints the pages came with (none: the
        run is gone at the source, its tombstone will come)."""
        prints: set[str] = set()
        store = self.svc.store
        psm_pages: list[Any] = []
        chroms: dict[str, Any] = {}
        for part in hubdata.PARTS:
            offset, first = 0, True
            while True:
                page = await self._get(session, src, token, "/api/changes/run",
                                       {"run_key": key, "part": part, "offset": str(offset),
                                        "limit": str(self.hub.data_batch)})
                if page is None:
                    return set()
                prints.add(str(page.get("data", "")))
                rows = page.get("rows")
                if part == "protein_groups" and isinstance(rows, list):
                    if first:
                        await store.call(Store.put_protein_groups, run_id, [])
                    await store.call(Store.hub_put_groups, run_id, rows)
                elif part == "psms" and isinstance(rows, Mapping):
                    psm_pages.append(rows)
                elif isinstance(rows, Mapping):
                    chroms.update(rows)
                else:
                    raise SourceError(f"{src.url}: run {key}: a {part} page without its rows")
                first = False
                nxt = page.get("next")
                if not page.get("more") or not isinstance(nxt, int) or nxt <= offset:
                    break
                offset = nxt
        await store.call(Store.hub_put_psms, run_id, psm_pages)
        await store.call(Store.hub_put_chromatograms, run_id, chroms)
        return prints

    async def _get(self, session: aiohttp.ClientSession, src: HubSource, token: str, path: str,
                   params: Mapping[str, str]) -> Any:
        """A JSON answer of the source (None for a 404: the run is not there any more)."""
        url = f"{src.url}{path}"
        async with session.get(url, params=dict(params), headers={"Authorization": f"Token {token}"}) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                text = (await resp.text(errors="replace"))[:200]
                raise SourceError(f"{url}: HTTP {resp.status}: {text}")
            try:
                return await resp.json()
            except (ValueError, aiohttp.ContentTypeError) as exc:
                raise SourceError(f"{url}: not a JSON answer ({exc})") from None

    async def _page(self, session: aiohttp.ClientSession, src: HubSource, token: str, cursor: int) -> dict[str, Any]:
        url = f"{src.url}/api/changes"
        params = {"since": str(cursor), "limit": str(self.hub.batch)}
        async with session.get(url, params=params, headers={"Authorization": f"Token {token}"}) as resp:
            if resp.status != 200:
                text = (await resp.text(errors="replace"))[:200]
                raise SourceError(f"{url}: HTTP {resp.status}: {text}")
            try:
                page = await resp.json()
            except (ValueError, aiohttp.ContentTypeError) as exc:
                raise SourceError(f"{url}: not a JSON answer ({exc})") from None
        return _checked(url, page, cursor)


def _checked(url: str, page: Any, cursor: int) -> dict[str, Any]:
    """The page, if it is what ``/api/changes`` answers (a source is another program: checked)."""
    if not isinstance(page, Mapping) or not isinstance(page.get("runs"), list):
        raise SourceError(f"{url}: not a change page")
    nxt, more = page.get("next"), page.get("more")
    if isinstance(nxt, bool) or not isinstance(nxt, int) or nxt < cursor or not isinstance(more, bool):
        raise SourceError(f"{url}: a change page with a bad cursor ({nxt!r} after {cursor})")
    deleted = page.get("deleted", [])  # a source before tombstones sends none
    if not isinstance(deleted, list) or not all(isinstance(d, Mapping) and isinstance(d.get("run_key"), str)
                                                for d in deleted):
        raise SourceError(f"{url}: deletions without their run keys")
    for r in page["runs"]:
        if not isinstance(r, Mapping) or not all(isinstance(r.get(k), str) for k in ("run_key", "name", "project",
                                                                                        "pipeline", "state")):
            raise SourceError(f"{url}: a run without its key, name, project, pipeline or state")
        if not (_SLUG.fullmatch(r["project"]) and _SLUG.fullmatch(r["pipeline"])):
            raise SourceError(f"{url}: run {r['run_key'][:40]!r}: a project or pipeline that is not a slug")
        values = r.get("values", {})
        if not isinstance(values, Mapping) or not all(isinstance(v, Mapping) for v in values.values()):
            raise SourceError(f"{url}: run {r['run_key'][:40]!r}: values are not a table per source")
    return {**page, "deleted": deleted}
