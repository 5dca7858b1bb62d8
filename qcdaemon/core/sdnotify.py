"""systemd's notify protocol without libsystemd: one datagram to $NOTIFY_SOCKET.

The daemon sends ``READY=1`` once the store is open, the HTTP port bound and the watchers
scheduled, ``STATUS=...`` when something worth showing in ``systemctl status`` changes,
``WATCHDOG=1`` at least every half of :func:`watchdog_interval` from the event loop, and
``STOPPING=1`` when shutdown begins.  Both functions are harmless no-ops outside systemd (and on Windows).
"""

from __future__ import annotations

import os
import socket


def sd_notify(message: str) -> bool:
    """Send ``message`` (one or more ``KEY=value`` lines) to systemd.

    Returns False when not started by systemd (no $NOTIFY_SOCKET) or when sending failed; never
    raises, so a watchdog ping cannot take the daemon down.
    """
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in ("/", "@") or not hasattr(socket, "AF_UNIX"):
        return False
    if addr[0] == "@":  # abstract namespace socket
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0)) as s:
            s.connect(addr)
            s.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """The unit's watchdog timeout (WatchdogSec) in seconds, or None if no watchdog is asked for.

    Like libsystemd's ``sd_watchdog_enabled``: send ``WATCHDOG=1`` at least every half of this.
    None also when $WATCHDOG_PID names another process (the variable was inherited).
    """
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
