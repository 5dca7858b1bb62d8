"""Secrets at rest: scrypt password hashes, tokens only as digest + sealed, the 0600 key file."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import ADMIN, DEMO_USER, PASSWORDS, Api, Browser, World

from qcdaemon.core import security
from qcdaemon.store import Store

# -- passwords ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hashed() -> str:
    return security.hash_password("correct horse battery")


def test_password_hash_verifies_and_rejects(hashed: str) -> None:
    assert security.verify_password("correct horse battery", hashed)
    for wrong in ("correct horse batter", "Correct horse battery", "", "correct horse battery "):
        assert not security.verify_password(wrong, hashed)


def test_password_hash_is_scrypt_and_not_the_password(hashed: str) -> None:
    assert "correct horse battery" not in hashed
    algo, n, r, p, salt, dk = hashed.split("$")
    assert algo == "scrypt" and int(n) >= 2**14 and int(r) >= 8 and int(p) >= 1
    assert len(bytes.fromhex(salt)) >= 16 and len(bytes.fromhex(dk)) >= 32
    # the stored derived key is scrypt of the password with the stored salt and parameters
    want = hashlib.scrypt(b"correct horse battery", salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                          maxmem=128 * 1024 * 1024, dklen=len(bytes.fromhex(dk)))
    assert want.hex() == dk


def test_password_hashes_are_salted(hashed: str) -> None:
    assert security.hash_password("correct horse battery") != hashed


@pytest.mark.parametrize("stored", [None, "", "plaintext", "md5$abc", "scrypt$x$8$1$00$00", "scrypt$1$2$3",
                                    "pbkdf2$32768$8$1$00$00"])
def test_malformed_hashes_never_verify(stored: str | None) -> None:
    assert security.verify_password("anything", stored) is False


# -- tokens at rest -------------------------------------------------------------------------------


def test_seal_round_trip_and_wrong_key(tmp_path: Path) -> None:
    key = security.load_or_create_key(tmp_path / "secret.key")
    token = security.new_token()
    sealed = security.seal(key, token)
    assert token not in sealed and security.unseal(key, sealed) == token
    assert security.seal(key, token) != sealed  # a fresh nonce each time
    assert security.unseal(os.urandom(32), sealed) is None
    raw = bytearray(__import__("base64").urlsafe_b64decode(sealed))
    raw[20] ^= 1
    assert security.unseal(key, __import__("base64").urlsafe_b64encode(bytes(raw)).decode()) is None
    for junk in ("", "not base64 !!", "AAAA", sealed[:-4]):
        assert security.unseal(key, junk) is None


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    key = security.load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert security.load_or_create_key(path) == key


def test_tokens_are_40_hex_and_unique() -> None:
    tokens = {security.new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(len(t) == 40 and int(t, 16) >= 0 for t in tokens)


def db_text_everywhere(db: Path) -> tuple[list[tuple[Any, ...]], bytes]:
    """(every row of the tokens table, the bytes of every database file) of a closed database."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT * FROM tokens").fetchall()
    finally:
        con.close()
    blobs = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    return rows, blobs


async def test_token_is_stored_only_as_digest_and_sealed(api: Api, world: World,
                                                         browsers: Callable[[Api], Browser]) -> None:
    b = browsers(api)
    await b.login(DEMO_USER)
    await b.get("/")
    r = await b.post("/api/token", csrf=True)
    assert r.status == 201
    token = r.data["token"]
    admin_token = await world.token(ADMIN)
    key = (world.data_dir / "secret.key").read_bytes()
    await world.store.call(Store.checkpoint)
    world.close()

    rows, blobs = db_text_everywhere(world.cfg.db_path)
    assert len(rows) == 2
    for t in (token, admin_token):
        assert not any(t in str(value) for row in rows for value in row)
        assert t.encode() not in blobs and t.upper().encode() not in blobs
        assert bytes.fromhex(t) not in blobs
    digests = {row[1] for row in rows}
    assert digests == {hashlib.sha256(token.encode()).hexdigest(), hashlib.sha256(admin_token.encode()).hexdigest()}
    # the sealed copy opens with the key file, and only with it
    sealed = {security.unseal(key, row[2]) for row in rows}
    assert sealed == {token, admin_token}
    assert {security.unseal(os.urandom(32), row[2]) for row in rows} == {None}
    # passwords neither
    for pw in PASSWORDS.values():
        assert pw.encode() not in blobs


async def test_a_lost_key_means_new_tokens_not_leaked_ones(world: World) -> None:
    """With another key the stored seal does not open: token_create makes a new token instead."""
    from qcdaemon.service.qcservice import QcService

    token, created = await world.svc.token_create(world.users[DEMO_USER])
    other = QcService(world.store, world.cfg, os.urandom(32))
    again, created_again = await other.token_create(world.users[DEMO_USER])
    assert created_again is True and again != token
    assert await world.svc.user_for_token(token) is None  # the old token no longer authenticates
    assert (await world.svc.user_for_token(again))["email"] == DEMO_USER


def test_constant_time_comparison_helpers() -> None:
    assert security.same("abc", "abc") and not security.same("abc", "abd")
    assert not security.same(None, "x") and not security.same("x", None)
    assert not security.same("\udcff", "x")  # undecodable header bytes compare without error
    assert security.digest("\udcff") != security.digest("x")
