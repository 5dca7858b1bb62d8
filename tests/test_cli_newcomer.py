"""The command line as a new lab user meets it (issue 11): where the configuration comes from and which
data dir a command uses, help for every option, Ctrl-D at the password prompt, the password minimum."""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, free_port, run_qcdaemon, subprocess_env, write_config

from qcdaemon import cli
from qcdaemon.cli import common
from qcdaemon.tools.rawtools import default_rawtools_command


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    return write_config(tmp_path / "qcdaemon.toml", {
        "server": {"port": free_port()},
        "paths": {"data_dir": str(tmp_path / "data"), "log_dir": str(tmp_path / "logs")},
        "log": {"format": "json"},
    })


def _run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qcdaemon", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**subprocess_env(), **(env or {})})


def test_config_comes_from_the_option_then_the_environment(cfg_path: Path, tmp_path: Path) -> None:
    data = cfg_path.parent / "data"
    by_env = _run("check-config", env={"QCDAEMON_CONFIG": str(cfg_path)})
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stderr.startswith(f"qcdaemon: data dir {data}; config {cfg_path} ($QCDAEMON_CONFIG)")
    other = write_config(tmp_path / "other.toml", {"paths": {"data_dir": str(tmp_path / "elsewhere")}})
    by_option = _run("check-config", "--config", str(other), env={"QCDAEMON_CONFIG": str(cfg_path)})
    assert f"data dir {tmp_path / 'elsewhere'}; config {other} (--config)" in by_option.stderr
    missing = _run("check-config", env={"QCDAEMON_CONFIG": str(tmp_path / "nope.toml")})
    assert missing.returncode == 2 and "nope.toml does not exist" in missing.stderr


def test_then_the_service_config_path_then_the_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QCDAEMON_CONFIG", raising=False)
    site = tmp_path / "etc" / "qcdaemon" / "config.toml"
    monkeypatch.setattr(common, "SITE_CONFIG", site)
    assert common.find_config(None) == (None, "no configuration file")
    site.parent.mkdir(parents=True)
    site.write_text('[paths]\ndata_dir = "/srv/qc"\n')
    assert common.find_config(None) == (str(site), "the service's configuration path")
    assert common.find_config("mine.toml") == ("mine.toml", "--config")
    # the path the service installer writes on this platform
    expected = (Path(os.environ.get("ProgramData", r"C:\ProgramData")) / "qcdaemon" / "config.toml" if os.name == "nt"  # noqa: SIM112
                else Path("/etc/qcdaemon/config.toml"))
    assert common.site_config_path() == expected


def test_the_embedded_defaults_use_the_bundled_rawtools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("QCDAEMON_CONFIG", raising=False)
    monkeypatch.setattr(common, "SITE_CONFIG", tmp_path / "none.toml")
    cfg = common.cli_config(argparse.Namespace(config=None))
    assert cfg.source == ""
    assert cfg.engine.rawtools.command == (default_rawtools_command() or ())
    assert "embedded defaults (no configuration file)" in capsys.readouterr().err


def test_every_option_has_help() -> None:
    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(cli.build_parser(), "qcdaemon")
    assert missing == []


def test_parse_raw_help_is_its_own() -> None:
    res = run_qcdaemon("parse", "raw", "--help")
    assert res.returncode == 0 and res.stdout.startswith("usage: qcdaemon parse raw [-h] [--chromatograms] FILE.raw")
    assert "Thermo .raw file" in res.stdout and "maxquant" not in res.stdout


def test_short_passwords_are_refused(cfg_path: Path) -> None:
    res = run_qcdaemon("user", "add", "a@lab.example", "--password-stdin", "--config", str(cfg_path), stdin="x\n")
    assert res.returncode == 1 and f"use at least {common.MIN_PASSWORD} characters" in res.stderr
    ok = run_qcdaemon("user", "add", "a@lab.example", "--password-stdin", "--config", str(cfg_path),
                      stdin="twelve-chars\n")
    assert ok.returncode == 0, ok.stderr


def test_ctrl_d_at_the_password_prompt(cfg_path: Path) -> None:
    pty = pytest.importorskip("pty", reason="a POSIX terminal")
    pid, fd = pty.fork()
    if pid == 0:  # the child: qcdaemon on a terminal
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "qcdaemon", "user", "add", "t@lab.example", "--config",
                                   str(cfg_path)], subprocess_env())
    out = b""
    deadline = time.monotonic() + 30
    while b"Password:" not in out and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            out += os.read(fd, 1024)
    assert b"Password:" in out
    os.write(fd, b"\x04")  # Ctrl-D
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child exited and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 1, text
    assert "no password given (end of input)" in text and "Traceback" not in text, text


def test_names_are_cut_with_a_marker() -> None:
    assert common.cut("a" * 45, 40) == "a" * 39 + "\u2026" and len(common.cut("a" * 45, 40)) == 40
    assert common.cut("short.raw", 40) == "short.raw"
