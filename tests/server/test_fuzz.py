"""Seeded fuzzing of every route of a real server on 127.0.0.1 (issue 12).

Each case is one request built from a seeded generator: a route from the application's own router
(or a path near one), a method, credentials (none, a real token, a broken one, a real session
cookie with or without its CSRF token), headers (content types, encodings, origins) and a body
(JSON objects over the API's field names with awkward values, broken JSON, forms, multipart parts,
random bytes, bodies mislabelled as compressed).  About one case in ten is written as raw bytes on
a socket (broken request lines and headers).

Every case must be answered; no answer may be a 5xx; every error answer is JSON with a ``detail``
(the browser pages may answer a refused form with their HTML page instead); and the log written
meanwhile holds none of the secrets used.

The default run keeps ``QCD_FUZZ_CASES`` (1,500) cases; ``pytest -m heavy`` runs 20,000 over
several seeds.  ``QCD_FUZZ_SEED`` picks another seed.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import json
import logging
import os
import posixpath
import random
import string
import time
import zlib
from typing import Any

import pytest
import structlog
from aiohttp import ClientSession, ClientTimeout, FormData, TCPConnector
from conftest import ADMIN, DEMO_PROJECT, DEMO_USER, LAB_PIPELINE, MEMBER, OTHER, PASSWORDS, Browser
from liveserver import free_port, live_server, raw_request

from qcdaemon.log import LOG_FILE, configure_logging
from qcdaemon.server.app import create_app

DEFAULT_CASES = int(os.environ.get("QCD_FUZZ_CASES", "1500"))
HEAVY_CASES = 20_400  # a few are refused by the client itself: at least 20,000 reach the server
CONCURRENCY = 8
PAGE_PREFIXES = ("/", "/logout", "/runs/", "/pipelines/")  # browser pages: may answer with their HTML page

FIELDS = ["project", "pipeline", "pid", "run_key", "run_keys", "data_range", "columns", "protein_names",
          "protein_groups", "flag", "name", "description", "uuid", "username", "password", "csrfmiddlewaretoken",
          "next", "email", "raw_file", "kind", "members", "uploaders", "op", "secret", "limit", "offset",
          "state", "ordering", "fasta", "mqpar", "title", "q", "chromatogram", "format"]


def _text(rng: random.Random) -> str:
    choice = rng.randrange(12)
    if choice == 0:
        return ""
    if choice == 1:
        return "x" * rng.choice([256, 4097, 70_000])
    if choice == 2:
        return "".join(rng.choice("\x00\x01\n\r\t\"'\\<>&%;{}[]") for _ in range(rng.randrange(1, 20)))
    if choice == 3:
        return rng.choice(["demo-project", "tmt-qc-demo", "lab-qc", "other-lab", "other-pipeline", "rf1", "rf2",
                           "rf999999999999999999999", "RF1", "rf-1", "../../etc/passwd", "null", "true"])
    if choice == 4:
        return "".join(chr(rng.randrange(0x80, 0x2FFFF)) for _ in range(rng.randrange(1, 12)))
    if choice == 5:
        return "%" + "".join(rng.choice("0123456789abcdefXYZ%") for _ in range(rng.randrange(1, 8)))
    if choice == 6:
        return rng.choice(["all", "7", "-1", "1e9", "0x10", "9" * 30, "NaN", "Infinity"])
    return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 30)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(14 if depth < 3 else 9)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, 1, -1, 7, 2**31, 2**63, -(2**63) - 1, 10**30, rng.randrange(-1000, 1000)])
    if choice == 3:
        return rng.choice([0.5, -0.0, 1e308, 1e-308, 3.14])
    if choice in (4, 5, 6, 7, 8):
        return _text(rng)
    if choice in (9, 10, 11):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _json_object(rng: random.Random) -> dict[str, Any]:
    return {rng.choice(FIELDS) if rng.random() < 0.9 else _text(rng): _value(rng) for _ in range(rng.randrange(0, 6))}


class Fuzzer:
    def __init__(self, seed: int, routes: list[tuple[str, str]], creds: dict[str, Any]) -> None:
        self.rng = random.Random(seed)
        self.routes = routes
        self.creds = creds

    def path(self) -> tuple[str, str]:
        rng = self.rng
        method, path = rng.choice(self.routes)
        if "{" in path:
            parts = []
            for seg in path.strip("/").split("/"):
                if seg.startswith("{"):
                    seg = rng.choice(["demo-project", "tmt-qc-demo", "lab-qc", "x", "%00", "%ff%fe", "..", "a" * 300,
                                      "%E2%82%AC", "other-lab"])
                parts.append(seg)
            path = "/" + "/".join(parts)
        r = rng.random()
        if r < 0.05:
            path = path + rng.choice(["/", "x", "/..", "%", "%2e%2e/", "/" + "z" * 2000])
        elif r < 0.08:
            path = rng.choice(["/api/nope", "/static/x.js", "//api/projects", "/api/projects/", "/favicon.ico"])
        if rng.random() < 0.15:
            path += "?" + "&".join(f"{rng.choice(FIELDS)}={_text(rng)[:50]}" for _ in range(rng.randrange(1, 4)))
        if rng.random() < 0.1:
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
        return method, path

    def auth(self, headers: dict[str, str]) -> None:
        rng, creds = self.rng, self.creds
        r = rng.random()
        if r < 0.35:
            headers["Authorization"] = f"Token {rng.choice(creds['tokens'])}"
        elif r < 0.45:
            headers["Authorization"] = rng.choice(["Token", "Token ", "Bearer " + "0" * 40, "Basic dXNlcjpwYXNz",
                                                   "Token " + "g" * 40, "Token " + "a" * 41, "token  " + "1" * 40,
                                                   "Token " + creds["tokens"][0].upper()])
        elif r < 0.65:
            headers["Cookie"] = f"qcd_session={creds['session']}"
            if rng.random() < 0.6:
                headers["X-CSRFToken"] = creds["csrf"] if rng.random() < 0.8 else _text(rng)[:60]
                headers["Referer"] = rng.choice([creds["base"], "http://evil.example/", "", creds["base"] + "x"])
            if rng.random() < 0.2:
                headers["Sec-Fetch-Site"] = rng.choice(["cross-site", "same-origin", "none", "bogus"])
        elif r < 0.7:
            headers["Cookie"] = rng.choice(["qcd_session=", "qcd_session=" + "a" * 5000, "qcd_login=abc.def",
                                            "=;;=", "qcd_session=\"x\"", f"qcd_login={creds['session']}"])

    def body(self, headers: dict[str, str]) -> Any:
        rng = self.rng
        kind = rng.randrange(10)
        if kind <= 2:
            headers["Content-Type"] = rng.choice(["application/json", "application/json; charset=utf-8",
                                                  "application/json; charset=latin-1", "text/plain"])
            return json.dumps(_json_object(rng)).encode()
        if kind == 3:
            headers["Content-Type"] = "application/json"
            return rng.choice([b"{", b"[]", b"\"x\"", b"1", b"{\"a\":" * 2000, b"\xff\xfe{}", b"{\"a\": NaN}",
                               b"{\"project\": \"\\ud800\"}", b"null", b" "])
        if kind == 4:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            pairs = [(rng.choice(FIELDS), _text(rng)[:200]) for _ in range(rng.randrange(0, 6))]
            raw = "&".join(f"{k}={v}" for k, v in pairs)
            return raw.encode("utf-8", "surrogatepass")
        if kind == 5:
            form = FormData(default_to_multipart=True)
            for _ in range(rng.randrange(0, 4)):
                name = rng.choice([*FIELDS, "orig_file"])
                if rng.random() < 0.3:
                    form.add_field(name, rng.randbytes(rng.randrange(0, 3000)), filename=rng.choice(
                        ["a.raw", "x.RAW", "../../x.raw", "a" * 300 + ".raw", "\u00e9" * 130 + ".raw", "nul.txt"]),
                        content_type="application/octet-stream")
                else:
                    form.add_field(name, _text(rng)[:500])
            return form
        if kind == 6:
            headers["Content-Type"] = rng.choice(["multipart/form-data", "multipart/form-data; boundary=",
                                                  "multipart/form-data; boundary=zz", "multipart/mixed; boundary=q"])
            return rng.choice([b"", b"--zz\r\n", b"garbage", b"--zz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--zz--",
                               b"--zz\r\nContent-Disposition: form-data; name=\"orig_file\"; filename=\"a.raw\"\r\n"
                               + b"X: " + b"h" * 9000 + b"\r\n\r\nx\r\n--zz--\r\n"])
        if kind == 7:
            headers["Content-Type"] = rng.choice(["application/json", "application/x-www-form-urlencoded",
                                                  "multipart/form-data; boundary=zz"])
            headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "br", "zstd", "identity", "gzip, gzip", "x"])
            plain = json.dumps(_json_object(rng)).encode()
            if rng.random() < 0.3:
                return gzip.compress(plain) if headers["Content-Encoding"] == "gzip" else zlib.compress(plain)
            return plain
        if kind == 8:
            headers["Content-Type"] = rng.choice(["application/octet-stream", "", "text/html", "application/xml",
                                                  "application/json; charset=bogus"])
            return rng.randbytes(rng.randrange(0, 5000))
        return None

    def extra_headers(self, headers: dict[str, str]) -> None:
        rng = self.rng
        if rng.random() < 0.1:
            headers["Origin"] = rng.choice(["http://evil.example", "null", self.creds["base"].rstrip("/")])
        if rng.random() < 0.1:
            headers["Accept"] = rng.choice(["text/html", "*/*", "application/json", "image/png"])
        if rng.random() < 0.05:
            headers["Host"] = rng.choice(["evil.example", "localhost:1", "127.0.0.1", "[::1]", "a b", "x" * 300])
        if rng.random() < 0.05:
            headers["Range"] = rng.choice(["bytes=0-1", "bytes=-1", "bytes=9-1"])

    def raw_case(self, port: int) -> bytes:
        rng = self.rng
        method, path = self.path()
        templates = [
            lambda: f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("utf-8", "surrogatepass"),
            lambda: rng.randbytes(rng.randrange(1, 200)) + b"\r\n\r\n",
            lambda: f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX: {'v' * 9000}\r\n\r\n".encode("utf-8", "surrogatepass"),
            lambda: f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: abc\r\n\r\n".encode("utf-8", "surrogatepass"),
            lambda: f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n"
                    f"{rng.choice(['zz', '-1', 'ffffffffffffffffff', '1;x'])}\r\nx\r\n0\r\n\r\n".encode("utf-8", "surrogatepass"),
            lambda: f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nBroken header line\r\n\r\n".encode("utf-8", "surrogatepass"),
            lambda: f"{method} {path} HTTP/{rng.choice(['0.9', '2.0', '1.x', '9.9'])}\r\nHost: 127.0.0.1\r\n\r\n".encode("utf-8", "surrogatepass"),
            lambda: (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode("utf-8", "surrogatepass")
                     + b"X-Bin: " + bytes([rng.randrange(0, 32)]) + b"\r\n\r\n"),
            lambda: f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 3\r\n"
                    f"Content-Length: 4\r\n\r\nabcd".encode("utf-8", "surrogatepass"),
        ]
        data = rng.choice(templates)()  # (surrogates in a path are sent as their raw UTF-8 bytes)
        if b"Connection:" not in data and data.endswith(b"\r\n\r\n"):
            data = data[:-2] + b"Connection: close\r\n\r\n"
        return data


def _is_page(path: str) -> bool:
    p = path.split("?")[0]
    return p == "/" or any(p.startswith(x) for x in PAGE_PREFIXES[1:])


async def _fuzz(world: Any, seeds: list[int], cases: int, tmp_path: Any) -> dict[str, Any]:
    port = world.cfg.server.port
    configure_logging(world.cfg.__class__(paths=world.cfg.paths, log=world.cfg.log, mode="service"), service=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    routes = sorted({(r.method, r.resource.canonical) for r in create_app(world.svc, world.cfg).router.routes()
                     if r.resource is not None})
    assert len(routes) >= 25
    tokens = [await world.token(u) for u in (DEMO_USER, ADMIN, OTHER, MEMBER)]
    stats: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    started = time.monotonic()
    async with live_server(world):
        base = f"http://127.0.0.1:{port}/"
        api = type("A", (), {"url": staticmethod(lambda p="/": base.rstrip("/") + p)})()
        browser = Browser(api)  # a real signed-in session for the cookie cases
        try:
            assert (await browser.login(DEMO_USER)).status == 302
            await browser.get("/")
            creds = {"tokens": tokens, "session": browser.cookie(), "csrf": browser.csrf, "base": base}
        finally:
            await browser.close()
        secrets = [*tokens, creds["session"], creds["csrf"], *PASSWORDS.values()]
        per_seed = cases // len(seeds)
        slow: list[tuple[float, int]] = []
        sem = asyncio.Semaphore(CONCURRENCY)
        connector = TCPConnector(limit=CONCURRENCY, force_close=False)
        async with ClientSession(connector=connector, timeout=ClientTimeout(total=60),
                                 skip_auto_headers=("Content-Type",)) as session:

            async def one(fz: Fuzzer, n: int) -> None:
                async with sem:
                    t0 = time.monotonic()
                    try:
                        await one_case(fz, n)
                    finally:
                        slow.append((time.monotonic() - t0, n))

            async def one_case(fz: Fuzzer, n: int) -> None:
                if True:
                    if fz.rng.random() < 0.1:
                        data = fz.raw_case(port)
                        ans = await raw_request(port, data, timeout=30)
                        if ans is None:
                            failures.append(f"case {n}: raw request not answered: {data[:120]!r}")
                            return
                        stats[str(ans.status)] += 1
                        check(n, data.split(b" ", 1)[0].decode("latin-1"), data[:60].decode("latin-1"), ans.status, ans.headers.get("content-type", ""),
                              ans.body)
                        return
                    method, path = fz.path()
                    headers: dict[str, str] = {}
                    fz.auth(headers)
                    body = fz.body(headers) if method not in ("GET", "HEAD") or fz.rng.random() < 0.1 else None
                    fz.extra_headers(headers)
                    try:
                        async with session.request(method, base.rstrip("/") + path, data=body, headers=headers,
                                                   allow_redirects=False) as resp:
                            content = await resp.read()
                            stats[str(resp.status)] += 1
                            check(n, method, path, resp.status, resp.headers.get("Content-Type", ""), content)
                    except (ValueError, TypeError) as exc:  # the client refused to send it: not a case
                        stats["client-refused"] += 1
                        del exc
                    except Exception as exc:
                        failures.append(f"case {n}: {method} {path[:80]} not answered: {type(exc).__name__}: {exc}")

            def check(n: int, method: str, path: str, status: int, ctype: str, content: bytes) -> None:
                what = f"case {n}: {method} {path[:80]} -> {status}"
                if status >= 500:
                    failures.append(f"{what}: {content[:200]!r}")
                    return
                if status < 400 or method == "HEAD":
                    return
                if ctype.startswith("text/html") and _is_page(path):
                    return  # a browser page answering a refused form with itself
                if ctype.startswith("text/html") and status == 404 and method == "GET" \
                        and not posixpath.normpath(path.split("?")[0]).startswith(("/api/", "/static/")):
                    return  # a browser navigation to an unknown page gets the HTML 404 page (issue 15)
                if not ctype.startswith("application/json"):
                    failures.append(f"{what}: not JSON ({ctype}): {content[:200]!r}")
                    return
                try:
                    detail = json.loads(content).get("detail")
                except (ValueError, AttributeError):
                    detail = None
                if not isinstance(detail, str) or not detail:
                    failures.append(f"{what}: no detail: {content[:200]!r}")

            for seed in seeds:
                fz = Fuzzer(seed, routes, creds)
                await asyncio.gather(*(one(fz, i) for i in range(per_seed)))
    elapsed = time.monotonic() - started
    if os.environ.get("QCD_FUZZ_SLOW"):
        print(sorted(slow)[-15:], sum(t for t, _ in slow))
    log_text = "".join(p.read_text(errors="replace") for p in world.cfg.log_dir.glob(LOG_FILE + "*"))
    leaked = [s for s in secrets if s and s in log_text]
    total = sum(v for k, v in stats.items() if k != "client-refused")
    print(f"\nfuzz: seeds {seeds}, {total} cases answered in {elapsed:.1f} s, statuses {dict(sorted(stats.items()))}, "
          f"{len(failures)} failures, log {len(log_text)} bytes, {len(leaked)} secrets in it")
    structlog.reset_defaults()
    return {"stats": stats, "failures": failures, "leaked": leaked, "total": total}


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)
    structlog.reset_defaults()


async def _run(world_factory: Any, tmp_path: Any, seeds: list[int], cases: int) -> None:
    world = await world_factory(server={"port": free_port(), "login_attempts_per_minute": 10_000})
    result = await _fuzz(world, seeds, cases, tmp_path)
    assert not result["failures"], "\n".join(result["failures"][:30])
    assert not result["leaked"], "secrets in the log"
    assert result["total"] >= (20_000 if cases == HEAVY_CASES else cases * 0.95)  # nearly every case was sent (the client refuses a few header values)
    # the routes were reached, not only refused at the door
    assert sum(v for k, v in result["stats"].items() if k in ("200", "201", "302")) > cases * 0.02
    assert world.pipeline(DEMO_PROJECT, LAB_PIPELINE)  # the world survived


async def test_fuzz_every_route(world_factory, tmp_path):
    seed = int(os.environ.get("QCD_FUZZ_SEED", "12"))
    await _run(world_factory, tmp_path, [seed], DEFAULT_CASES)


@pytest.mark.heavy
@pytest.mark.timeout(1800)
async def test_fuzz_every_route_heavy(world_factory, tmp_path):
    await _run(world_factory, tmp_path, [1, 2, 3, 4], HEAVY_CASES)
