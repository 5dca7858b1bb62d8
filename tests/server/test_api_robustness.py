"""Transport rules of decisions.md: methods, JSON errors, health/status, and no 500 for anything sent.

These tests only read (or fail to change anything), so the module shares one world and server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import FormData
from conftest import ADMIN, DEMO_PIPELINE, DEMO_PROJECT, Api, World, read_only_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

POST_ROUTES = [
    "/api/projects", "/api/pipelines", "/api/pipeline-uploaders", "/api/qc-data", "/api/protein-names",
    "/api/protein-groups", "/api/rawfile", "/api/flag/create", "/api/flag/delete", "/api/upload/raw",
]
ALL_ROUTES = [*POST_ROUTES, "/api/token", "/api/runs", "/api/runs/retry", "/api/runs/cancel"]
DEMO = {"project": DEMO_PROJECT, "pipeline": DEMO_PIPELINE}


# Nothing here changes the world: every test reads the module's one server and world.
api, world = read_only_world()


def assert_json_error(r: Any, status: int) -> None:
    assert r.status == status, (r.status, r.text)
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert isinstance(r.data["detail"], str) and r.data["detail"]


# ------------------------------------------------------------------------------- methods


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("who", [None, "user@email.com"])
async def test_get_on_a_post_route_is_405_with_allow(api: Api, route: str, who: str | None) -> None:
    r = await api.call(route, method="GET", who=who)
    assert_json_error(r, 405)
    assert "POST" in r.headers["Allow"]


async def test_token_route_methods(api: Api) -> None:
    r = await api.call("/api/token", method="GET")
    assert_json_error(r, 405)
    assert {m.strip() for m in r.headers["Allow"].split(",")} >= {"POST", "DELETE"}
    r = await api.call("/api/token", method="PUT")
    assert_json_error(r, 405)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_health_is_get_only(api: Api, method: str) -> None:
    r = await api.call("/api/health", method=method, who=None)
    assert_json_error(r, 405)
    assert "GET" in r.headers["Allow"]


async def test_unknown_route_is_json_404(api: Api) -> None:
    assert_json_error(await api.call("/api/no-such-route"), 404)


# ------------------------------------------------------------------------------- health and status


async def test_health_needs_no_credentials(api: Api) -> None:
    r = await api.call("/api/health", method="GET", who=None)
    assert r.status == 200 and r.data["status"] == "ok"
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_status_needs_credentials(api: Api) -> None:
    r = await api.call("/api/status", method="GET", who=None)
    assert_json_error(r, 401)
    assert r.headers["WWW-Authenticate"] == "Token"


async def test_status_answers_the_operator_questions(api: Api, world: World) -> None:
    r = await api.call("/api/status", method="GET")
    assert r.status == 200
    data = r.data
    from qcdaemon import __version__

    assert data["version"] == __version__
    assert data["uptime_seconds"] >= 0
    assert set(data["queue"]) >= {"queued", "running"}
    assert isinstance(data["watched_folders"], list)


# ------------------------------------------------------------------------------- malformed bodies


@pytest.mark.parametrize("route", [r for r in ALL_ROUTES if r != "/api/upload/raw"])
@pytest.mark.parametrize("body", ['{"project": ', "not json", "[1, 2]", '"a string"', "42", "null",
                                  '{"project": "demo-project",}'])
async def test_malformed_json_is_400(api: Api, route: str, body: str) -> None:
    r = await api.call(route, raw=body, headers={"Content-Type": "application/json"})
    assert_json_error(r, 400)


async def test_empty_json_body_counts_as_no_fields(api: Api) -> None:
    r = await api.call("/api/qc-data", raw=b"", headers={"Content-Type": "application/json"})
    assert_json_error(r, 400)
    assert "project" in r.data["detail"]


# ------------------------------------------------------------------------------- junk never gives 500

WRONG_TYPES = {
    "project": 1, "pipeline": ["x"], "data_range": {"n": 1}, "columns": "RunKey", "raw_files": 5,
    "protein_names": {"a": 1}, "action": None, "run_keys": [[1]], "raw_file_ids": [None],
    "remove_contaminants": "maybe", "remove_reversed_sequences": [], "pid": 5, "run_key": ["rf1"],
    "stages": 3, "limit": "many",
}


def junk_requests() -> list[tuple[str, dict[str, Any]]]:
    """(label, request kwargs): garbage in every encoding and type."""
    out: list[tuple[str, dict[str, Any]]] = [
        ("binary-as-json", {"raw": b"\x00\xff\xfe garbage \x80", "headers": {"Content-Type": "application/json"}}),
        ("bad-utf8-json", {"raw": b'{"project": "\xff\xfe"}', "headers": {"Content-Type": "application/json"}}),
        ("deeply-nested-json", {"raw": '{"columns": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                "headers": {"Content-Type": "application/json"}}),
        ("json-wrong-types", {"raw": json.dumps(WRONG_TYPES), "headers": {"Content-Type": "application/json"}}),
        ("json-wrong-types-scoped", {"raw": json.dumps({**WRONG_TYPES, **DEMO}),
                                     "headers": {"Content-Type": "application/json"}}),
        ("json-huge-numbers", {"raw": json.dumps({**DEMO, "data_range": 10**30, "raw_file_ids": [10**30],
                                                   "run_keys": ["rf" + "9" * 30], "action": "flag",
                                                   "limit": 10**30, "run_key": "rf" + "9" * 30}),
                               "headers": {"Content-Type": "application/json"}}),
        ("json-very-long-digits", {"raw": json.dumps({**DEMO, "run_keys": ["rf" + "9" * 5000], "action": "flag",
                                                       "data_range": "9" * 5000, "raw_file_ids": ["9" * 5000],
                                                       "run_key": "rf" + "9" * 5000}),
                                   "headers": {"Content-Type": "application/json"}}),
        ("json-nan", {"raw": '{"project": "demo-project", "pipeline": "tmt-qc-demo", "data_range": NaN}',
                      "headers": {"Content-Type": "application/json"}}),
        ("json-infinity", {"raw": '{"project": "demo-project", "pipeline": "tmt-qc-demo", "data_range": 1e999}',
                           "headers": {"Content-Type": "application/json"}}),
        ("json-nul-strings", {"raw": json.dumps({**DEMO, "project": "demo\x00project", "columns": ["\x00"],
                                                  "protein_names": ["\x00"], "raw_files": ["\x00.raw"]}),
                              "headers": {"Content-Type": "application/json"}}),
        ("json-lone-surrogates", {"raw": '{"project": "\\ud800", "pipeline": "\\udfff", "columns": ["\\ud800"], '
                                         '"protein_names": ["\\ud800"], "raw_files": ["\\udc00.raw"], '
                                         '"action": "flag", "run_keys": ["\\ud800"], "run_key": "\\ud800", '
                                         '"csrfmiddlewaretoken": "\\ud800"}',
                                  "headers": {"Content-Type": "application/json"}}),
        ("json-lone-surrogates-scoped", {"raw": '{"project": "demo-project", "pipeline": "tmt-qc-demo", '
                                                '"columns": ["\\ud800"], "protein_names": ["\\ud800"], '
                                                '"raw_files": ["\\udc00.raw"], "action": "flag", '
                                                '"raw_file_ids": ["\\ud800"]}',
                                         "headers": {"Content-Type": "application/json"}}),
        ("text-plain", {"raw": "project=demo-project", "headers": {"Content-Type": "text/plain"}}),
        ("no-content-type", {"raw": b"project=demo-project", "headers": {"Content-Type": ""}}),
        ("urlencoded-bad-percent", {"raw": b"project=%zz%ff&pipeline=%ff%fe&data_range=%00&%%%=1",
                                    "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ("urlencoded-bad-utf8", {"raw": b"project=\xff\xfe&pipeline=\x80",
                                 "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ("urlencoded-odd-charset", {"raw": b"project=demo-project",
                                    "headers": {"Content-Type": "application/x-www-form-urlencoded; charset=x-no"}}),
        ("urlencoded-long-digits", {"raw": "project=demo-project&pipeline=tmt-qc-demo&action=flag&data_range="
                                            + "9" * 5000 + "&run_keys=rf" + "9" * 5000 + "&limit=" + "9" * 5000,
                                    "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ("urlencoded-json-lists", {"raw": "project=demo-project&pipeline=tmt-qc-demo&columns=[1,{}]&run_keys=[[]]"
                                           "&action=flag&protein_names=[null]",
                                   "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ("multipart-no-boundary", {"raw": b"--x\r\n\r\n", "headers": {"Content-Type": "multipart/form-data"}}),
        ("multipart-garbage", {"raw": b"--b\r\nContent-Disposition: garbage\r\n\r\nzzz\r\n--b--\r\n",
                               "headers": {"Content-Type": "multipart/form-data; boundary=b"}}),
        ("multipart-truncated", {"raw": b'--b\r\nContent-Disposition: form-data; name="project"\r\n\r\ndemo',
                                 "headers": {"Content-Type": "multipart/form-data; boundary=b"}}),
    ]
    form = FormData()
    for k in ("project", "pipeline", "columns", "run_keys", "action", "pid", "csrfmiddlewaretoken"):
        form.add_field(k, b"\x00\x01 binary", filename="x.bin", content_type="application/octet-stream")
    out.append(("multipart-files-for-fields", {"raw": form}))
    return out


JUNK = junk_requests()


@pytest.mark.parametrize("route", [*ALL_ROUTES, "/", "/logout", "/_admin/op"])
@pytest.mark.parametrize(("label", "request_kwargs"), JUNK, ids=[j[0] for j in JUNK])
async def test_junk_never_gives_500(api: Api, route: str, label: str, request_kwargs: dict[str, Any]) -> None:
    kwargs = dict(request_kwargs)
    for method in ("POST", "DELETE") if route == "/api/token" else ("POST",):
        r = await api.call(route, method=method, who=ADMIN, **kwargs)
        assert r.status < 500, (route, label, r.status, r.text)
        if r.status >= 400 and route != "/":
            assert r.is_json and r.data["detail"], r.text


@pytest.mark.parametrize("route", ["/api/projects", "/api/qc-data", "/api/status", "/"])
@pytest.mark.parametrize("headers", [
    {"Authorization": "Token " + "x" * 10_000},
    {"Authorization": "Token"},
    {"Authorization": "Basic dXNlcjpwdw=="},
    {"Authorization": "Token a b c"},
    {"Authorization": "Token \u00e9\u00e8"},
    {"Cookie": "qcd_session=" + "y" * 4000},
    {"Cookie": "qcd_session=\u00e9\u00e8; other=1"},
    {"Cookie": 'qcd_session="unterminated'},
    {"X-CSRFToken": "\u00e9", "Referer": "http://[::1"},
    {"Origin": "null", "Referer": "not a url"},
], ids=lambda h: "-".join(f"{k}:{v[:12]}" for k, v in h.items()))
async def test_junk_headers_never_give_500(api: Api, route: str, headers: dict[str, str]) -> None:
    method = "GET" if route in ("/api/status", "/") else "POST"
    r = await api.call(route, {}, who=None, method=method, headers=headers)
    assert r.status < 500, (r.status, r.text)


async def test_raw_bytes_in_headers_never_give_500(api: Api) -> None:
    """Non-UTF-8 bytes in the token, cookie and CSRF headers, sent on a raw socket."""
    import asyncio

    host, port = api.client.server.host, api.client.server.port
    for header in (b"Authorization: Token \xff\xfe\xfd", b"Cookie: qcd_session=\xff\xfe",
                   b"Cookie: qcd_session=abc\r\nX-CSRFToken: \xff\xfe\r\nReferer: http://127.0.0.1/"):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /api/projects HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n" + header + b"\r\n\r\n")
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        status = int(status_line.split()[1])
        assert 400 <= status < 500, (header, status_line)


async def test_oversized_body_is_413(api: Api) -> None:
    r = await api.call("/api/qc-data", raw=b"{" + b" " * (21 * 1024 * 1024) + b"}",
                       headers={"Content-Type": "application/json"})
    assert_json_error(r, 413)
