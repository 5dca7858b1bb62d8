"""Running qcdaemon as a system service: install, uninstall and status for this platform.

``qcdaemon service install|uninstall|status`` call these three functions; they choose systemd
(Linux) or the Windows service manager by ``sys.platform`` and import only that implementation.
Each returns the process exit status.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["install", "status", "uninstall"]


def _platform() -> ModuleType | None:
    if sys.platform == "win32":
        from qcdaemon.system import windows

        return windows
    if sys.platform.startswith("linux"):
        from qcdaemon.system import systemd

        return systemd
    print(f"qcdaemon service: {sys.platform} is not supported (Linux with systemd, or Windows)", file=sys.stderr)
    return None


def install(config_path: str | None, user: str | None, dry_run: bool) -> int:
    """Install or upgrade the service (re-running is safe); ``dry_run`` prints the plan only."""
    impl = _platform()
    return impl.install(config_path, user, dry_run) if impl else 2


def uninstall(purge: bool, dry_run: bool) -> int:
    """Stop and remove the service; ``purge`` also deletes data, logs and config."""
    impl = _platform()
    return impl.uninstall(purge, dry_run) if impl else 2


def status() -> int:
    """Print the service state: 0 running, 3 not installed or stopped, 4 unknown."""
    impl = _platform()
    return impl.status() if impl else 4
