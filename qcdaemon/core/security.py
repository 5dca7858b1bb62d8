"""Passwords, API tokens, sessions: stdlib only, constant-time comparisons throughout.

- Passwords: scrypt (memory-hard, N=2**15, r=8, p=1: 32 MiB per hash), stored as
  ``scrypt$N$r$p$salt$hash``.
- API tokens: 40 hex characters; the store keeps their SHA-256 digest for look-up, and the token
  itself only *sealed* (encrypted and authenticated) with a key held in a separate 0600 file, so
  ``POST /api/token`` can answer with the existing token without plaintext at rest.
- Session ids and CSRF tokens: random, session ids stored as SHA-256 digests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

_SCRYPT = (2**15, 8, 1)
_MAXMEM = 128 * 1024 * 1024


def hash_password(password: str) -> str:
    n, r, p = _SCRYPT
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${dk.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches; a missing or malformed hash never matches."""
    if not stored:
        # still spend the time so that unknown users are not distinguishable by timing
        hash_password(password)
        return False
    try:
        algo, n, r, p, salt, want = stored.split("$")
        if algo != "scrypt":
            return False
        dk = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM, dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk.hex(), want)


def new_token() -> str:
    return secrets.token_hex(20)


def _bytes(text: str) -> bytes:
    # surrogatepass: header and cookie values that were not UTF-8 arrive with lone surrogates
    return text.encode("utf-8", "surrogatepass")


def digest(secret: str) -> str:
    return hashlib.sha256(_bytes(secret)).hexdigest()


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return hmac.compare_digest(_bytes(a), _bytes(b))


def load_or_create_key(path: Path) -> bytes:
    """The sealing key: 32 random bytes in a file readable by the daemon's user only."""
    try:
        key = path.read_bytes()
        if len(key) == 32:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.chmod(path, 0o600)
    return key


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(key, b"enc" + nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return out[:length]


def seal(key: bytes, secret: str) -> str:
    """Encrypt-then-MAC with HMAC-SHA256 in counter mode (a PRF stream cipher)."""
    nonce = os.urandom(16)
    data = secret.encode()
    ct = bytes(a ^ b for a, b in zip(data, _keystream(key, nonce, len(data))))
    tag = hmac.new(key, b"mac" + nonce + ct, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(nonce + ct + tag).decode()


def unseal(key: bytes, sealed: str) -> str | None:
    """The secret, or None when the seal was not made with this key or was altered."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
    except (ValueError, TypeError):
        return None
    if len(raw) < 33:
        return None
    nonce, ct, tag = raw[:16], raw[16:-16], raw[-16:]
    want = hmac.new(key, b"mac" + nonce + ct, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(tag, want):
        return None
    return bytes(a ^ b for a, b in zip(ct, _keystream(key, nonce, len(ct)))).decode()
