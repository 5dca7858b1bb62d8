"""The web pages: the stateless sign-in form (no database write for anonymous visitors), and the
home page's run list with error excerpts and Retry/Cancel buttons (``POST /runs/retry|cancel``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ADMIN,
    DEMO_PROJECT,
    DEMO_USER,
    LAB_PIPELINE,
    MEMBER,
    OTHER,
    PASSWORDS,
    Api,
    Browser,
    World,
)

from qcdaemon.core import security
from qcdaemon.server.pages.home import LOGIN_HOURS, login_token_age, new_login_token
from qcdaemon.store import Store

LOGIN = "qcd_login"


def jar_cookie(b: Browser, name: str) -> str | None:
    for c in b.session.cookie_jar:
        if c.key == name:
            return c.value
    return None


async def session_rows(world: World) -> int:
    return int(await world.store.call(Store.scalar, "SELECT count(*) FROM sessions"))


async def signed_in(b: Browser) -> bool:
    await b.get("/")
    return (await b.post("/api/projects", csrf=True)).status == 200


# ------------------------------------------------------------------------------- stateless sign-in form


async def test_anonymous_visits_write_no_session(api: Api, world: World, browsers: Callable[[Api], Browser]) -> None:
    before = await session_rows(world)
    tokens = set()
    for _ in range(50):
        b = browsers(api)  # a fresh visitor each time, as a flood of curl requests would be
        page = await b.get("/")
        assert page.status == 200 and 'name="password"' in page.text
        assert page.headers["Cache-Control"] == "no-store"
        assert b.csrf and jar_cookie(b, LOGIN) == b.csrf and b.cookie() is None
        tokens.add(b.csrf)
    # also without any cookie handling at all, and through the other anonymous entry points
    for _ in range(10):
        assert (await api.call("/", method="GET", who=None)).status == 200
        assert (await api.call("/?next=/api/health", method="GET", who=None)).status == 200
    assert len(tokens) == 50  # each visitor its own token
    assert await session_rows(world) == before
    # failed sign-ins do not write either
    b = browsers(api)
    assert (await b.login(DEMO_USER, "wrong")).status == 401
    assert await session_rows(world) == before
    # a successful one makes exactly one (signed-in) session
    assert (await b.login(DEMO_USER)).status == 302
    assert await session_rows(world) == before + 1
    row = await world.store.call(Store.session, security.digest(b.cookie() or ""))
    assert row is not None and row["user_id"] == world.users[DEMO_USER]["id"]


async def test_login_cookie_is_reused_while_valid(api: Api, world: World, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    first = await b.get("/")
    token = b.csrf
    assert any(c.startswith(f"{LOGIN}=") for c in first.set_cookies)
    again = await b.get("/")
    assert b.csrf == token and not any(c.startswith(f"{LOGIN}=") for c in again.set_cookies)
    # an almost expired cookie is replaced by a new one (the form must stay usable for a while)
    old = new_login_token(world.svc.key, issued=time.time() - (LOGIN_HOURS - 0.5) * 3600)
    assert login_token_age(world.svc.key, old) is not None
    c = browsers(api)
    page = await c.get("/", headers={"Cookie": f"{LOGIN}={old}"})
    assert c.csrf and c.csrf != old and any(s.startswith(f"{LOGIN}={c.csrf}") for s in page.set_cookies)


async def test_login_accepts_any_token_of_this_daemon(api: Api, world: World,
                                                      browsers: Callable[[Api], Browser]) -> None:
    """Nothing is remembered server-side: a token signed with the daemon's key, as cookie and form field, works."""
    token = new_login_token(world.svc.key)
    b = browsers(api)
    form = {"username": DEMO_USER, "password": PASSWORDS[DEMO_USER], "csrfmiddlewaretoken": token, "next": "/"}
    r = await b.post("/", data=form, headers={"Referer": b.base, "Cookie": f"{LOGIN}={token}"})
    assert r.status == 302 and r.headers["Location"] == "/"
    # the spent login cookie is removed, the session cookie set
    assert any(c.startswith(f"{LOGIN}=") and "Max-Age=0" in c for c in r.set_cookies)
    assert b.cookie() and jar_cookie(b, LOGIN) is None
    assert await signed_in(b)


