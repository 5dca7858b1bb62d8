"""The read routes' answer cache (service/chartcache.py ``AnswerCache``) and the light read lane
(``AsyncStore.light``), through the real store, service and server.

A repeated question is answered from the cache, gzip-compressed to a client that accepts gzip and
plain to one that does not, the same JSON either way; any write that changes what the answer shows
(QC values, a flag, protein groups written on their own) is seen by the next request; and a small
request's lookups (token, projects) answer while the writer thread is held up."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest
from conftest import DEMO_PIPELINE, DEMO_PROJECT, DEMO_USER, Api, World, writer_held
from multidict import CIMultiDict

from qcdaemon.server.jsonout import accepts_gzip
from qcdaemon.store import Store

DEMO = {"project": DEMO_PROJECT, "pipeline": DEMO_PIPELINE}
PLAIN = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}


async def _raw(api: Api, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """The response's headers and its body as sent (not decompressed by the client)."""
    hdrs = {**headers, "Authorization": f"Token {await api.world.token(DEMO_USER)}"}
    async with api.client.post(path, json=body, headers=hdrs, auto_decompress=False) as resp:
        assert resp.status == 200, await resp.text()
        return dict(resp.headers), await resp.read()


def _json(headers: dict[str, str], body: bytes) -> Any:
    return json.loads(gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body)


async def _cached_after(api: Api, path: str, body: dict[str, Any]) -> None:
    """Ask until the answer has been kept (it is compressed on a thread after it is sent)."""
    for _ in range(200):
        headers, _ = await _raw(api, path, body, GZIP)
        if headers.get("Content-Encoding") == "gzip":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path}: never answered from the cache")


@pytest.mark.parametrize("path, body", [
    ("/api/qc-data", {**DEMO, "data_range": None}),
    ("/api/protein-names", {**DEMO, "data_range": None, "raw_files": [], "remove_contaminants": True,
                            "remove_reversed_sequences": True}),
])
async def test_a_repeated_question_is_answered_from_the_cache_alike_with_and_without_gzip(
        api: Api, path: str, body: dict[str, Any]) -> None:
    first_headers, first = await _raw(api, path, body, PLAIN)
    assert "Content-Encoding" not in first_headers and first_headers["Vary"] == "Accept-Encoding"
    await _cached_after(api, path, body)
    gz_headers, gz = await _raw(api, path, body, GZIP)
    plain_headers, plain = await _raw(api, path, body, PLAIN)
    assert gz_headers["Content-Encoding"] == "gzip" and int(gz_headers["Content-Length"]) == len(gz) < len(first)
    assert "Content-Encoding" not in plain_headers
    assert gzip.decompress(gz) == plain == first  # byte for byte the answer computed the first time


async def test_a_write_in_between_is_seen_by_the_next_request(api: Api, world: World) -> None:
    body = {**DEMO, "data_range": None}
    await _cached_after(api, "/api/qc-data", body)
    before = _json(*await _raw(api, "/api/qc-data", body, GZIP))
    key = before["RunKey"][0]
    run_id = int(key[2:])
    await world.store.call(Store.put_qc_values, run_id, "extra", {"NewMetric": 42.5})
    after = _json(*await _raw(api, "/api/qc-data", body, GZIP))
    assert after["NewMetric"][0] == 42.5 and "NewMetric" not in before
    # a flag (a write through the API) too
    await api.ok("/api/flag/create", {**DEMO, "run_keys": [key]})
    flagged = _json(*await _raw(api, "/api/qc-data", body, GZIP))
    assert flagged["Flagged"][0] is True and before["Flagged"][0] is False


async def test_protein_groups_written_on_their_own_are_seen(api: Api, world: World) -> None:
    names = (await api.ok("/api/protein-names", {**DEMO, "data_range": None, "raw_files": [],
                                                  "remove_contaminants": True, "remove_reversed_sequences": True}))
    body = {**DEMO, "data_range": None, "protein_names": names["protein_names"][:1], "columns": ["Score"]}
    await _cached_after(api, "/api/protein-groups", body)
    before = _json(*await _raw(api, "/api/protein-groups", body, GZIP))
    # as the MaxQuant stage writes a large table's groups after its values: no other table is written
    await world.store.call(Store.execute, "UPDATE protein_groups SET score = score + 1000")
    after = _json(*await _raw(api, "/api/protein-groups", body, GZIP))
    assert [v + 1000 for v in before["Score"].values()] == list(after["Score"].values())


async def test_small_requests_answer_while_the_writer_is_held(api: Api, world: World) -> None:
    """Signing in by token and listing projects use the light lane: they answer while a long write
    holds the writer thread (here: a call that waits until the test lets it go)."""
    await world.token(DEMO_USER)  # the test's own token set-up is a write: before the writer is held
    async with writer_held(world.store) as held:
        projects = await asyncio.wait_for(api.ok("/api/projects", {}), 20)
        assert DEMO_PROJECT in {p["slug"] for p in projects}
        assert not held.done()  # answered while the writer was still held


@pytest.mark.parametrize("header, ok", [
    ("gzip", True), ("gzip, deflate, br", True), ("deflate, gzip;q=0.5", True), ("GZIP", True),
    ("gzip;q=0", False), ("gzip; q=0.0", False), ("identity", False), ("", False), ("*", True),
    ("*;q=0", False), ("gzip;q=0, *", False), ("br, *;q=0.1", True), ("gzip;q=x", False),
])
def test_accept_encoding_is_read_as_rfc_9110_says(header: str, ok: bool) -> None:
    class _Req:
        headers = CIMultiDict({"Accept-Encoding": header} if header else {})

    assert accepts_gzip(_Req()) is ok  # type: ignore[arg-type]
