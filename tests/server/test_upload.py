"""POST /api/upload/raw: a real RAW file streamed to a real server, stored under the pipeline folder."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from conftest import (
    DEMO_PIPELINE,
    DEMO_PROJECT,
    DEMO_USER,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    OTHER_PIPELINE,
    OTHER_PROJECT,
    SMALL2_RAW,
    Api,
    Browser,
    World,
    files_under,
)

from qcdaemon.rawfile.magic import RAW_MAGIC
from qcdaemon.store import Store

RAW_BYTES = SMALL2_RAW.read_bytes()


def lab_uuid(world: World) -> str:
    return world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["uuid"]


def upload_form(pid: str | None, content: bytes | None = RAW_BYTES, filename: str = "small2.RAW", *,
                file_first: bool = False, extra: dict[str, str] | None = None) -> FormData:
    form = FormData(quote_fields=False)  # file names as curl and browsers send them, not percent-encoded
    parts: list[tuple[str, Any, dict[str, str]]] = []
    if pid is not None:
        parts.append(("pid", pid, {}))
    if content is not None:
        parts.append(("orig_file", content, {"filename": filename, "content_type": "application/octet-stream"}))
    if file_first:
        parts.reverse()
    for name, value, kw in parts:
        form.add_field(name, value, **kw)
    for k, v in (extra or {}).items():
        form.add_field(k, v)
    return form


async def upload(api: Api, form: FormData | Any, who: str | None = DEMO_USER, **kw: Any) -> Any:
    return await api.call("/api/upload/raw", raw=form, who=who, **kw)


def user_files(world: World) -> set[Path]:
    """Everything under the data directory except the database itself (whose files come and go)."""
    return {p for p in files_under(world.data_dir) if not p.name.startswith("qcdaemon.duckdb")}


async def run_count(world: World) -> int:
    return len(await world.store.call(Store.runs_of, world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["id"]))


@pytest.mark.parametrize("file_first", [False, True], ids=["pid-then-file", "file-then-pid"])
async def test_upload_a_real_raw_file(api: Api, world: World, file_first: bool) -> None:
    before = user_files(world)
    r = await upload(api, upload_form(lab_uuid(world), file_first=file_first))
    assert r.status == 201, r.text
    data = r.data
    assert set(data) == {"run_key", "raw_file_id", "name", "pipeline", "status"}
    assert data["name"] == "small2.RAW" and data["pipeline"] == lab_uuid(world)
    assert data["run_key"] == f"rf{data['raw_file_id']}"
    assert data["status"] in ("queued", "processing")
    # stored under the pipeline folder, byte for byte
    new = user_files(world) - before
    assert len(new) == 1
    stored = world.data_dir / new.pop()
    pipeline_dir = Path(world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["path"])
    assert pipeline_dir in stored.parents and stored.name == "small2.RAW"
    assert stored.read_bytes() == RAW_BYTES
    run = await world.run(data["run_key"])
    assert run["stored_path"] == str(stored) and run["owner_id"] == world.users[DEMO_USER]["id"]
    assert run["sha256"] == hashlib.sha256(RAW_BYTES).hexdigest() and run["size"] == len(RAW_BYTES)
    assert not list((world.data_dir / "incoming").glob("*"))  # the .part file became the stored file
    # the run is visible at once, with what is known so far (nothing yet) and nulls elsewhere
    qc = await api.qc(LAB_PIPELINE, columns=["RunKey", "RawFile", "Uploader", "Instrument"])
    i = qc["RunKey"].index(data["run_key"])
    assert (qc["RawFile"][i], qc["Uploader"][i], qc["Instrument"][i]) == ("small2", DEMO_USER, None)


async def test_same_name_twice_makes_two_independent_runs(api: Api, world: World) -> None:
    first = await upload(api, upload_form(lab_uuid(world)))
    second = await upload(api, upload_form(lab_uuid(world)))
    assert first.status == second.status == 201
    assert first.data["run_key"] != second.data["run_key"]
    paths = {(await world.run(r.data["run_key"]))["stored_path"] for r in (first, second)}
    assert len(paths) == 2 and all(Path(p).read_bytes() == RAW_BYTES for p in paths)
    qc = await api.qc(LAB_PIPELINE, columns=["RunKey", "RawFile"])
    assert qc["RawFile"].count("small2") == 2
    # flagging one by run key leaves the other alone
    await api.ok("/api/rawfile", {"project": DEMO_PROJECT, "pipeline": LAB_PIPELINE, "action": "flag",
                                  "run_keys": [first.data["run_key"]]})
    qc = await api.qc(LAB_PIPELINE, columns=["RunKey", "Flagged"])
    flags = dict(zip(qc["RunKey"], qc["Flagged"]))
    assert flags[first.data["run_key"]] is True and flags[second.data["run_key"]] is False


@pytest.mark.parametrize("filename", ["small2.raw", "SMALL2.Raw", "with space.raw"])
async def test_raw_extension_in_any_case(api: Api, world: World, filename: str) -> None:
    r = await upload(api, upload_form(lab_uuid(world), filename=filename))
    assert r.status == 201 and r.data["name"] == filename


async def test_client_paths_are_reduced_to_a_base_name(api: Api, world: World) -> None:
    before = user_files(world)
    r = await upload(api, upload_form(lab_uuid(world), filename="../../../../escape.raw"))
    assert r.status == 201 and r.data["name"] == "escape.raw"
    new = [world.data_dir / p for p in user_files(world) - before]
    pipeline_dir = Path(world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["path"])
    assert len(new) == 1 and pipeline_dir in new[0].parents and new[0].name == "escape.raw"
    r = await upload(api, upload_form(lab_uuid(world), filename="C:\\Xcalibur\\data\\win.raw"))
    assert r.status == 201 and r.data["name"] == "win.raw"


# ------------------------------------------------------------------------------- refusals leave nothing behind


@pytest.mark.parametrize(("case", "status", "word"), [
    ("not-raw-name", 400, "orig_file"),
    ("raw-name-with-suffix", 400, "orig_file"),
    ("not-raw-bytes", 400, "Thermo RAW"),
    ("empty-file", 400, "Thermo RAW"),
    ("missing-pid", 400, "pid"),
    ("missing-pid-file-first", 400, "pid"),
    ("empty-pid", 400, "pid"),
    ("missing-file", 400, "orig_file"),
    ("file-without-filename", 400, "orig_file"),
    ("unknown-pid", 403, "permission"),
    ("invisible-pipeline", 403, "permission"),
    ("invisible-pipeline-file-first", 403, "permission"),
    ("demo-pipeline", 403, "read-only"),
])
async def test_refused_uploads_leave_no_file(api: Api, world: World, case: str, status: int, word: str) -> None:
    pid = lab_uuid(world)
    other_pid = world.pipeline(OTHER_PROJECT, OTHER_PIPELINE)["uuid"]
    demo_pid = world.pipeline(DEMO_PROJECT, DEMO_PIPELINE)["uuid"]
    not_raw = b"PK\x03\x04 this is a zip file, not a Thermo RAW file" * 1000
    form = {
        "not-raw-name": lambda: upload_form(pid, filename="small2.mzML"),
        "raw-name-with-suffix": lambda: upload_form(pid, filename="small2.raw.exe"),
        "not-raw-bytes": lambda: upload_form(pid, content=not_raw),
        "empty-file": lambda: upload_form(pid, content=b""),
        "missing-pid": lambda: upload_form(None),
        "missing-pid-file-first": lambda: upload_form(None, file_first=True),
        "empty-pid": lambda: upload_form("  "),
        "missing-file": lambda: upload_form(pid, content=None),
        "file-without-filename": lambda: upload_form(pid, content=None, extra={"orig_file": "small2.raw"}),
        "unknown-pid": lambda: upload_form(str(uuid.uuid4())),
        "invisible-pipeline": lambda: upload_form(other_pid),
        "invisible-pipeline-file-first": lambda: upload_form(other_pid, file_first=True),
        "demo-pipeline": lambda: upload_form(demo_pid),
    }[case]()
    before, runs = user_files(world), await run_count(world)
    r = await upload(api, form)
    assert r.status == status and r.is_json, (r.status, r.text)
    assert word.lower() in r.data["detail"].lower()
    assert user_files(world) == before
    assert await run_count(world) == runs


async def test_the_owner_of_the_invisible_pipeline_may_upload(api: Api, world: World) -> None:
    r = await upload(api, upload_form(world.pipeline(OTHER_PROJECT, OTHER_PIPELINE)["uuid"]), who=OTHER)
    assert r.status == 201


async def test_a_member_may_upload_to_a_project_pipeline(api: Api, world: World) -> None:
    r = await upload(api, upload_form(lab_uuid(world)), who=MEMBER)
    assert r.status == 201
    assert (await world.run(r.data["run_key"]))["owner_id"] == world.users[MEMBER]["id"]


async def test_upload_needs_credentials(api: Api, world: World) -> None:
    before = user_files(world)
    r = await upload(api, upload_form(lab_uuid(world)), who=None)
    assert r.status == 401 and r.headers["WWW-Authenticate"] == "Token"
    assert user_files(world) == before


async def test_upload_must_be_multipart(api: Api, world: World) -> None:
    r = await api.call("/api/upload/raw", {"pid": lab_uuid(world)})
    assert r.status == 400 and "multipart" in r.data["detail"]


async def test_header_bytes_that_are_not_utf8_in_the_filename(api: Api, world: World) -> None:
    boundary = "qcdboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"pid\"\r\n\r\n{lab_uuid(world)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"orig_file\"; filename=\"").encode() \
        + b"\xff\xfeodd\x80.raw" + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + RAW_BYTES \
        + f"\r\n--{boundary}--\r\n".encode()
    before = user_files(world)
    r = await upload(api, body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status in (201, 400), r.text
    if r.status == 201:
        stored = Path((await world.run(r.data["run_key"]))["stored_path"])
        assert stored.read_bytes() == RAW_BYTES and r.data["name"].lower().endswith(".raw")
        r.data["name"].encode("utf-8")  # a storable name
    else:
        assert user_files(world) == before


# ------------------------------------------------------------------------------- size limit


@pytest.fixture
async def small_api(world_factory: Callable[..., Awaitable[World]], make_api: Any) -> Api:
    return await make_api(await world_factory(server={"max_upload_mb": 1}))


def raw_like(size: int) -> bytes:
    """Bytes that pass the RAW magic check: a size test must not fail on the magic instead."""
    return RAW_MAGIC + b"\0" * (size - len(RAW_MAGIC))


@pytest.mark.parametrize("size", [2_000_000, 3_000_000], ids=["2MB-streamed", "3MB-by-content-length"])
async def test_upload_over_the_limit_is_413_and_leaves_nothing(small_api: Api, size: int) -> None:
    world = small_api.world
    before, runs = user_files(world), await run_count(world)
    r = await upload(small_api, upload_form(lab_uuid(world), content=raw_like(size)))
    assert r.status == 413 and r.is_json and "limit" in r.data["detail"]
    assert user_files(world) == before and await run_count(world) == runs
    # and a file within the limit still goes through
    r = await upload(small_api, upload_form(lab_uuid(world), content=raw_like(900_000)))
    assert r.status == 201


async def test_chunked_upload_over_the_limit_is_413(small_api: Api) -> None:
    """No Content-Length at all: the limit is enforced while streaming."""
    world = small_api.world
    form = upload_form(lab_uuid(world), content=raw_like(2_000_000))
    payload = form()
    chunks: list[bytes] = []

    class Collect:
        async def write(self, data: bytes) -> None:
            chunks.append(bytes(data))

    await payload.write(Collect())  # type: ignore[arg-type]

    async def stream() -> AsyncIterator[bytes]:
        for c in chunks:
            for i in range(0, len(c), 65536):
                yield c[i:i + 65536]
                await asyncio.sleep(0)

    before = user_files(world)
    r = await upload(small_api, stream(), headers={"Content-Type": payload.content_type})
    assert r.status == 413
    assert user_files(world) == before


# ------------------------------------------------------------------------------- sessions


async def test_session_upload_needs_csrf(api: Api, world: World, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    await b.login(DEMO_USER)
    await b.get("/")
    before = user_files(world)
    r = await b.post("/api/upload/raw", data=upload_form(lab_uuid(world)), headers={"Referer": b.base})
    assert r.status == 403 and user_files(world) == before
    r = await b.post("/api/upload/raw", data=upload_form(lab_uuid(world)), csrf=True)
    assert r.status == 201
    r = await b.post("/api/upload/raw", data=upload_form(lab_uuid(world), extra={"csrfmiddlewaretoken": b.csrf or ""}),
                     headers={"Referer": b.base})
    assert r.status == 201
    r = await b.post("/api/upload/raw", data=upload_form(lab_uuid(world)),
                     headers={"X-CSRFToken": b.csrf or "", "Referer": "https://evil.example/"})
    assert r.status == 403
