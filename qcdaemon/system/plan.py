"""What `service install/uninstall` do, as a list of steps: printed by --dry-run, applied otherwise.

Every change an installer makes to the machine is one :class:`Step`: a file to write, a tree to
remove, or a command to run.  ``--dry-run`` prints the plan (the full text of every file and every
command line) and touches nothing; a real run prints and applies each step in order and stops at
the first checked command that fails.  Commands go through one seam, :data:`Run`, so tests record
what would run instead of needing root or Windows.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TextIO

from qcdaemon.config import Config, config_from_dict, load_config
from qcdaemon.errors import ConfigError

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The one place a command runs for real: argv list, no shell, output captured as text."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: {exc.strerror}")


def show(argv: Sequence[str]) -> str:
    """A command line as a user would type it (POSIX quoting; good enough to read on Windows too)."""
    return shlex.join(argv) if os.name != "nt" else subprocess.list2cmdline(list(argv))


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    check: bool = True  # False: a failure is reported but the plan goes on (stop/disable on uninstall)

    def describe(self) -> str:
        return f"run: {show(self.argv)}"


@dataclass(frozen=True)
class WriteFile:
    path: Path
    text: str
    mode: int = 0o644

    def describe(self) -> str:
        body = self.text if self.text.endswith("\n") else self.text + "\n"
        return f"write {self.path} (mode {self.mode:04o}):\n{_indent(body)}"


@dataclass(frozen=True)
class RemoveTree:
    path: Path

    def describe(self) -> str:
        return f"remove {self.path}" + (" (recursively)" if self.path.is_dir() else "")


Step = Command | WriteFile | RemoveTree


def _indent(text: str) -> str:
    return "".join(f"    | {line}" for line in text.splitlines(keepends=True))


@dataclass
class Host:
    """The machine as the installers see it; tests replace every field."""

    run: Run = run
    out: TextIO = field(default_factory=lambda: sys.stdout)
    python: str = field(default_factory=lambda: os.path.abspath(sys.executable))
    is_admin: Callable[[], bool] = field(default_factory=lambda: _is_admin)
    example_config: Callable[[], str] = field(default_factory=lambda: example_config_text)

    def say(self, text: str) -> None:
        print(text, file=self.out)


def _is_admin() -> bool:
    if os.name == "nt":  # pragma: no cover - Windows only
        import ctypes

        return bool(ctypes.windll.shell32.IsUserAnAdmin())  # type: ignore[attr-defined]
    return os.geteuid() == 0


def execute(steps: Sequence[Step], host: Host, *, dry_run: bool) -> int:
    """Print the plan (dry run) or print and apply each step; the exit status of the first failure."""
    if not steps:
        host.say("nothing to do")
        return 0
    if dry_run:
        host.say("dry run: nothing is changed. The plan:")
        for step in steps:
            host.say(f"  would {step.describe()}")
        return 0
    for step in steps:
        if isinstance(step, WriteFile):
            host.say(f"+ write {step.path}")
            step.path.parent.mkdir(parents=True, exist_ok=True)
            step.path.write_text(step.text, encoding="utf-8")
            step.path.chmod(step.mode)
        elif isinstance(step, RemoveTree):
            host.say(f"+ remove {step.path}")
            if step.path.is_dir() and not step.path.is_symlink():
                shutil.rmtree(step.path)
            else:
                step.path.unlink(missing_ok=True)
        else:
            host.say(f"+ {show(step.argv)}")
            res = host.run(step.argv)
            if res.returncode != 0:
                detail = (res.stderr or res.stdout or "").strip()
                host.say(f"  exit status {res.returncode}" + (f": {detail}" if detail else ""))
                if step.check:
                    return res.returncode
    return 0


def service_config(config_path: str | None, default: Path, host: Host) -> tuple[Config, str, list[Step]]:
    """The config a service will run with, its absolute path, and the step that writes it (if any).

    An explicit ``--config`` is used where it is.  Without one, ``default`` is used if it exists
    (never overwritten: the admin may have edited it), else the example config is written there.
    Raises ConfigError for a config that does not load.
    """
    if config_path is not None:
        path = os.path.abspath(config_path)
        return load_config(path, mode="service"), path, []
    if default.exists():
        return load_config(default, mode="service"), str(default), []
    text = host.example_config()
    cfg = config_from_dict(tomllib.loads(text), mode="service", source=str(default))
    return cfg, str(default), [WriteFile(default, text, 0o644)]


def example_config_text(path: str | os.PathLike[str] | None = None) -> str:
    """The documented example config, used when `service install` gets no --config.

    Looks for ``config.example.toml`` at the top of a source checkout, then inside the package
    (package data of a built wheel).
    """
    if path is not None:
        return Path(path).read_text(encoding="utf-8")
    # A checkout first (there qcdaemon/config.example.toml is only a link to it), then the copy
    # that a built wheel carries as package data.
    checkout = Path(__file__).resolve().parents[2] / "config.example.toml"
    if checkout.is_file():
        return for_service(checkout.read_text(encoding="utf-8"))
    packaged = resources.files("qcdaemon").joinpath("config.example.toml")
    if packaged.is_file():
        return for_service(packaged.read_text(encoding="utf-8"))
    raise ConfigError("config.example.toml not found (neither packaged nor in a checkout); pass --config")


def for_service(text: str) -> str:
    """The example config as a service's config file.

    - ``data_dir``/``log_dir`` are written out (the service-mode defaults), so that admin commands
      given ``--config`` of the service (``qcdaemon user add --config /etc/qcdaemon/config.toml``)
      reach the service's database, not a per-user one;
    - the example's [[watch]] tables name an imaginary lab's folders and pipelines: a service
      started on them would stop at start-up (unknown pipeline), so they are commented out.
    """
    from qcdaemon.config import default_data_dir, default_log_dir

    for key, path in (("data_dir", default_data_dir("service")), ("log_dir", default_log_dir("service"))):
        text = text.replace(f'\n{key} = ""\n', f"\n{key} = {_toml_str(str(path))}\n", 1)
    head, sep, tail = text.partition("\n[[watch]]")
    if not sep:
        return text
    body = (sep.lstrip("\n") + tail).splitlines()
    note = ["# Uncomment and adapt one [[watch]] table per instrument folder, then restart the service."]
    return head + "\n" + "\n".join(note + [ln if ln.startswith("#") or not ln else "# " + ln for ln in body]) + "\n"


def _toml_str(value: str) -> str:
    return "'" + value + "'" if "'" not in value else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unpurged_dirs(config_file: Path, purged: Sequence[Path]) -> list[tuple[str, Path]]:
    """``paths.data_dir``/``log_dir`` of the service's config that lie outside the folders
    --purge removes (and exist): the admin chose them, so they are named, never deleted."""
    if not config_file.is_file():
        return []
    try:
        cfg = load_config(config_file, mode="service")
    except (ConfigError, OSError, ValueError):  # ValueError: not UTF-8
        return []
    return [(key, d) for key, d in (("paths.data_dir", cfg.data_dir), ("paths.log_dir", cfg.log_dir))
            if d.is_absolute() and d.exists() and not any(d.is_relative_to(p) for p in purged)]
