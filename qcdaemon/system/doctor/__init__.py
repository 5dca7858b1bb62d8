"""``qcdaemon doctor``: check that this machine can run the daemon with this config.

Each check gives one row: OK, WARN (works, but not as well as it could) or FAIL (the daemon or a
stage will not work).  Nothing is changed: the data dir is probed with a temporary file, the store
is opened read-only for a moment, the port is bound and released at once.
"""

from __future__ import annotations

import sys
from typing import TextIO

from qcdaemon.config import Config
from qcdaemon.system.doctor.alerts import check_alert_channels
from qcdaemon.system.doctor.checks import FAIL, OK, WARN, Check
from qcdaemon.system.doctor.folders import check_data_dir, check_watch
from qcdaemon.system.doctor.network import check_port, check_tls
from qcdaemon.system.doctor.programs import check_engine
from qcdaemon.system.doctor.store import inspect_store

__all__ = ["FAIL", "OK", "WARN", "Check", "run_doctor"]


def run_doctor(cfg: Config, *, out: TextIO | None = None) -> int:
    """Print the checks as a table; 1 if any check FAILed, else 0."""
    out = out or sys.stdout
    store, targets = inspect_store(cfg.db_path, cfg.watch, config=cfg.source)
    rows = [
        Check("config", OK, f"{cfg.source or 'built-in defaults (no config file)'} ({cfg.mode} mode)"),
        *check_data_dir(cfg.data_dir),
        store,
        *(row for w, t in zip(cfg.watch, targets) for row in (check_watch(w, service=cfg.mode == "service"), *t)),
        *check_engine(cfg.engine),
        check_port(cfg.server, cfg.data_dir),
        check_tls(cfg.server),
        *check_alert_channels(cfg),
    ]
    width = max(len(r.name) for r in rows)
    print(f"{'CHECK':<{width}}  STATUS  DETAIL", file=out)
    for r in rows:
        print(f"{r.name:<{width}}  {r.status:<6}  {r.detail}", file=out)
    counts = {s: sum(r.status == s for r in rows) for s in (OK, WARN, FAIL)}
    print(f"{len(rows)} checks: " + ", ".join(f"{n} {s}" for s, n in counts.items()), file=out)
    return 1 if counts[FAIL] else 0
