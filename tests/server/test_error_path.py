"""One error path (issue 12): every client error is a 4xx JSON ``{"detail": ...}``, also the ones
aiohttp's own parser produces, and broken uploads leave nothing behind.

All against the daemon's real server (``qcdaemon.server.serve``) on 127.0.0.1, with raw bytes on
a socket so that malformed requests reach the server exactly as written.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import DEMO_PROJECT, DEMO_USER, LAB_PIPELINE, TEST_DATA
from liveserver import Answer, free_port, live_server, raw_request

from qcdaemon.server.middleware import host_allowed, split_host
from qcdaemon.server.uploads import MAX_NAME_BYTES, safe_name

RAW = (TEST_DATA / "raw" / "Angiotensin_325-HCD.raw").read_bytes()


def request(method: str, path: str, port: int, body: bytes = b"", headers: dict[str, str] | None = None,
            host: str | None = None) -> bytes:
    hdrs = {"Host": host or f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body or method in ("POST", "PUT"):
        hdrs.setdefault("Content-Length", str(len(body)))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"qcdBoundary123") -> bytes:
    """``parts``: (the part's header lines, its content)."""
    out = b""
    for head, content in parts:
        out += b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def file_part(filename: bytes, content: bytes = RAW) -> tuple[bytes, bytes]:
    return (b'Content-Disposition: form-data; name="orig_file"; filename="' + filename + b'"\r\n'
            b"Content-Type: application/octet-stream", content)


def assert_json_4xx(ans: Answer | None, status: int | None = None) -> dict:
    assert ans is not None, "no answer"
    assert 400 <= ans.status < 500, (ans.status, ans.body[:300])
    if status is not None:
        assert ans.status == status, (ans.status, ans.body[:300])
    assert ans.is_json, ans.headers
    data = ans.json
    assert isinstance(data.get("detail"), str) and data["detail"], data
    return data


def leftovers(world) -> list[Path]:
    """Upload folders without a file in them, and partial uploads."""
    lab = Path(world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["path"]) / "inputs"
    empty = [d for d in lab.iterdir() if d.is_dir() and not any(d.iterdir())] if lab.exists() else []
    parts = list((world.data_dir / "incoming").glob("*.part")) if (world.data_dir / "incoming").exists() else []
    return empty + parts


@pytest.fixture
async def live(world_factory):
    w = await world_factory(server={"port": free_port()})
    async with live_server(w) as port:
        yield w, port, await w.token(DEMO_USER)


async def test_content_encoding_the_body_does_not_match_is_400(live):
    world, port, token = live
    for enc in ("gzip", "deflate", "br", "x-unknown"):
        for path in ("/api/projects", "/api/qc-data", "/api/upload/raw", "/"):
            ans = await raw_request(port, request("POST", path, port, b'{"project": "x"}',
                                                  {"Content-Type": "application/json", "Content-Encoding": enc}))
            assert ans is not None and ans.status < 500, (enc, path, ans)
            assert_json_4xx(ans)
    # a body that is what it says is read (and then answered by the route as usual)
    body = gzip.compress(json.dumps({}).encode())
    ans = await raw_request(port, request("POST", "/api/projects", port, body,
                                          {"Content-Type": "application/json", "Content-Encoding": "gzip",
                                           "Authorization": f"Token {token}"}))
    assert ans is not None and ans.status == 200, ans


async def test_a_raw_nul_in_a_part_header_is_400(live):
    world, port, token = live
    pid = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["uuid"]
    body = multipart([(b'Content-Disposition: form-data; name="pid"', pid.encode()), file_part(b"with\x00nul.raw")])
    assert_json_4xx(await raw_request(port, request("POST", "/api/upload/raw", port, body, {
        "Content-Type": "multipart/form-data; boundary=qcdBoundary123", "Authorization": f"Token {token}"})), 400)
    assert leftovers(world) == []


@pytest.mark.parametrize("name", [
    b'x.raw"; filename*="UTF-8\'\'with%00nul.raw',  # RFC 5987 encoding: the NUL reaches the name
    b'x.raw"; filename*="UTF-8\'\'' + b"%C3%A9" * 150 + b'.raw',  # 154 characters, 304 bytes
    ("\u00e9" * 150 + ".raw").encode(),  # 154 characters, 304 bytes
    ("\u6f22" * 85 + ".raw").encode(),  # 89 characters, 259 bytes
    b"a" * 251 + b".raw",
    b"CON.raw",
])
async def test_awkward_file_names_are_made_safe_and_bounded(live, name):
    world, port, token = live
    pid = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["uuid"]
    body = multipart([(b'Content-Disposition: form-data; name="pid"', pid.encode()), file_part(name)])
    ans = await raw_request(port, request("POST", "/api/upload/raw", port, body, {
        "Content-Type": "multipart/form-data; boundary=qcdBoundary123", "Authorization": f"Token {token}"}))
    assert ans is not None and ans.status == 201, (ans.status if ans else None, ans.body[:300] if ans else None)
    stored = ans.json["name"]
    assert stored.lower().endswith(".raw") and "\x00" not in stored
    assert len(stored.encode()) <= MAX_NAME_BYTES
    run = await world.run(ans.json["run_key"])
    assert Path(run["stored_path"]).read_bytes() == RAW
    assert leftovers(world) == []


async def test_broken_multipart_bodies_are_400_and_leave_nothing(live):
    world, port, token = live
    pid = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)["uuid"]
    auth = {"Authorization": f"Token {token}"}
    ct = {"Content-Type": "multipart/form-data; boundary=qcdBoundary123", **auth}
    pid_part = (b'Content-Disposition: form-data; name="pid"', pid.encode())
    cases = {
        "part header over 8190 bytes": (ct, multipart([pid_part, (file_part(b"x.raw")[0] + b"\r\nX-Pad: "
                                                                  + b"p" * 9000, RAW)])),
        "no boundary in the content type": ({"Content-Type": "multipart/form-data", **auth},
                                            multipart([pid_part, file_part(b"x.raw")])),
        "body not starting with its boundary": (ct, b"garbage\r\n" + multipart([pid_part, file_part(b"x.raw")])),
        "body with another boundary": (ct, multipart([pid_part, file_part(b"x.raw")], b"otherBoundary")),
        "truncated body": (ct, multipart([pid_part, file_part(b"x.raw")])[: len(RAW) // 2]),
        "pid longer than a field may be": (ct, multipart([(pid_part[0], b"x" * 100_000), file_part(b"x.raw")])),
        "a name that is only an extension": (ct, multipart([pid_part, file_part(b".raw")])),
        "a name of undecodable bytes": (ct, multipart([pid_part, file_part(b"\xff\xfe.raw")])),
    }
    for what, (headers, body) in cases.items():
        data = request("POST", "/api/upload/raw", port, body, headers)
        if what == "truncated body":  # the length announced is the whole body's: the client stops early
            data = request("POST", "/api/upload/raw", port, body, {**headers, "Content-Length": str(len(body) * 2)})
            ans = await raw_request(port, data, timeout=3)
            assert ans is None or ans.status < 500, (what, ans)
            continue
        ans = await raw_request(port, data)
        assert ans is not None and ans.status < 500, (what, ans)
        if ans.status != 201:
            assert_json_4xx(ans)
        assert leftovers(world) == [], what


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon here\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"v" * 9000 + b"\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
])
async def test_parser_errors_are_json(live, raw):
    _world, port, _token = live
    assert_json_4xx(await raw_request(port, raw))


