"""Administrative operations: directly on the store, or through the running daemon when it holds the store."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from qcdaemon.config import Config
from qcdaemon.errors import QcdaemonError, StoreBusy


async def _op_direct(cfg: Config, op: str, args: dict[str, Any]) -> Any:
    from qcdaemon.core.security import load_or_create_key
    from qcdaemon.service.adminops import OPS
    from qcdaemon.service.qcservice import QcService
    from qcdaemon.store import AsyncStore

    store = await asyncio.to_thread(AsyncStore, cfg.db_path, cfg.store)
    try:
        svc = QcService(store, cfg, load_or_create_key(cfg.files.secret_key))
        return await OPS[op](svc, **args)
    finally:
        await asyncio.to_thread(store.close)


def op_via_daemon(cfg: Config, op: str, args: dict[str, Any], busy: StoreBusy) -> Any:
    """``op`` run by the daemon that holds the store, through its admin channel (always on loopback)."""
    import ssl

    from qcdaemon.service.adminops import read_daemon_info

    info = read_daemon_info(cfg.data_dir)
    secret_file = cfg.files.admin_secret
    if info is None or not secret_file.exists():
        raise QcdaemonError(f"{busy}; and no running qcdaemon answers for {cfg.data_dir}. Stop the other process.")
    try:
        secret = secret_file.read_text().strip()
    except PermissionError:
        raise QcdaemonError(
            f"the daemon is running but {secret_file} is not readable by this user: run the command as the "
            "daemon's user (e.g. sudo -u qcdaemon qcdaemon ...)"
        ) from None
    req = urllib.request.Request(
        info["admin_url"], data=json.dumps({"op": op, "args": args}).encode(), method="POST",
        headers={"X-Qcdaemon-Admin": secret, "Content-Type": "application/json", "Host": "127.0.0.1"},
    )
    ctx = ssl._create_unverified_context() if info["admin_url"].startswith("https") else None  # loopback only
    try:
        with urllib.request.urlopen(req, timeout=120, context=ctx) as resp:
            return json.loads(resp.read())["result"]
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = exc.reason
        raise QcdaemonError(f"the running daemon refused: {detail}") from None
    except urllib.error.URLError as exc:
        raise QcdaemonError(f"{busy}; the daemon at {info['admin_url']} does not answer ({exc.reason})") from None


def run_op(cfg: Config, op: str, **args: Any) -> Any:
    """The admin operation ``op`` (``qcdaemon.service.adminops.OPS``) with ``args``, wherever the store is."""
    try:
        return asyncio.run(_op_direct(cfg, op, args))
    except StoreBusy as busy:
        return op_via_daemon(cfg, op, args, busy)
