"""A real daemon configured for alert tests (channels, rules, fast checks), and RAW files that arrive whole."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from daemonproc import DATA, Daemon

TRUNCATED = (DATA / "raw" / "small2.RAW").read_bytes()[:300_000]  # the native stage fails on it


def alert_daemon(tmp_path: Path, instrument: Path, channels: dict[str, str | dict[str, str]], rules: list[dict[str, Any]],
                 alerts: dict[str, Any] | None = None, watch: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, lab: bool = True) -> Daemon:
    """A daemon watching ``instrument`` for lab-qc/exploris (with ``lab``: its user, project and pipeline made)."""
    instrument.mkdir(parents=True, exist_ok=True)
    w = {"path": str(instrument), "pipeline": "lab-qc/exploris", "owner": "op@lab.org", "settle_seconds": 0.3,
         **(watch or {})}
    d = Daemon(tmp_path, engine={"native": True}, watch=[w], env=env)
    settings = {"check_seconds": 0.3, "group_seconds": 1.5, "repeat_minutes": 60.0, "retry_seconds": 0.5,
                "retry_max_minutes": 0.02, **(alerts or {})}
    lines = ["[alerts]", *(f"{k} = {json.dumps(v)}" for k, v in settings.items())]
    for name, ch in channels.items():  # a URL, or the channel's keys (url_file, url_env, quiet_hours)
        keys = {"url": ch} if isinstance(ch, str) else ch
        lines += ["[[alerts.channel]]", f"name = {json.dumps(name)}", *(f"{k} = {json.dumps(v)}" for k, v in keys.items())]
    for r in rules:
        lines.append("[[alerts.rule]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in r.items()]
    with d.config.open("a") as f:
        f.write("\n".join(lines) + "\n")
    if lab:
        d.setup_lab(mq=False)
    return d


def arrive(instrument: Path, files: dict[str, bytes | Path]) -> None:
    """Files written next to the folder, then renamed into it: each appears whole (as a finished acquisition)."""
    staging = instrument.parent / "staging"
    staging.mkdir(exist_ok=True)
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, staging / name)
        else:
            (staging / name).write_bytes(content)
    for name in files:
        (staging / name).rename(instrument / name)


def fail_files(instrument: Path, names: list[str]) -> None:
    arrive(instrument, dict.fromkeys(names, TRUNCATED))


def settle(seconds: float) -> None:
    time.sleep(seconds)  # a short wait to show that nothing more arrives
