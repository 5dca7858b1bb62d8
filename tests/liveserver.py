"""A real daemon server (``qcdaemon.server.serve``: the daemon's own runner and connection handler)
on 127.0.0.1, and a raw HTTP/1.1 client that sends exactly the bytes a test gives it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from qcdaemon.server import create_app, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/json")


@asynccontextmanager
async def live_server(world: Any) -> AsyncIterator[int]:
    """Serve ``world`` on its configured port (give ``server={"port": free_port()}``); yields the port."""
    async with serve(create_app(world.svc, world.cfg), world.cfg):
        yield world.cfg.server.port


def parse_answer(data: bytes) -> Answer | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Answer(status, headers, body)


async def raw_request(port: int, data: bytes, *, timeout: float = 20.0) -> Answer | None:
    """Send ``data`` on a new connection, read until the server closes or a full answer arrived."""
    head_only = data.startswith(b"HEAD ")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        got = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            got += chunk
            ans = parse_answer(got)
            if ans is not None and (head_only or ("content-length" in ans.headers
                                                  and len(ans.body) >= int(ans.headers["content-length"]))):
                return ans
        return parse_answer(got)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
