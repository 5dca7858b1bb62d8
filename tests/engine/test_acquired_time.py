"""RAW acquisition times are the instrument PC's wall clock; each watch's ``timezone`` turns them
into the true UTC the store keeps."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from qcdaemon.config import config_from_dict
from qcdaemon.engine.stages.common import wall_clock_to_utc, watch_timezone


def test_wall_clock_to_utc_with_a_timezone(tmp_path: Path) -> None:
    cfg = config_from_dict({"paths": {"data_dir": str(tmp_path)}, "watch": [
        {"path": "/data/a", "pipeline": "p/q", "owner": "o@example.org", "timezone": "Europe/Berlin"},
        {"path": "/data/b", "pipeline": "p/r", "owner": "o@example.org"}]})
    berlin = watch_timezone(cfg, "/data/a")
    assert watch_timezone(cfg, "/data/b") is None and watch_timezone(cfg, None) is None
    summer, winter = dt.datetime(2026, 7, 1, 12, 0), dt.datetime(2026, 1, 1, 12, 0)
    assert wall_clock_to_utc(summer, berlin) == dt.datetime(2026, 7, 1, 10, 0)  # CEST, UTC+2
    assert wall_clock_to_utc(winter, berlin) == dt.datetime(2026, 1, 1, 11, 0)  # CET, UTC+1
    aware = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert wall_clock_to_utc(aware, berlin) == dt.datetime(2026, 1, 1, 17, 0)  # an offset wins


def test_without_a_timezone_the_hosts_is_used() -> None:
    code = ("import datetime as dt; from qcdaemon.engine.stages.common import wall_clock_to_utc;"
            "print(wall_clock_to_utc(dt.datetime(2026, 1, 1, 12, 0), None).isoformat())")
    env = {**os.environ, "TZ": "Asia/Tokyo", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2026-01-01T03:00:00"  # JST, UTC+9
