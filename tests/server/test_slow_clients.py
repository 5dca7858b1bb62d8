"""Slow clients are dropped within the configured timeouts (issue 12), on the daemon's real server.

Short timeouts in the test's ``[server]`` section; each test measures how long the server kept
the connection and asserts it is within the timeout plus a little slack (the checks run twice a
second).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import DEMO_USER
from liveserver import free_port, live_server

HEADER_TIMEOUT = 1.0
KEEPALIVE = 1.5
WINDOW = 1.0
MIN_RATE = 200
PER_CLIENT = 6
SLACK = 1.5


@pytest.fixture
async def live(world_factory):
    w = await world_factory(server={"port": free_port(), "header_timeout_seconds": HEADER_TIMEOUT,
                                    "keepalive_timeout_seconds": KEEPALIVE, "min_body_bytes_per_second": MIN_RATE,
                                    "body_rate_window_seconds": WINDOW, "max_connections_per_client": PER_CLIENT})
    async with live_server(w) as port:
        yield w, port


async def closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes the connection (reading whatever it sends), at most ``limit``."""
    t0 = time.monotonic()
    got = b""
    while time.monotonic() - t0 < limit:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), limit)
        except (ConnectionError, TimeoutError):
            break
        if not chunk:
            break
        got += chunk
    return time.monotonic() - t0, got


async def test_half_sent_headers_are_dropped(live):
    _w, port = live
    conns = []
    for _ in range(PER_CLIENT - 1):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
        await writer.drain()
        conns.append((reader, writer))
    held = await asyncio.gather(*(closed_after(r, 30) for r, _ in conns))
    for _r, w in conns:
        w.close()
    times = [t for t, _ in held]
    print(f"\nhalf-sent headers: closed after {min(times):.2f}-{max(times):.2f} s (timeout {HEADER_TIMEOUT} s)")
    assert max(times) <= HEADER_TIMEOUT + SLACK


async def test_a_connection_that_sends_nothing_is_dropped(live):
    _w, port = live
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t, _ = await closed_after(reader, 30)
    writer.close()
    assert t <= min(HEADER_TIMEOUT, KEEPALIVE) + SLACK


async def test_an_idle_keep_alive_connection_is_closed(live):
    _w, port = live
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    t, _ = await closed_after(reader, 30)
    writer.close()
    print(f"\nidle keep-alive closed after {t:.2f} s (timeout {KEEPALIVE} s)")
    assert t <= KEEPALIVE + SLACK


async def test_a_10_bytes_per_second_upload_is_cut_off(live):
    w, port = live
    token = await w.token(DEMO_USER)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST /api/upload/raw HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
                  "Content-Type: multipart/form-data; boundary=qcdB\r\nContent-Length: 100000\r\n\r\n").encode())
    await writer.drain()
    t0 = time.monotonic()
    dropped = False
    while time.monotonic() - t0 < 30:
        try:
            writer.write(b"x" * 10)
            await writer.drain()
        except ConnectionError:
            dropped = True
            break
        try:
            data = await asyncio.wait_for(reader.read(65536), 1.0)
        except TimeoutError:
            continue
        except ConnectionError:
            dropped = True
            break
        if not data:
            dropped = True
            break
    took = time.monotonic() - t0
    writer.close()
    print(f"\n10 bytes/s upload cut off after {took:.2f} s (minimum {MIN_RATE} B/s over {WINDOW} s windows)")
    assert dropped and took <= 2 * WINDOW + SLACK + 1.0
    assert not list((w.data_dir / "incoming").glob("*.part")) if (w.data_dir / "incoming").exists() else True


async def test_a_fast_upload_is_not_cut_off(live):
    """The rate floor does not hurt a normal client: a request body at full speed goes through."""
    w, port = live
    token = await w.token(DEMO_USER)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"project": "demo-project"}'
    writer.write((f"POST /api/pipelines HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                 + body)
    await writer.drain()
    _t, got = await closed_after(reader, 10)
    writer.close()
    assert got.startswith(b"HTTP/1.1 200"), got[:200]


async def test_connections_per_client_are_limited(live):
    _w, port = live
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(PER_CLIENT)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t, got = await closed_after(reader, 5)
    writer.close()
    for _r, wr in conns:
        wr.close()
    assert got.startswith(b"HTTP/1.1 429") and b'"detail"' in got, got
    assert t < 1.0
    # once they are gone, the address may connect again
    await asyncio.sleep(0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    _t, got = await closed_after(reader, 5)
    writer.close()
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
