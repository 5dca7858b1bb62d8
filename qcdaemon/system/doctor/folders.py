"""The data dir (writable, room on its disk) and the watched folders (readable, local or polled)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from qcdaemon.config import WatchConfig
from qcdaemon.system.doctor.checks import FAIL, OK, WARN, Check, GiB, MiB

FREE_WARN, FREE_FAIL = 1 * GiB, 200 * MiB
NETWORK_FS = frozenset({"cifs", "smb3", "smbfs", "nfs", "nfs4", "fuse.sshfs", "9p", "ceph", "glusterfs", "afs"})


def check_data_dir(path: Path) -> list[Check]:
    """The data dir exists or can be created, is writable (a temp file), and has room."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = f"cannot be created: {existing} is a file" if existing != path else "is a file, not a directory"
        return [Check("data dir", FAIL, f"{path} {what}")]
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        verb = "is not writable" if existing == path else f"cannot be created ({existing} is not writable)"
        return [Check("data dir", FAIL, f"{path} {verb}: {exc.strerror}")]
    free = shutil.disk_usage(existing).free
    space = Check("disk space", OK, f"{free / GiB:.1f} GiB free")
    if free < FREE_FAIL:
        space = Check("disk space", FAIL, f"only {free / MiB:.0f} MB free on the data dir's disk (need 200 MB)")
    elif free < FREE_WARN:
        space = Check("disk space", WARN, f"only {free / MiB:.0f} MB free on the data dir's disk (1 GiB advised)")
    made = "writable" if existing == path else "will be created"
    return [Check("data dir", OK, f"{path} ({made})"), space]


def mount_fstype(path: str, mounts: str) -> str | None:
    """The filesystem type of the mount holding ``path``, from /proc/mounts text."""
    best, fstype = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype


def _read_mounts() -> str:
    try:
        return Path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _network_kind(w: WatchConfig, *, service: bool) -> tuple[str | None, Check | None]:
    """("cifs"/"UNC"/None, a check that overrides the result when the path cannot work)."""
    if os.name != "nt":
        fstype = mount_fstype(os.path.realpath(w.path), _read_mounts())
        return (fstype if fstype in NETWORK_FS else None), None
    from qcdaemon.system.windows import (  # pragma: no cover - Windows only
        check_watch_path,
        get_drive_type,
    )

    problem = check_watch_path(w.path, get_drive_type)  # pragma: no cover
    if problem:  # pragma: no cover - a mapped drive: fine in a console, invisible to a service
        return "mapped drive", Check(f"watch {w.path}", FAIL if service else WARN, problem)
    return ("UNC" if w.path.startswith("\\\\") else None), None  # pragma: no cover


def check_watch(w: WatchConfig, *, service: bool = False) -> Check:
    """A watch folder exists, is a folder, can be listed; network folders want polling."""
    name = f"watch {w.path}"
    p = Path(w.path)
    if not p.exists():
        return Check(name, FAIL, "does not exist (or is not reachable from this machine)")
    if not p.is_dir():
        return Check(name, FAIL, "is a file, not a folder")
    try:
        with os.scandir(p) as entries:
            next(entries, None)
    except OSError as exc:
        return Check(name, FAIL, f"cannot be listed: {exc.strerror}")
    kind, problem = _network_kind(w, service=service)
    if problem:
        return problem
    if kind is None:
        return Check(name, OK, "readable, local disk")
    if not w.polling:
        return Check(name, WARN, f"network folder ({kind}): change events miss files written by other "
                                 "machines; set polling = true")
    return Check(name, OK, f"readable, network folder ({kind}), polled every {w.poll_interval:g} s")