async def test_host_port_must_be_the_daemons(live):
    _world, port, token = live
    auth = {"Authorization": f"Token {token}"}
    ok = await raw_request(port, request("GET", "/api/health", port, headers=auth, host=f"localhost:{port}"))
    assert ok is not None and ok.status == 200
    ok = await raw_request(port, request("GET", "/api/health", port, headers=auth, host="localhost"))
    assert ok is not None and ok.status == 200
    for host in (f"localhost:{port + 1}", "localhost:1", "localhost:", "localhost:99999", "localhost:80x",
                 "user@localhost", "localhost/x", f"127.0.0.1:{port}:1", "evil.example:80"):
        assert_json_4xx(await raw_request(port, request("GET", "/api/health", port, headers=auth, host=host)), 400)


def test_host_parsing_is_strict():
    hosts = {"localhost", "[::1]"}
    configured = {"qc.lab.example", "proxy.lab:443"}
    assert split_host("LocalHost:8000") == ("localhost", 8000)
    assert split_host("[::1]:8000") == ("[::1]", 8000)
    assert split_host("a b") is None and split_host("") is None and split_host("x:0") is None
    assert host_allowed("qc.lab.example", hosts, 8000, configured)
    assert host_allowed("qc.lab.example:8443", hosts, 8000, configured)  # the administrator's name: any port
    assert host_allowed("localhost:8000", hosts, 8000) and not host_allowed("localhost:8001", hosts, 8000)
    assert host_allowed("[::1]:8000", hosts, 8000) and not host_allowed("[::1]:80", hosts, 8000)
    assert host_allowed("proxy.lab:443", hosts, 8000, configured)
    assert not host_allowed("proxy.lab:444", hosts, 8000, configured)
    assert not host_allowed("proxy.lab", hosts, 8000, configured)


def test_safe_name_bounds_bytes_and_keeps_the_extension():
    long = "\u00e9" * 200 + ".RAW"
    name = safe_name(long)
    assert name.endswith(".RAW") and len(name.encode()) <= MAX_NAME_BYTES and name.startswith("\u00e9")
    assert safe_name("C:\\data\\a\x00b.raw") == "ab.raw"
    with pytest.raises(Exception, match="not a .raw"):
        safe_name("\x00\x00")


async def test_a_refused_head_request_gets_no_body(live):
    _world, port, _token = live
    data = (f"HEAD /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Encoding: br\r\nContent-Length: 3\r\n"
            "Connection: close\r\n\r\nabc").encode()
    reader_writer = await __import__("asyncio").open_connection("127.0.0.1", port)
    reader, writer = reader_writer
    writer.write(data)
    got = await reader.read()
    writer.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0] and body == b"", got


@pytest.mark.parametrize("pause", [0.0, 0.002])  # pipelined in one write, or behind an answer in progress
async def test_a_refused_head_behind_another_request_gets_no_body(live, pause):
    """A HEAD the parser refuses on a kept-alive connection (seen in the heavy fuzz: the client read
    the error's JSON as data after the answer) is answered without a body, like a lone one."""
    import asyncio

    _world, port, _token = live
    first = f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    head = (f"HEAD /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Encoding: zstd\r\n"
            "Content-Length: 5\r\n\r\nabcde").encode()
    for _ in range(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(first if pause else first + head)
        if pause:
            await asyncio.sleep(pause)
            writer.write(head)
        got = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        answers = got.split(b"HTTP/1.")
        last = b"HTTP/1." + answers[-1]
        status_line, _, body = last.partition(b"\r\n\r\n")
        assert b" 400 " in status_line.split(b"\r\n")[0], got
        assert body == b"", got  # no JSON after a HEAD's answer
