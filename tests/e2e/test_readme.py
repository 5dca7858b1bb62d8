"""The README's walk-through, pasted in order: its ```sh blocks (up to "For operators", which needs
root and a service manager) run one after the other in one bash session, against a real daemon
started the way `make run` starts it: `qcdaemon bootstrap-demo` then `qcdaemon run`, with the
embedded defaults (no configuration file) in a fresh HOME.

The only substitutions are the README's own placeholders: `<uuid printed by pipeline add>` (the
uuid that block printed), `sample.raw` (a real small RAW file from tests/data/raw), and, only when
another program holds port 8000, the port (the daemon then gets a configuration file naming a free
port and the RawTools command the embedded defaults would use).  The quick-start block (`make run`, `make test`) is the daemon started here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from daemonproc import DATA, REPO, free_port, wait_for

from qcdaemon.tools.rawtools import default_rawtools_command

README = REPO / "README.md"
UUID_PLACEHOLDER = "<uuid printed by pipeline add>"


def walkthrough_blocks(text: str) -> list[str]:
    """The ```sh blocks of the README before its "For operators" section, in order."""
    text = text.split("\n## For operators", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_") and k != "QCDAEMON_CONFIG"}
    env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("curl") is None, reason="the README's shell: bash, curl")
def test_the_readme_walkthrough_works_when_pasted_in_order(tmp_path: Path) -> None:
    blocks = walkthrough_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 5, "the README lost its walk-through"
    quick, rest = blocks[0], blocks[1:]
    assert [ln.split("#")[0].strip() for ln in quick.strip().splitlines()] == ["make run", "make test"]

    home = tmp_path / "home"
    home.mkdir()
    env = _env(home)
    work = tmp_path / "checkout"  # where the blocks run: cookies.txt etc. land here, not in the repo
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.prefix))
    sample = work / "sample-run.raw"
    shutil.copyfile(DATA / "raw" / "small2.RAW", sample)

    port = 8000
    if not _port_free(port):  # someone else's 8000: a config that names another port and, like the
        port = free_port()     # embedded defaults, the bundled RawTools when it can run
        bundled = default_rawtools_command()
        tools = f"[engine.rawtools]\ncommand = {json.dumps(list(bundled))}\n" if bundled else ""
        (home / "port.toml").write_text(f"[server]\nport = {port}\n{tools}")
        env["QCDAEMON_CONFIG"] = str(home / "port.toml")
    qcdaemon = [sys.executable, "-m", "qcdaemon"]
    # make run = bootstrap-demo, then run (both with the embedded defaults)
    boot = subprocess.run([*qcdaemon, "bootstrap-demo", "--user", "user@email.com"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    assert boot.returncode == 0, boot.stderr
    data_dir = home / ".local" / "share" / "qcdaemon"
    password = (data_dir / "demo-password.txt").read_text().strip()
    assert f"Demo sign-in: user@email.com / {password}" in boot.stdout
    if "QCDAEMON_CONFIG" not in env:
        assert f"data dir {data_dir}; embedded defaults" in boot.stderr
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen([*qcdaemon, "run"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    shells: list[subprocess.Popen[str]] = []
    try:
        def healthy() -> bool:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(healthy, 30, "the daemon")
        # one bash session, as when pasting into one terminal; a failing command ends it (set -e)
        shell = subprocess.Popen(["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env=env, cwd=work)
        assert shell.stdin is not None and shell.stdout is not None
        shells.append(shell)
        shell.stdin.write("set -eo pipefail\n")
        out = ""
        for i, block in enumerate(rest):
            if UUID_PLACEHOLDER in block:  # the uuid the previous block printed
                listed = subprocess.run([*qcdaemon, "list", "pipelines", "--json"], capture_output=True, text=True,
                                        env=env, cwd=work, timeout=60)
                [lab] = [p for p in json.loads(listed.stdout) if p["project"] == "my-lab"]
                assert lab["uuid"] in out  # pipeline add printed it
                block = block.replace(UUID_PLACEHOLDER, lab["uuid"]).replace("@sample.raw", f"@{sample.name}")
            shell.stdin.write(block.replace("127.0.0.1:8000", f"127.0.0.1:{port}") + f"\necho '=== block {i} done'\n")
            shell.stdin.flush()
            deadline = time.monotonic() + 120
            while not out.endswith(f"=== block {i} done\n"):
                assert time.monotonic() < deadline, f"block {i} did not finish:\n{out[-3000:]}"
                line = shell.stdout.readline()
                assert line, f"bash ended in block {i}:\n{block}\n--- output ---\n{out[-3000:]}"
                out += line
        shell.stdin.close()
        assert shell.wait(timeout=30) == 0, out[-3000:]
        shell.stdout.close()

        # what the blocks printed is what the README says they print
        assert re.search(r'\{"token": "[0-9a-f]{40}", "created": true\}', out)
        assert '"slug": "demo-project"' in out and '"path_as_str"' in out
        assert '"status": "success"' in out  # the rawfile accept and the flag
        upload, _ = json.JSONDecoder().raw_decode(out[out.index('{"run_key"'):])  # curl's progress follows it
        assert upload["name"] == sample.name and upload["pipeline"] == lab["uuid"]
        assert '{"revoked": true}' in out.split("=== block")[-2]  # the last block revokes the token

        # the uploaded run is processed; after make run, RawTools runs when mono and the wheel are there
        def finished() -> dict | None:
            q = subprocess.run([*qcdaemon, "runs", "--json", "--limit", "1"], capture_output=True, text=True,
                               env=env, cwd=work, timeout=60)
            run = json.loads(q.stdout)[0]
            return run if run["state"] in ("done", "failed") else None

        run = wait_for(finished, 180, "the uploaded run")
        stages = {s["stage"]: s for s in run["stages"]}
        assert stages["native"]["state"] == "done"
        if default_rawtools_command() is not None:
            assert stages["rawtools"]["state"] == "done", (stages["rawtools"], (tmp_path / "daemon.log").read_text()[-2000:])
        else:
            assert stages["rawtools"]["state"] == "skipped" and "install" in stages["rawtools"]["error"]
    finally:
        for sh in shells:
            if sh.poll() is None:
                sh.kill()
            sh.wait()
            for pipe in (sh.stdin, sh.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
    assert not (REPO / "cookies.txt").exists()


@pytest.mark.parametrize("needle", ["qcdaemon token create", "qcdaemon runs", "qcdaemon doctor"])
def test_the_readme_calls_the_cli_where_make_run_put_it(needle: str) -> None:
    text = README.read_text(encoding="utf-8").split("\n## For operators", 1)[0]
    walk = text.split("## The API with curl", 1)[1].split("## Command line", 1)[0]
    for m in re.finditer(re.escape(needle), walk):
        assert walk[max(0, m.start() - 10):m.start()].endswith(".venv/bin/"), walk[m.start() - 40:m.end()]
