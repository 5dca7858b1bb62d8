"""Authentication: tokens, the web login exactly as contract.md scripts it, sessions, CSRF, Host."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ADMIN,
    DEMO_PIPELINE,
    DEMO_PROJECT,
    DEMO_USER,
    MEMBER,
    PASSWORDS,
    Api,
    Browser,
    World,
)

from qcdaemon.store import Store

DEMO = {"project": DEMO_PROJECT, "pipeline": DEMO_PIPELINE}
TOKEN_RE = re.compile(r"[0-9a-f]{40}")

AUTH_ROUTES = [
    ("POST", "/api/projects"), ("POST", "/api/pipelines"), ("POST", "/api/pipeline-uploaders"),
    ("POST", "/api/qc-data"), ("POST", "/api/protein-names"), ("POST", "/api/protein-groups"),
    ("POST", "/api/rawfile"), ("POST", "/api/flag/create"), ("POST", "/api/flag/delete"),
    ("POST", "/api/upload/raw"), ("POST", "/api/token"), ("DELETE", "/api/token"), ("GET", "/api/status"),
    ("GET", "/api/runs"),
]


def jar_cookie(b: Browser, name: str) -> str | None:
    """The value of cookie ``name`` in the browser's jar (``b.cookie()`` is the session's)."""
    for c in b.session.cookie_jar:
        if c.key == name:
            return c.value
    return None


def assert_401(r: Any) -> None:
    assert r.status == 401, (r.status, r.text)
    assert r.headers["WWW-Authenticate"] == "Token"
    assert r.is_json and r.data["detail"]


# ------------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(("method", "route"), AUTH_ROUTES)
async def test_no_credentials_is_401(api: Api, method: str, route: str) -> None:
    assert_401(await api.call(route, DEMO if method == "POST" else None, method=method, who=None))


@pytest.mark.parametrize("header", [
    "Token " + "0" * 40,  # well-formed, unknown
    pytest.param("Token " + secrets.token_hex(20), id="Token random-40-hex"),  # a fixed id: xdist workers must collect the same names
    "Token abc",
    "Token ",
    "Basic dXNlckBlbWFpbC5jb206cHc=",
    "Tokenabcdef",
])
async def test_bad_token_is_401(api: Api, header: str) -> None:
    assert_401(await api.call("/api/projects", {}, who=None, headers={"Authorization": header}))


@pytest.mark.parametrize("scheme", ["Token", "token", "Bearer", "bearer"])
async def test_token_and_bearer_schemes(api: Api, world: World, scheme: str) -> None:
    token = await world.token(DEMO_USER)
    r = await api.call("/api/projects", {}, who=None, headers={"Authorization": f"{scheme} {token}"})
    assert r.status == 200 and DEMO_PROJECT in [p["slug"] for p in r.data]


async def test_token_fetch_and_revoke_over_http(api: Api, world: World) -> None:
    """A token made by the service (as the CLI does) is what POST /api/token fetches; DELETE revokes it."""
    token = await world.token(MEMBER)
    assert TOKEN_RE.fullmatch(token)
    r = await api.call("/api/token", {}, who=MEMBER)
    assert r.status == 200 and r.data == {"token": token, "created": False}
    r = await api.call("/api/token", method="DELETE", who=MEMBER)
    assert r.status == 200 and r.data == {"revoked": True}
    assert_401(await api.call("/api/projects", {}, who=None, headers={"Authorization": f"Token {token}"}))
    assert_401(await api.call("/api/token", {}, who=None, headers={"Authorization": f"Token {token}"}))
    assert await world.store.call(Store.token_of, world.users[MEMBER]["id"]) is None
    # the next token is a new one
    new, created = await world.svc.token_create(world.users[MEMBER])
    assert created and new != token


async def test_token_revoked_by_the_service_is_refused(api: Api, world: World) -> None:
    token = await world.token(ADMIN)
    assert (await api.call("/api/projects", {}, who=ADMIN)).status == 200
    assert await world.svc.token_revoke(world.users[ADMIN]) is True
    assert_401(await api.call("/api/projects", {}, who=None, headers={"Authorization": f"Token {token}"}))


async def test_token_authenticated_mutation_needs_no_csrf(api: Api, world: World) -> None:
    # no Referer, no X-CSRFToken, even a foreign Origin: a token is not ambient authority
    r = await api.call("/api/rawfile", {**DEMO, "action": "flag", "run_keys": [world.runs["sa001"]]},
                       headers={"Origin": "https://evil.example"})
    assert r.status == 200 and r.data["updated"] == [world.runs["sa001"]]
    r = await api.call("/api/token", method="DELETE", headers={"Origin": "https://evil.example"})
    assert r.status == 200 and r.data == {"revoked": True}


# ------------------------------------------------------------------------------- the contract's login script


async def test_contract_login_flow(api: Api, world: World, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    # curl -sS -c cookies.txt "$BASE/" -o login.html
    page = await b.get("/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    anonymous_csrf, login_cookie = b.csrf, jar_cookie(b, "qcd_login")
    # the form's token is the signed login cookie; no session (and no database row) before signing in
    assert anonymous_csrf and login_cookie == anonymous_csrf and b.cookie() is None
    assert 'name="username"' in page.text and 'name="password"' in page.text
    # POST / with username, password, csrfmiddlewaretoken, next=/ and -e "$BASE/"
    form = {"username": DEMO_USER, "password": PASSWORDS[DEMO_USER], "csrfmiddlewaretoken": anonymous_csrf,
            "next": "/"}
    r = await b.post("/", data=form, headers={"Referer": b.base, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 302 and r.headers["Location"] == "/"
    assert b.cookie() and jar_cookie(b, "qcd_login") is None  # a new session; the login cookie is spent
    # curl -sS -b cookies.txt "$BASE/" -o home.html: a fresh csrfmiddlewaretoken, the demo listed
    home = await b.get("/")
    assert home.status == 200 and b.csrf and b.csrf != anonymous_csrf
    demo = world.pipeline(DEMO_PROJECT, DEMO_PIPELINE)
    for text in ("Demo Project", DEMO_PROJECT, "TMT QC Demo", DEMO_PIPELINE, demo["uuid"], DEMO_USER):
        assert text in home.text, text
    # curl -b cookies.txt -H "X-CSRFToken: $APITOKEN" -H "Referer: $BASE/" -X POST "$BASE/api/token"
    r = await b.post("/api/token", csrf=True)
    assert r.status == 201 and r.data["created"] is True and TOKEN_RE.fullmatch(r.data["token"])
    token = r.data["token"]
    r = await api.call("/api/projects", {}, who=None, headers={"Authorization": f"Token {token}"})
    assert r.status == 200 and [p["slug"] for p in r.data][-1] == DEMO_PROJECT
    # again: the same token, created false
    r = await b.post("/api/token", csrf=True)
    assert r.status == 200 and r.data == {"token": token, "created": False}
    # curl -b cookies.txt -H "X-CSRFToken: ..." -H "Referer: ..." -X DELETE /api/token
    r = await b.request("DELETE", "/api/token", csrf=True)
    assert r.status == 200 and r.data == {"revoked": True}
    assert_401(await api.call("/api/projects", {}, who=None, headers={"Authorization": f"Token {token}"}))
    r = await b.request("DELETE", "/api/token", csrf=True)
    assert r.status == 200 and r.data == {"revoked": False}
    # the next POST makes a new token
    r = await b.post("/api/token", csrf=True)
    assert r.status == 201 and r.data["created"] is True and r.data["token"] != token


@pytest.mark.parametrize("tls", [False, True])
async def test_session_cookie_attributes(world_factory: Callable[..., Awaitable[World]], make_api: Any,
                                         browsers: Callable[[Api], Browser], tls: bool, tmp_path: Path) -> None:
    """The anonymous page sets the signed ``qcd_login`` cookie, signing in the ``qcd_session`` one:
    both HttpOnly, SameSite=Strict, Path=/, and Secure only when the daemon serves TLS."""
    sections: dict[str, Any] = {}
    if tls:  # the files only have to exist: the test server itself speaks plain HTTP
        (tmp_path / "cert.pem").write_text("cert")
        (tmp_path / "key.pem").write_text("key")
        sections["server"] = {"tls_cert": str(tmp_path / "cert.pem"), "tls_key": str(tmp_path / "key.pem")}
    w = await world_factory(**sections)
    api = await make_api(w)
    b = browsers(api)
    page = await b.get("/")
    replies = [("qcd_login", page)]
    if not tls:  # a Secure cookie is not sent back over the test's plain HTTP: no sign-in to follow
        replies.append(("qcd_session", await b.login(DEMO_USER)))
    for name, reply in replies:
        cookies = [c for c in reply.set_cookies if c.startswith(name + "=")]
        assert len(cookies) == 1, reply.set_cookies
        attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookies[0].split(";")[1:]}
        assert "httponly" in attrs
        assert attrs["samesite"].lower() == "samesite=strict"
        assert attrs["path"] == "Path=/"
        assert ("secure" in attrs) is tls  # plain HTTP on loopback: a Secure cookie would never come back
        if name == "qcd_login":
            assert attrs["max-age"] == "Max-Age=43200"


async def test_session_ids_are_stored_as_digests(api: Api, world: World, browsers: Callable[[Api], Browser]) -> None:
    from qcdaemon.core import security

    b = browsers(api)
    await b.login(DEMO_USER)
    sid = b.cookie()
    assert sid and await world.store.call(Store.session, sid) is None
    session = await world.store.call(Store.session, security.digest(sid))
    assert session is not None and session["user_id"] == world.users[DEMO_USER]["id"]


@pytest.mark.parametrize(("next_url", "location"), [
    ("/", "/"),
    ("/api/health", "/api/health"),
    ("/somewhere?x=1&y=2", "/somewhere?x=1&y=2"),
    ("", "/"),
    ("http://evil.example/", "/"),
    ("https://evil.example/steal?c=1", "/"),
    ("//evil.example/", "/"),
    ("///evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("\\\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("evil.example", "/"),
    ("/a\r\nSet-Cookie: x=1", "/"),
    ("/caf\u00e9", "/"),
])
async def test_login_redirects_to_same_site_next_only(api: Api, browsers: Callable[[Api], Browser], next_url: str,
                                                      location: str) -> None:
    b = browsers(api)
    r = await b.login(DEMO_USER, next_url=next_url)
    assert r.status == 302 and r.headers["Location"] == location
    await b.get("/")
    assert (await b.post("/api/projects", csrf=True)).status == 200  # logged in all the same


async def test_login_form_carries_next_from_the_query(api: Api, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    page = await b.get("/?next=/api/health")
    assert 'name="next" value="/api/health"' in page.text
    page = await b.get("/?next=https://evil.example/")
    assert 'name="next" value="/"' in page.text


@pytest.mark.parametrize(("email", "password"), [
    (DEMO_USER, "wrong-password"),
    (DEMO_USER, ""),
    ("nobody@example.org", "whatever-pw"),
    ("", PASSWORDS[DEMO_USER]),
])
async def test_wrong_credentials_do_not_log_in(api: Api, browsers: Callable[[Api], Browser], email: str,
                                               password: str) -> None:
    b = browsers(api)
    await b.get("/")
    before = b.cookie()
    r = await b.post("/", data={"username": email, "password": password, "csrfmiddlewaretoken": b.csrf, "next": "/"},
                     headers={"Referer": b.base})
    # the page (with the form again) for the browser; the status and a header for a script (docs/api.md)
    assert r.status == 401 and "Wrong e-mail or password" in r.text and 'name="password"' in r.text
    assert r.headers["X-Login-Failed"] == "wrong e-mail or password"
    assert b.cookie() == before
    assert_401(await b.post("/api/projects", csrf=True))
    assert 'name="password"' in (await b.get("/")).text  # still the login form


async def test_login_email_is_case_insensitive(api: Api, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    r = await b.login(DEMO_USER.upper(), PASSWORDS[DEMO_USER])
    assert r.status == 302


async def test_failed_logins_are_rate_limited(world_factory: Callable[..., Awaitable[World]], make_api: Any,
                                              browsers: Callable[[Api], Browser]) -> None:
    api = await make_api(await world_factory(server={"login_attempts_per_minute": 3}))
    b = browsers(api)
    for _ in range(3):
        assert (await b.login(DEMO_USER, "wrong")).status == 401
    r = await b.login(DEMO_USER)  # even the right password is refused now
    assert r.status == 429 and "Too many" in r.text
    assert_401(await b.post("/api/projects", csrf=True))
    # the limit is per client address, not per cookie: a fresh browser on the same address waits too
    other = browsers(api)
    assert (await other.login(ADMIN)).status == 429


async def test_successful_logins_are_not_counted(world_factory: Callable[..., Awaitable[World]], make_api: Any,
                                                 browsers: Callable[[Api], Browser]) -> None:
    api = await make_api(await world_factory(server={"login_attempts_per_minute": 2}))
    for _ in range(4):
        assert (await browsers(api).login(DEMO_USER)).status == 302


@pytest.mark.parametrize("case", ["no-token", "wrong-token", "no-page-first", "cross-origin-referer"])
async def test_login_needs_the_forms_csrf_token(api: Api, browsers: Callable[[Api], Browser], case: str) -> None:
    b = browsers(api)
    if case != "no-page-first":
        await b.get("/")
    form = {"username": DEMO_USER, "password": PASSWORDS[DEMO_USER], "next": "/",
            "csrfmiddlewaretoken": {"wrong-token": "x" * 43}.get(case, b.csrf or "")}
    if case == "no-token":
        del form["csrfmiddlewaretoken"]
    referer = "https://evil.example/" if case == "cross-origin-referer" else b.base
    r = await b.post("/", data=form, headers={"Referer": referer})
    assert r.status == 403 and r.data["detail"].startswith("CSRF")
    assert_401(await b.post("/api/projects", csrf=True))


# ------------------------------------------------------------------------------- session + CSRF on the API


@pytest.mark.parametrize(("case", "headers"), [
    ("no X-CSRFToken", {"Referer": None}),
    ("wrong X-CSRFToken", {"X-CSRFToken": "wrong", "Referer": None}),
    ("anonymous page's token", {"X-CSRFToken": "ANON", "Referer": None}),
    ("no Referer or Origin", {"X-CSRFToken": None}),
    ("cross-origin Referer", {"X-CSRFToken": None, "Referer": "https://evil.example/"}),
    ("cross-origin Origin", {"X-CSRFToken": None, "Origin": "https://evil.example"}),
    ("other port", {"X-CSRFToken": None, "Referer": "PORT"}),
    ("cross-site fetch", {"X-CSRFToken": None, "Referer": None, "Sec-Fetch-Site": "cross-site"}),
])
async def test_session_post_without_valid_csrf_is_403(api: Api, world: World, browsers: Callable[[Api], Browser],
                                                      case: str, headers: dict[str, str | None]) -> None:
    b = browsers(api)
    await b.get("/")
    anonymous_csrf = b.csrf
    await b.login(DEMO_USER)
    await b.get("/")
    fill = {"X-CSRFToken": b.csrf, "Referer": b.base, "ANON": anonymous_csrf,
            "PORT": b.base.replace(str(api.client.server.port), str(api.client.server.port + 1))}
    sent = {k: fill.get(v, v) if v is not None else fill[k] for k, v in headers.items()}
    for route, method in (("/api/token", "POST"), ("/api/token", "DELETE"), ("/api/projects", "POST")):
        r = await b.request(method, route, headers=sent)
        assert r.status == 403, (case, route, r.status, r.text)
        assert r.data["detail"].startswith("CSRF Failed")
    assert await world.store.call(Store.token_of, world.users[DEMO_USER]["id"]) is None  # nothing was created


@pytest.mark.parametrize("how", ["header+referer", "header+origin", "form-field+referer"])
async def test_session_post_with_valid_csrf(api: Api, world: World, browsers: Callable[[Api], Browser],
                                            how: str) -> None:
    b = browsers(api)
    await b.login(DEMO_USER)
    await b.get("/")
    origin = b.base.rstrip("/")
    if how == "header+referer":
        r = await b.post("/api/token", headers={"X-CSRFToken": b.csrf, "Referer": b.base + "somewhere"})
    elif how == "header+origin":
        r = await b.post("/api/token", headers={"X-CSRFToken": b.csrf, "Origin": origin})
    else:
        r = await b.post("/api/token", data={"csrfmiddlewaretoken": b.csrf}, headers={"Referer": b.base})
    assert r.status == 201, r.text
    stored = await world.store.call(Store.token_of, world.users[DEMO_USER]["id"])
    assert stored is not None
    # and the session reaches the read routes and mutations the same way
    r = await b.post("/api/rawfile", data={**DEMO, "action": "flag", "run_keys": world.runs["sa001"]}, csrf=True)
    assert r.status == 200 and r.data["updated"] == [world.runs["sa001"]]


async def test_session_is_scoped_like_the_token(api: Api, world: World, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    await b.login(MEMBER)
    await b.get("/")
    r = await b.post("/api/rawfile", data={**DEMO, "action": "flag", "run_keys": world.runs["sa001"]}, csrf=True)
    assert r.status == 403 and "not yours" in r.data["detail"]
    home = await b.get("/")
    assert "Demo Project" in home.text and "Other Lab" not in home.text


async def test_logout_invalidates_the_session(api: Api, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    await b.login(DEMO_USER)
    await b.get("/")
    sid = b.cookie()
    # without the CSRF token, logout is refused and the session still works
    r = await b.post("/logout", data={}, headers={"Referer": b.base})
    assert r.status == 403
    assert (await b.post("/api/projects", csrf=True)).status == 200
    r = await b.post("/logout", data={"csrfmiddlewaretoken": b.csrf}, headers={"Referer": b.base})
    assert r.status == 302 and r.headers["Location"] == "/"
    # the old session id, replayed, is worth nothing
    csrf = b.csrf
    replay = browsers(api)
    headers = {"Cookie": f"qcd_session={sid}", "X-CSRFToken": csrf or "", "Referer": b.base}
    assert_401(await replay.post("/api/projects", headers=headers))
    page = await replay.get("/", headers={"Cookie": f"qcd_session={sid}"})
    assert 'name="password"' in page.text and "Signed in" not in page.text


async def test_logout_without_a_session_just_redirects(api: Api, browsers: Callable[[Api], Browser]) -> None:
    r = await browsers(api).post("/logout")
    assert r.status == 302 and r.headers["Location"] == "/"


async def test_token_user_sees_the_login_page(api: Api) -> None:
    """Pages are for browser sessions; a token does not sign in to the web page."""
    r = await api.call("/", method="GET")
    assert r.status == 200 and 'name="csrfmiddlewaretoken"' in r.text and 'name="password"' in r.text


# ------------------------------------------------------------------------------- Host header


@pytest.mark.parametrize(("method", "route", "who"), [
    ("GET", "/api/health", None), ("GET", "/", None), ("POST", "/api/projects", DEMO_USER),
    ("POST", "/", None),
])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]:80"])
async def test_host_not_served_is_400(api: Api, method: str, route: str, who: str | None, host: str) -> None:
    r = await api.call(route, {} if method == "POST" else None, method=method, who=who, headers={"Host": host})
    assert r.status == 400 and r.is_json and "not served" in r.data["detail"]


@pytest.mark.parametrize("host", ["localhost", "localhost:{port}", "127.0.0.1", "[::1]:{port}", "LOCALHOST"])
async def test_loopback_hosts_are_served(api: Api, host: str) -> None:
    port = api.client.port
    r = await api.call("/api/health", method="GET", who=None, headers={"Host": host.format(port=port)})
    assert r.status == 200


@pytest.mark.parametrize("host", ["localhost:1234", "[::1]:8000", "127.0.0.1:{other}"])
async def test_loopback_names_with_another_port_are_400(api: Api, host: str) -> None:
    """Only the daemon's own port: ``Host: localhost:<anything>`` is another service's name (issue 12)."""
    other = api.client.port + 1 if api.client.port != 8000 else 8001
    r = await api.call("/api/health", method="GET", who=None, headers={"Host": host.format(other=other)})
    assert r.status == 400 and r.is_json and "not served" in r.data["detail"]


async def test_configured_allowed_hosts_are_served(world_factory: Callable[..., Awaitable[World]], make_api: Any) -> None:
    api = await make_api(await world_factory(server={"allowed_hosts": ["qc.lab.example"]}))
    r = await api.call("/api/projects", {}, headers={"Host": "qc.lab.example:8443"})
    assert r.status == 200
    r = await api.call("/api/projects", {}, headers={"Host": "other.lab.example"})
    assert r.status == 400


async def test_concurrent_token_requests_make_one_token(api: Api, world: World,
                                                        browsers: Callable[[Api], Browser]) -> None:
    import asyncio

    b = browsers(api)
    await b.login(DEMO_USER)
    await b.get("/")
    replies = await asyncio.gather(*[b.post("/api/token", csrf=True) for _ in range(8)])
    assert {r.data["token"] for r in replies} == {replies[0].data["token"]}
    assert sorted(r.data["created"] for r in replies) == [False] * 7 + [True]
    assert (await world.svc.user_for_token(replies[0].data["token"]))["email"] == DEMO_USER


async def test_parallel_guesses_cannot_slip_past_the_limit(world_factory: Callable[..., Awaitable[World]],
                                                          make_api: Any, browsers: Callable[[Api], Browser]) -> None:
    api = await make_api(await world_factory(server={"login_attempts_per_minute": 3}))
    guessers = [browsers(api) for _ in range(12)]
    for b in guessers:
        await b.get("/")
    results = await asyncio.gather(*(b.login(DEMO_USER, "wrong") for b in guessers[:-1]))
    assert sum(r.status == 429 for r in results) >= len(results) - 3  # only 3 got to try a password
    assert (await guessers[-1].login(DEMO_USER)).status == 429  # nor does the right one, now