def _forged(world: World, case: str, valid: str, other_valid: str) -> tuple[str | None, str | None]:
    """(cookie, form token) for a forgery case; ``valid``/``other_valid`` are two real tokens."""
    nonce, _, mac = valid.partition(".")
    issued, _, rand = nonce.partition("-")
    key = world.svc.key
    return {
        "no-cookie": (None, valid),
        "no-form-token": (valid, None),
        "empty-form-token": (valid, ""),
        "mismatched": (valid, other_valid),
        "cookie-only-matches-form-of-other": (other_valid, valid),
        "bad-mac": ((bad := f"{nonce}.{'0' * 64}"), bad),
        "flipped-mac": ((flip := f"{nonce}.{mac[:-1]}{'1' if mac[-1] != '1' else '2'}"), flip),
        "changed-time": ((moved := f"{int(issued) + 1}-{rand}.{mac}"), moved),
        "other-key": ((alien := new_login_token(os.urandom(32))), alien),
        "expired": ((stale := new_login_token(key, issued=time.time() - (LOGIN_HOURS + 0.1) * 3600)), stale),
        "from-the-future": ((future := new_login_token(key, issued=time.time() + 3600)), future),
        "junk": ("x" * 43, "x" * 43),
        "session-style": ((sid := security.new_csrf()), sid),
        "too-long": ((long := valid + "0" * 200), long),
        "no-mac": (nonce, nonce),
    }[case]


FORGERIES = ["no-cookie", "no-form-token", "empty-form-token", "mismatched", "cookie-only-matches-form-of-other",
             "bad-mac", "flipped-mac", "changed-time", "other-key", "expired", "from-the-future", "junk",
             "session-style", "too-long", "no-mac"]


@pytest.mark.parametrize("case", FORGERIES)
async def test_login_with_forged_or_mismatched_token_is_403(api: Api, world: World,
                                                           browsers: Callable[[Api], Browser], case: str) -> None:
    a, c = browsers(api), browsers(api)
    await a.get("/")
    await c.get("/")
    assert a.csrf and c.csrf and a.csrf != c.csrf
    cookie, token = _forged(world, case, a.csrf, c.csrf)
    b = browsers(api)
    form = {"username": DEMO_USER, "password": PASSWORDS[DEMO_USER], "next": "/"}
    if token is not None:
        form["csrfmiddlewaretoken"] = token
    headers = {"Referer": b.base}
    if cookie is not None:
        headers["Cookie"] = f"{LOGIN}={cookie}"
    r = await b.post("/", data=form, headers=headers)
    assert r.status == 403, (case, r.status, r.text)
    assert r.is_json and r.data["detail"].startswith("CSRF")
    assert b.cookie() is None and not any(s.startswith("qcd_session=") for s in r.set_cookies)
    assert not await signed_in(b)


@pytest.mark.parametrize(("header", "value"), [
    ("Referer", "https://evil.example/"),
    ("Origin", "https://evil.example"),
    ("Origin", "null"),
    ("Sec-Fetch-Site", "cross-site"),
    ("Sec-Fetch-Site", "same-site"),
])
async def test_login_from_another_site_is_403(api: Api, browsers: Callable[[Api], Browser], header: str,
                                              value: str) -> None:
    b = browsers(api)
    await b.get("/")
    form = {"username": DEMO_USER, "password": PASSWORDS[DEMO_USER], "csrfmiddlewaretoken": b.csrf or "", "next": "/"}
    headers = {"Referer": b.base, header: value}
    r = await b.post("/", data=form, headers=headers)
    assert r.status == 403 and r.data["detail"].startswith("CSRF")
    assert not await signed_in(b)


