"""The one loopback test, for configured hosts and for the addresses of peers."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and any loopback address (``127.0.0.0/8``, ``::1``; brackets allowed)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
