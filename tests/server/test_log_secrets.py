"""No secret reaches a log, whatever fails (issue 12).

A real server over a real store whose database connection is then closed underneath it: every
request that needs the store fails with a genuine exception (500), while carrying a real API token,
a real session cookie, a real password.  The whole log output (JSON file and console) is then
searched for every secret used, and for the user's scrypt hash.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import structlog
from conftest import DEMO_USER, LAB_PIPELINE, PASSWORDS, Browser

from qcdaemon.config import Config, LogConfig, PathsConfig
from qcdaemon.core import security
from qcdaemon.log import LOG_FILE, add_secret, configure_logging, get_logger
from qcdaemon.store import Store


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
    structlog.reset_defaults()


def _secret_parts(password_hash: str) -> list[str]:
    _algo, _n, _r, _p, salt, dk = password_hash.split("$")
    return [password_hash, salt, dk, dk[:16], salt[:16]]


async def test_failing_requests_log_no_secret(world, make_api, tmp_path, capsys):
    configure_logging(world.cfg.__class__(paths=world.cfg.paths, log=LogConfig(format="json"), mode="service"),
                      service=True)
    api = await make_api(world)
    token = await world.token(DEMO_USER)
    password = PASSWORDS[DEMO_USER]
    user = await world.store.call(Store.user_by_email, DEMO_USER)
    pw_hash = user["password_hash"]
    assert pw_hash.startswith("scrypt$")

    browser = Browser(api)
    try:
        await browser.get("/")
        login_cookie = next((c.value for c in browser.session.cookie_jar if c.key == "qcd_login"), None)
        signed_in = await browser.login(DEMO_USER)
        assert signed_in.status == 302
        sid = browser.cookie()
        assert sid
        await browser.get("/")
        csrf = browser.csrf

        # a real cause: the database connection goes away under the running server
        await world.store.call(Store.close)

        statuses = []
        r = await api.call("/api/projects", {}, who=DEMO_USER)  # the token is checked against the store
        statuses.append(r.status)
        r = await api.call("/api/qc-data", {"project": "x", "pipeline": LAB_PIPELINE, "password": password},
                           who=DEMO_USER)
        statuses.append(r.status)
        r = await browser.get("/")  # the session cookie is looked up in the store
        statuses.append(r.status)
        r = await browser.post("/api/projects", data={}, headers={"X-CSRFToken": csrf or ""}, csrf=True)
        statuses.append(r.status)
        # a sign-in: the password is checked against the store (an anonymous browser, fresh form)
        anon = Browser(api)
        try:
            await anon.get("/")
            r = await anon.post("/", data={"username": DEMO_USER, "password": password,
                                           "csrfmiddlewaretoken": anon.csrf or "", "next": "/"},
                                headers={"Referer": anon.base})
            statuses.append(r.status)
            anon_login = next((c.value for c in anon.session.cookie_jar if c.key == "qcd_login"), None)
        finally:
            await anon.close()
        assert statuses == [500] * len(statuses), statuses  # each request reached a genuine exception
        assert r.is_json and r.data["detail"]
    finally:
        await browser.close()
        world._closed = True  # the connection is gone: nothing left to close but the store's thread
        world.store._pool.shutdown(wait=True)

    text = (world.cfg.log_dir / LOG_FILE).read_text() + capsys.readouterr().err
    events = [json.loads(line) for line in (world.cfg.log_dir / LOG_FILE).read_text().splitlines()]
    failed = [e for e in events if e.get("event") == "request_failed"]
    assert len(failed) >= len(statuses) and all(e.get("exception") for e in failed)  # tracebacks are logged
    # ...without any frame's variables
    assert not any(frame.get("locals") for e in failed for exc in e["exception"] for frame in exc["frames"])
    secrets = {"token": token, "session cookie": sid, "password": password, "sign-in cookie": login_cookie,
               "anonymous sign-in cookie": anon_login, "csrf": csrf}
    for what, value in secrets.items():
        assert value and value not in text, f"the {what} is in the log"
    for part in _secret_parts(pw_hash):
        assert part not in text, "the password hash is in the log"
    assert token.lower() not in text.lower() and security.digest(sid) not in text


def test_exception_messages_and_frames_are_scrubbed(tmp_path, capsys):
    cfg = Config(paths=PathsConfig(data_dir=str(tmp_path / "d"), log_dir=str(tmp_path / "logs")),
                 log=LogConfig(format="json"), mode="service")
    configure_logging(cfg, service=True)
    token = security.new_token()
    pw_hash = security.hash_password("x-very-secret-pw")
    password = "correct horse battery staple"
    add_secret(password)

    def fails(user_row: dict, header: str, submitted: str) -> None:
        raise ValueError(f"could not use {header} for {user_row} ({submitted})")

    try:
        fails({"email": "a@b.c", "password_hash": pw_hash}, f"Token {token}", password)
    except ValueError:
        get_logger("qcdaemon.server").exception("request_failed", given=f"Bearer {token.upper()}",
                                                headers={"Authorization": f"Token {token}",
                                                         "Cookie": "qcd_session=abcdefgh12345678"})
    logging.getLogger("aiohttp.server").error("Error handling request %s", f"Token {token}", exc_info=True)
    console = capsys.readouterr().err
    text = (tmp_path / "logs" / LOG_FILE).read_text()
    for out in (text, console):
        assert token not in out and token.upper() not in out
        for part in _secret_parts(pw_hash):
            assert part not in out
        assert password not in out and "abcdefgh12345678" not in out
    events = [json.loads(line) for line in text.splitlines()]
    assert events[0]["exception"][0]["exc_type"] == "ValueError"
    assert "could not use" in events[0]["exception"][0]["exc_value"]  # the message stays, scrubbed
    assert "[redacted]" in events[0]["exception"][0]["exc_value"]


def test_console_exceptions_have_no_locals(tmp_path, capsys):
    configure_logging(Config(log=LogConfig(format="console")), service=False)
    token = security.new_token()

    def fails() -> None:
        header = f"Token {token}"  # noqa: F841 (a local a rich traceback would print)
        raise RuntimeError("store closed")

    try:
        fails()
    except RuntimeError:
        get_logger("qcdaemon").exception("request_failed")
    err = capsys.readouterr().err
    assert "store closed" in err and token not in err and not re.search(r"header\s*=", err)
