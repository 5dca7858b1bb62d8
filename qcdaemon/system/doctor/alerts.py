"""The [[alerts.channel]] entries: readable, accepted by apprise, and not failing delivery after delivery."""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import Any

import duckdb

from qcdaemon.alerts.delivery import ChannelError, channel_url, describe_channel
from qcdaemon.config import Config
from qcdaemon.system.doctor.checks import FAIL, OK, WARN, Check


def _channel_health(cfg: Config) -> dict[str, dict[str, Any]] | None:
    """Per channel the consecutive failed attempts and last error: from the store read-only, or from
    the running daemon (which holds the store) through its local admin channel; None if neither."""
    db = cfg.files.db
    if not db.exists():
        return {}
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        con = None
    if con is not None:
        try:
            rows = con.execute("SELECT channel, ok, error FROM alert_attempts ORDER BY attempted_at DESC").fetchall()
        except duckdb.Error:
            return {}
        finally:
            con.close()
        out: dict[str, dict[str, Any]] = {}
        for channel, ok, error in rows:
            h = out.setdefault(channel, {"consecutive_failures": 0, "last_error": None, "done": False})
            if h["done"]:
                continue
            if ok:
                h["done"] = True
            else:
                h["consecutive_failures"] += 1
                h["last_error"] = h["last_error"] or error
        return out
    try:
        info = json.loads(cfg.files.daemon_info.read_text())
        secret = cfg.files.admin_secret.read_text().strip()
        req = urllib.request.Request(info["admin_url"], data=json.dumps({"op": "alerts_channels", "args": {}}).encode(),
                                     method="POST", headers={"X-Qcdaemon-Admin": secret, "Host": "127.0.0.1",
                                                             "Content-Type": "application/json"})
        ctx = ssl._create_unverified_context() if info["admin_url"].startswith("https") else None  # loopback only
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return {c["name"]: c for c in json.loads(resp.read())["result"]}
    except (OSError, ValueError, KeyError):
        return None


def check_alert_channels(cfg: Config) -> list[Check]:
    """Each [[alerts.channel]]: its URL can be read (file, environment) and apprise accepts it; a
    channel whose deliveries keep failing is a FAIL with the last error (never the URL's secrets)."""
    if not cfg.alerts.channel:
        return []
    import apprise  # a heavy import, only when channels are configured

    health = _channel_health(cfg)
    rows = []
    for ch in cfg.alerts.channel:
        name = f"alert channel {ch.name}"
        try:
            url = channel_url(ch)
        except ChannelError as exc:
            rows.append(Check(name, FAIL, str(exc)))
            continue
        if not apprise.Apprise().add(url):
            rows.append(Check(name, FAIL, f"{describe_channel(ch)}: apprise does not accept this URL"))
            continue
        h = (health or {}).get(ch.name)
        fails = int(h["consecutive_failures"]) if h else 0
        if fails >= cfg.alerts.failing_after:
            rows.append(Check(name, FAIL, f"{describe_channel(ch)}: {fails} failed deliveries in a row; last: "
                                          f"{h.get('last_error') if h else ''}"))
        elif health is None:
            rows.append(Check(name, WARN, f"{describe_channel(ch)}: delivery history not readable"))
        else:
            rows.append(Check(name, OK, f"{describe_channel(ch)}" + (f" ({fails} recent failures)" if fails else "")
                              + "; `qcdaemon alerts test " + ch.name + "` sends a test message"))
    return rows