async def test_wrong_password_keeps_the_same_login_token(api: Api, browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    await b.get("/")
    token = b.csrf
    r = await b.login(DEMO_USER, "wrong")
    assert r.status == 401 and "Wrong e-mail or password" in r.text and b.csrf == token
    form = {"username": DEMO_USER, "password": PASSWORDS[DEMO_USER], "csrfmiddlewaretoken": b.csrf or "", "next": "/"}
    assert (await b.post("/", data=form, headers={"Referer": b.base})).status == 302


async def test_anonymous_session_rows_of_older_versions_grant_nothing(api: Api, world: World,
                                                                     browsers: Callable[[Api], Browser]) -> None:
    sid, csrf = security.new_session_id(), security.new_csrf()
    await world.store.call(Store.create_session, security.digest(sid), None, csrf, 12)
    b = browsers(api)
    page = await b.get("/", headers={"Cookie": f"qcd_session={sid}"})
    assert 'name="password"' in page.text and csrf not in page.text
    r = await b.post("/api/token", headers={"Cookie": f"qcd_session={sid}", "X-CSRFToken": csrf, "Referer": b.base})
    assert r.status == 401
    # its CSRF token is no login token either
    form = {"username": DEMO_USER, "password": PASSWORDS[DEMO_USER], "csrfmiddlewaretoken": csrf, "next": "/"}
    r = await b.post("/", data=form, headers={"Cookie": f"qcd_session={sid}", "Referer": b.base})
    assert r.status == 403


@pytest.mark.parametrize("cookie", [
    f"{LOGIN}=" + "y" * 4000, f"{LOGIN}=\u00e9\u00e8; other=1", f'{LOGIN}="unterminated', f"{LOGIN}=",
    f"{LOGIN}=1-2.3", f"{LOGIN}=99999999999999999999-{'a' * 32}.{'b' * 64}",
])
async def test_junk_login_cookies_never_give_500(api: Api, cookie: str) -> None:
    r = await api.call("/", method="GET", who=None, headers={"Cookie": cookie})
    assert r.status == 200 and 'name="csrfmiddlewaretoken"' in r.text
    r = await api.call("/", {"username": DEMO_USER, "password": "x", "csrfmiddlewaretoken": cookie.split("=", 1)[1]},
                       who=None, enc="urlencoded", headers={"Cookie": cookie})
    assert r.status == 403


def _curl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return env


CONTRACT_SCRIPT = r'''
set -e
rm -f cookies.txt login.html home.html
curl -sS -c cookies.txt "$BASE/" -o login.html
CSRFTOKEN=$(grep -o 'name="csrfmiddlewaretoken" value="[^"]*"' login.html | head -n1 | sed 's/.*value="//;s/"$//')
curl -sS \
-b cookies.txt \
-c cookies.txt \
-e "$BASE/" \
-H "Content-Type: application/x-www-form-urlencoded" \
--data-urlencode "username=$EMAIL" \
--data-urlencode "password=$PASSWORD" \
--data-urlencode "csrfmiddlewaretoken=$CSRFTOKEN" \
--data-urlencode "next=/" \
"$BASE/" > /dev/null
curl -sS -b cookies.txt "$BASE/" -o home.html
APITOKEN=$(grep -o 'name="csrfmiddlewaretoken" value="[^"]*"' home.html | head -n1 | sed 's/.*value="//;s/"$//')
curl -sS \
-b cookies.txt \
-H "X-CSRFToken: $APITOKEN" \
-H "Referer: $BASE/" \
-X POST \
"$BASE/api/token"
'''


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash")
async def test_contract_curl_script_verbatim(api: Api, world: World, tmp_path: Path) -> None:
    """contract.md's bootstrap commands, run by curl itself against the real server."""
    before = await session_rows(world)
    env = {**_curl_env(), "BASE": api.url("/").rstrip("/"), "EMAIL": DEMO_USER, "PASSWORD": PASSWORDS[DEMO_USER]}
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", CONTRACT_SCRIPT, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    answer = json.loads(out)
    assert answer["created"] is True and re.fullmatch(r"[0-9a-f]{40}", answer["token"])
    assert (await world.svc.user_for_token(answer["token"]))["email"] == DEMO_USER
    assert await session_rows(world) == before + 1  # only the signed-in session
    assert "Signed in as" in (tmp_path / "home.html").read_text()


# ------------------------------------------------------------------------------- runs: excerpts, retry, cancel

ERROR = "line one of the failure\n<script>alert(1)</script> & more\nline three\nline four\nline five\nline six"


async def make_run(world: World, owner: str, label: str, *, fail: bool) -> str:
    """A run of the lab pipeline with stages native+rawtools; ``fail``: both failed (a failed run)."""
    lab = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    run = await world.store.call(Store.create_run, lab["id"], f"{label}.raw", source="upload",
                                       owner_id=world.users[owner]["id"], stages=["native", "rawtools"])
    if fail:
        claimed = await world.store.call(Store.claim_stage, "native")
        assert claimed is not None and claimed["run_id"] == run["id"]
        await world.store.call(Store.finish_stage, run["id"], "native", "failed", error=ERROR, exit_code=2)
        claimed = await world.store.call(Store.claim_stage, "rawtools")  # still tried after a native failure
        assert claimed is not None and claimed["run_id"] == run["id"]
        await world.store.call(Store.finish_stage, run["id"], "rawtools", "failed", error="rawtools_qc: exit 1",
                               exit_code=1)
    world.runs[label] = run["run_key"]
    return run["run_key"]


async def stage_states(world: World, run_key: str) -> dict[str, str]:
    return {s["stage"]: s["state"] for s in await world.store.call(Store.stages, int(run_key[2:]))}


def run_row(page: str, run_key: str) -> str:
    m = re.search(rf"<tr><td>{run_key}</td>.*?</tr>", page, re.S)
    assert m, f"{run_key} not listed"
    return m.group(0)


def buttons(page: str, run_key: str) -> set[str]:
    return set(re.findall(r'action="/runs/(retry|cancel)"', run_row(page, run_key)))


@pytest.fixture
async def runs_world(world: World) -> World:
    await make_run(world, DEMO_USER, "user_failed", fail=True)
    await make_run(world, MEMBER, "member_failed", fail=True)
    await make_run(world, DEMO_USER, "user_queued", fail=False)
    await make_run(world, MEMBER, "member_queued", fail=False)
    return world


@pytest.mark.parametrize(("who", "expected"), [
    (DEMO_USER, {"user_failed": {"retry"}, "member_failed": set(), "user_queued": {"cancel"},
                 "member_queued": set(), "lab_user": set(), "sa001": set()}),
    (MEMBER, {"user_failed": set(), "member_failed": {"retry"}, "user_queued": set(),
              "member_queued": {"cancel"}, "lab_member": set()}),
    (ADMIN, {"user_failed": {"retry"}, "member_failed": {"retry"}, "user_queued": {"cancel"},
             "member_queued": {"cancel"}, "lab_user": set()}),
])
async def test_buttons_only_for_runs_the_user_may_change(runs_world: World, make_api: Any,
                                                         browsers: Callable[[Api], Browser], who: str,
                                                         expected: dict[str, set[str]]) -> None:
    b = browsers(await make_api(runs_world))
    await b.login(who)
    page = (await b.get("/")).text
    for label, want in expected.items():
        assert buttons(page, runs_world.runs[label]) == want, (who, label)
    # every button form carries the session's CSRF token and its run key
    csrf = b.csrf
    for form in re.findall(r'<form class=inline method="post" action="/runs/[a-z]+">.*?</form>', page):
        assert f'name="csrfmiddlewaretoken" value="{csrf}"' in form and 'name="run_key" value="rf' in form
    # the contract's extraction still finds the session token first
    assert re.search(r'name="csrfmiddlewaretoken" value="([^"]*)"', page).group(1) == csrf  # type: ignore[union-attr]


async def test_other_labs_runs_are_not_listed(runs_world: World, make_api: Any,
                                              browsers: Callable[[Api], Browser]) -> None:
    b = browsers(await make_api(runs_world))
    await b.login(OTHER)
    page = (await b.get("/")).text
    assert f"<td>{runs_world.runs['user_failed']}</td>" not in page
    assert buttons(page, runs_world.runs["other"]) == set()  # done, no stages: nothing to retry or cancel


async def test_failed_stage_error_excerpt_is_shown_escaped(runs_world: World, make_api: Any,
                                                           browsers: Callable[[Api], Browser]) -> None:
    b = browsers(await make_api(runs_world))
    await b.login(DEMO_USER)
    page = (await b.get("/")).text
    row = run_row(page, runs_world.runs["user_failed"])
    m = re.search(r"<pre class=err>(.*?)</pre>", row, re.S)
    assert m, row
    excerpt = m.group(1)
    assert excerpt.startswith("native: line one of the failure\n")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in excerpt and "line four" in excerpt
    assert "line five" not in excerpt and "line six" not in excerpt  # only the first lines
    assert "<script>" not in page
    # every failed stage shows its reason (RawTools was tried after the native failure)
    assert "rawtools: failed" in row and row.count("<pre class=err>") == 2
    assert "<pre class=err>rawtools: rawtools_qc: exit 1</pre>" in row


async def _post_action(b: Browser, action: str, run_key: str, *, csrf: str | None = "SESSION",
                       headers: dict[str, str] | None = None) -> Any:
    data = {"run_key": run_key}
    if csrf is not None:
        data["csrfmiddlewaretoken"] = b.csrf if csrf == "SESSION" else csrf
    return await b.post(f"/runs/{action}", data=data, headers={"Referer": b.base, **(headers or {})})


CSRF_FAILURES = [
    ("no token", None, {}),
    ("wrong token", "x" * 43, {}),
    ("login token", "LOGIN", {}),
    ("no Referer", "SESSION", {"Referer": ""}),
    ("cross-origin Referer", "SESSION", {"Referer": "https://evil.example/"}),
    ("cross-origin Origin", "SESSION", {"Origin": "https://evil.example"}),
    ("cross-site fetch", "SESSION", {"Sec-Fetch-Site": "cross-site"}),
]


@pytest.mark.parametrize("action", ["retry", "cancel"])
@pytest.mark.parametrize(("case", "csrf", "headers"), CSRF_FAILURES, ids=[c[0] for c in CSRF_FAILURES])
async def test_run_actions_without_csrf_are_403(runs_world: World, make_api: Any, browsers: Callable[[Api], Browser],
                                               action: str, case: str, csrf: str | None,
                                               headers: dict[str, str]) -> None:
    api = await make_api(runs_world)
    anon = browsers(api)
    await anon.get("/")
    b = browsers(api)
    await b.login(DEMO_USER)
    await b.get("/")
    key = runs_world.runs["user_failed" if action == "retry" else "user_queued"]
    before = await stage_states(runs_world, key)
    r = await _post_action(b, action, key, csrf=anon.csrf if csrf == "LOGIN" else csrf, headers=headers)
    assert r.status == 403, (case, r.status, r.text)
    assert r.is_json and r.data["detail"].startswith("CSRF Failed")
    assert await stage_states(runs_world, key) == before


async def test_retry_requeues_the_failed_run(runs_world: World, make_api: Any,
                                             browsers: Callable[[Api], Browser]) -> None:
    b = browsers(await make_api(runs_world))
    await b.login(DEMO_USER)
    await b.get("/")
    key = runs_world.runs["user_failed"]
    assert await stage_states(runs_world, key) == {"native": "failed", "rawtools": "failed"}
    r = await _post_action(b, "retry", key)
    assert r.status == 302, r.text
    assert r.headers["Location"] == f"/?msg=retried&run={key}&stages=native%2Crawtools"
    assert await stage_states(runs_world, key) == {"native": "queued", "rawtools": "queued"}
    assert (await runs_world.run(key))["state"] == "queued"
    page = await b.get(r.headers["Location"])
    assert f"<p class=notice>{key}: native, rawtools queued again.</p>" in page.text
    assert buttons(page.text, key) == {"cancel"}  # now it can be cancelled, not retried
    # the engine picks it up again (after the runs queued before it)
    claimed = [await runs_world.store.call(Store.claim_stage, "native") for _ in range(3)]
    assert key in {f"rf{c['run_id']}" for c in claimed if c}


async def test_cancel_cancels_the_queued_run(runs_world: World, make_api: Any,
                                             browsers: Callable[[Api], Browser]) -> None:
    b = browsers(await make_api(runs_world))
    await b.login(DEMO_USER)
    await b.get("/")
    key = runs_world.runs["user_queued"]
    r = await _post_action(b, "cancel", key)
    assert r.status == 302 and r.headers["Location"] == f"/?msg=cancelled&run={key}"
    assert await stage_states(runs_world, key) == {"native": "cancelled", "rawtools": "cancelled"}
    assert (await runs_world.run(key))["state"] == "cancelled"
    page = await b.get(r.headers["Location"])
    assert f"<p class=notice>{key}: cancelled.</p>" in page.text
    assert buttons(page.text, key) == {"retry"}
    # and back: a cancelled run can be retried from the page
    await b.get("/")
    assert (await _post_action(b, "retry", key)).status == 302
    assert await stage_states(runs_world, key) == {"native": "queued", "rawtools": "queued"}


async def test_admin_may_change_anyones_run(runs_world: World, make_api: Any,
                                            browsers: Callable[[Api], Browser]) -> None:
    b = browsers(await make_api(runs_world))
    await b.login(ADMIN)
    await b.get("/")
    key = runs_world.runs["member_failed"]
    assert (await _post_action(b, "retry", key)).status == 302
    assert await stage_states(runs_world, key) == {"native": "queued", "rawtools": "queued"}


@pytest.mark.parametrize(("action", "label", "status", "text"), [
    ("retry", "member_failed", 403, "not yours"),
    ("cancel", "member_queued", 403, "not yours"),
    ("retry", "other", 404, "does not exist"),  # another lab's run: not even its existence shows
    ("cancel", "other", 404, "does not exist"),
    ("retry", "rf999999", 404, "does not exist"),
    ("retry", "user_queued", 409, "no failed or cancelled stage"),
    ("retry", "lab_user", 404, "has no stages"),
    ("retry", "not-a-key", 400, "is not a run key"),
    ("retry", "<b>rf1</b>", 400, "is not a run key"),
    ("cancel", "", 400, "run_key"),
    ("retry", "rf" + "9" * 30, 400, "is not a run key"),
])
async def test_refused_run_actions_show_the_reason(runs_world: World, make_api: Any,
                                                   browsers: Callable[[Api], Browser], action: str, label: str,
                                                   status: int, text: str) -> None:
    b = browsers(await make_api(runs_world))
    await b.login(DEMO_USER)
    await b.get("/")
    key = runs_world.runs.get(label, label)
    before = await stage_states(runs_world, key) if label in runs_world.runs else None
    r = await _post_action(b, action, key)
    assert r.status == status, (r.status, r.text)
    assert r.headers["Content-Type"].startswith("text/html")
    m = re.search(r"<p class=failed>(.*?)</p>", r.text)
    assert m and text in m.group(1), r.text
    assert "<b>rf1</b>" not in r.text  # reflected input is escaped
    assert "Signed in as" in r.text  # the home page, still usable
    if before is not None:
        assert await stage_states(runs_world, key) == before


async def test_run_actions_need_a_user(runs_world: World, make_api: Any, browsers: Callable[[Api], Browser]) -> None:
    api = await make_api(runs_world)
    key = runs_world.runs["user_failed"]
    b = browsers(api)
    await b.get("/")
    for action in ("retry", "cancel"):
        r = await _post_action(b, action, key)  # only the anonymous login token
        assert r.status == 401 and r.is_json
    r = await api.call("/runs/retry", method="GET", who=None)
    assert r.status == 405
    assert await stage_states(runs_world, key) == {"native": "failed", "rawtools": "failed"}


async def test_run_actions_with_a_token(runs_world: World, make_api: Any) -> None:
    """Scripts may use the page routes with a token (no CSRF); refusals are the JSON errors."""
    api = await make_api(runs_world)
    key = runs_world.runs["user_failed"]
    r = await api.call("/runs/retry", {"run_key": runs_world.runs["member_failed"]}, enc="urlencoded")
    assert r.status == 403 and r.is_json and "not yours" in r.data["detail"]
    r = await api.call("/runs/retry", {"run_key": key}, enc="urlencoded")
    assert r.status == 302
    assert await stage_states(runs_world, key) == {"native": "queued", "rawtools": "queued"}


@pytest.mark.parametrize("query", [
    "msg=<script>alert(1)</script>&run=rf1",
    "msg=retried&run=<b>x</b>",
    "msg=Your+account+is+locked&run=rf1",
    "msg=retried&run=rf1&stages=<i>x</i>",
    "msg=cancelled",
])
async def test_page_messages_come_from_fixed_codes(api: Api, browsers: Callable[[Api], Browser], query: str) -> None:
    b = browsers(api)
    await b.login(DEMO_USER)
    page = (await b.get("/?" + query)).text
    assert "<script>alert" not in page and "<b>x</b>" not in page and "<i>" not in page
    assert "Your account" not in page
    notice = re.search(r"<p class=notice>(.*?)</p>", page)
    if notice:
        assert notice.group(1) == "rf1: stages queued again."


async def test_no_retry_button_for_done_or_configuration_skipped_stages(world: World, make_api: Any,
                                                                         browsers: Callable[[Api], Browser]) -> None:
    """Retry re-queues failed or cancelled stages only: a run whose stages are done, or skipped because
    the tool is not configured, offers no Retry (and the API refuses it with 409)."""
    lab = world.pipeline(DEMO_PROJECT, LAB_PIPELINE)
    run = await world.store.call(Store.create_run, lab["id"], "finished.raw", source="upload",
                                 owner_id=world.users[DEMO_USER]["id"],
                                 stages=["native", ("rawtools", "RawTools is not configured")])
    claimed = await world.store.call(Store.claim_stage, "native")
    assert claimed is not None and claimed["run_id"] == run["id"]
    await world.store.call(Store.finish_stage, run["id"], "native", "done")
    api = await make_api(world)
    b = browsers(api)
    await b.login(DEMO_USER)
    assert buttons((await b.get("/")).text, run["run_key"]) == set()
    r = await api.call("/api/runs/retry", {"run_key": run["run_key"]})
    assert r.status == 409 and "no failed or cancelled stage" in r.data["detail"]
    r = await api.call("/api/runs/retry", {"run_key": run["run_key"], "stages": ["rawtools"]})
    assert r.status == 409 and "the rawtools stage is skipped" in r.data["detail"]
    assert await stage_states(world, run["run_key"]) == {"native": "done", "rawtools": "skipped"}
