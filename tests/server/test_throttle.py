"""The sign-in throttle (issue 12): by target account and by address; another account's success
does not reset it; the right password during a throttle gets the throttle answer and is not
counted once it has passed.  A real server, real browsers, real scrypt checks."""

from __future__ import annotations

import asyncio

from conftest import DEMO_USER, OTHER, PASSWORDS

from qcdaemon.server.keys import STATE
from qcdaemon.server.middleware import LoginLimiter

LIMIT = 3


async def _api(world_factory, make_api, window: float = 60.0):
    api = await make_api(await world_factory(server={"login_attempts_per_minute": LIMIT}))
    api.client.app[STATE]["limiter"] = LoginLimiter(LIMIT, window=window)  # a short window for the test
    return api


async def test_own_account_successes_do_not_reset_guesses_at_another(world_factory, make_api, browsers):
    api = await _api(world_factory, make_api)
    attacker = browsers(api)
    guesses = refused = 0
    for _ in range(6):  # guess, guess, sign in to one's own account, ...
        for _ in range(2):
            r = await attacker.login(DEMO_USER, "wrong-guess")
            guesses += r.status == 401  # a wrong password is answered (401, X-Login-Failed)
            refused += r.status == 429
        own = await browsers(api).login(OTHER)  # same address, the attacker's own account
        assert own.status in (302, 429)
    print(f"\nthrottle: {guesses} guesses at another account answered, {refused} refused")
    assert guesses == LIMIT and refused == 12 - LIMIT


async def test_the_target_account_is_throttled_from_any_address_count(world_factory, make_api, browsers):
    """Guesses at one account are counted for the account, and a different account is not blocked
    by them beyond the address's own limit."""
    api = await _api(world_factory, make_api)
    limiter: LoginLimiter = api.client.app[STATE]["limiter"]
    # another address already used up the account's attempts (the limiter is the server's own)
    for _ in range(LIMIT):
        assert limiter.try_start("192.0.2.7", DEMO_USER)
    b = browsers(api)
    r = await b.login(DEMO_USER)  # the right password, from a fresh address: the account is throttled
    assert r.status == 429 and "Too many" in r.text
    assert (await b.login(OTHER)).status == 302  # other accounts from this address are not


async def test_the_right_password_during_a_throttle_is_not_counted_after_it(world_factory, make_api, browsers):
    api = await _api(world_factory, make_api, window=6.0)
    b = browsers(api)
    for _ in range(LIMIT):
        assert (await b.login(DEMO_USER, "wrong")).status == 401
    for _ in range(3):
        assert (await b.login(DEMO_USER)).status == 429  # the right password gets the throttle answer
    await asyncio.sleep(6.1)  # the window passes
    # nothing of the throttled attempts weighs on the user: the full allowance again, then success
    for _ in range(LIMIT - 1):
        assert (await b.login(DEMO_USER, "wrong")).status == 401
    assert (await b.login(DEMO_USER, PASSWORDS[DEMO_USER])).status == 302
    # and a success takes back only its own attempt: the two failures still count
    limiter: LoginLimiter = api.client.app[STATE]["limiter"]
    assert len(limiter.attempts["account:" + DEMO_USER.lower()]) == LIMIT - 1


def test_limiter_unit_rules():
    lim = LoginLimiter(2, window=60)
    assert lim.try_start("a", "x@y") and lim.try_start("a", "z@y")
    assert not lim.try_start("a", "q@y")  # the address is full
    assert lim.try_start("b", "x@y")  # the account x has 2 now (a and b)
    assert not lim.try_start("c", "X@Y ")  # the account is full, whatever the spelling
    lim.succeeded("b", "x@y")
    assert lim.try_start("c", "x@y")
