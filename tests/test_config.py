"""Configuration: defaults, a full file round-trips, and every mistake names its key."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, config_fields, run_qcdaemon, to_toml

from qcdaemon import remotecfg
from qcdaemon.config import Config, config_from_dict, load_config
from qcdaemon.errors import ConfigError


def full_config(tmp_path: Path) -> dict[str, Any]:
    """A value different from the default for every key of every section."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    return {
        "server": {"host": "0.0.0.0", "port": 8443, "tls_cert": str(cert), "tls_key": str(key),
                   "allow_insecure_http": True, "allowed_hosts": ["qc.lab.example", "10.0.0.5"],
                   "max_upload_mb": 512, "session_hours": 24, "login_attempts_per_minute": 5,
                   "header_timeout_seconds": 5.0, "keepalive_timeout_seconds": 30.0, "min_body_bytes_per_second": 10,
                   "body_rate_window_seconds": 5.0, "max_connections_per_client": 8},
        "paths": {"data_dir": str(tmp_path / "data"), "log_dir": str(tmp_path / "logs")},
        "store": {"memory_limit": "1GB", "threads": 4},
        "engine": {
            "native": False, "native_timeout_seconds": 120, "nice": 5, "shutdown_timeout": 12, "min_free_mb": 64,
            "work_retention_hours": 2.0,
            "rawtools": {"command": ["mono", "RawTools.exe"], "timeout_seconds": 99, "max_parallel": 2, "attempts": 3},
            "maxquant": {"command": ["dotnet", "MaxQuantCmd.dll"], "timeout_seconds": 7200, "max_parallel": 3,
                         "attempts": 2, "threads": 8, "runtime": "dotnet"},
            "search": {"enabled": False, "timeout_seconds": 600, "max_parallel": 2, "attempts": 2, "threads": 1,
                       "memory_mb": 2048, "keep_warm_seconds": 60, "fdr": 0.05, "enzyme": "lys-c", "missed_cleavages": 2,
                       "fixed_mods": ["C:[UNIMOD:4]"], "variable_mods": ["M:Oxidation", "^:Acetyl"], "tmt": "tmt11",
                       "precursor_tolerance_ppm": 10.0, "fragment_tolerance": 0.02, "fragment_unit": "da"},
        },
        "watch": [
            {"path": str(tmp_path / "in"), "pipeline": "lab/qc", "owner": "lab@example.org",
             "patterns": ["*.raw", "*.RAW"], "recursive": False, "polling": True, "settle_seconds": 2.5,
             "poll_interval": 1.5, "timezone": "America/Chicago", "working_hours": ["mon-fri 07:00-19:00"],
             "follow_symlinks": True},
            {"path": str(tmp_path / "in2"), "pipeline": "0b0e6e86-3f16-4a4b-8d5b-7d3c4c6f5a11",
             "owner": "other@example.org"},
        ],
        "log": {"level": "debug", "format": "json"},
        "scheduler": {"sweep_minutes": 1.5, "checkpoint_hour": 4},
        "metrics": {"enabled": False, "token_file": "/etc/qcdaemon/metrics.token", "token_env": "QCD_METRICS"},
    }


def test_defaults() -> None:
    cfg = load_config(None)
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8000)
    assert cfg.server.max_upload_mb > 0 and cfg.server.login_attempts_per_minute > 0
    assert cfg.server.allowed_hosts == () and cfg.watch == ()
    assert cfg.engine.native is True and cfg.engine.rawtools.command == () and cfg.engine.maxquant.command == ()
    assert cfg.log.level == "info" and cfg.source == ""
    assert cfg.db_path == cfg.data_dir / "qcdaemon.duckdb"
    assert config_from_dict({}) == Config()


def test_data_dir_follows_paths(tmp_path: Path) -> None:
    cfg = config_from_dict({"paths": {"data_dir": str(tmp_path / "d")}})
    assert cfg.data_dir == tmp_path / "d" and cfg.db_path == tmp_path / "d" / "qcdaemon.duckdb"


def test_full_config_round_trips(tmp_path: Path) -> None:
    data = full_config(tmp_path)
    # the file names every key there is (so a new field forces this test to be extended)
    named = {f"{s}.{k}" for s, v in data.items() if isinstance(v, dict) for k in v if not isinstance(v[k], dict)}
    named |= {f"engine.{t}.{k}" for t in ("rawtools", "maxquant", "search") for k in data["engine"][t]}
    named |= {f"watch.{k}" for k in data["watch"][0]}
    named |= {f for f in config_fields() if f.startswith("alerts.")}  # round-tripped in tests/alerts/test_alerts_unit.py
    named |= {f"engine.maxquant.{k}" for k in remotecfg.field_names}  # round-tripped in tests/remote/test_remotecfg.py
    named |= {f for f in config_fields() if f.startswith("qc.")}  # round-tripped in tests/test_config_qc.py
    named |= {f for f in config_fields() if f.startswith("hub.")}  # parsed in tests/store/test_hub_store.py
    assert named == set(config_fields())
    path = tmp_path / "qcdaemon.toml"
    path.write_text(to_toml(data))
    assert tomllib.loads(path.read_text()) == data  # the emitter wrote what was meant
    cfg = load_config(path)
    assert cfg.source == str(path.resolve())
    defaults = Config()
    for section, values in data.items():
        if section == "watch":
            continue
        for key, value in values.items():
            got = getattr(getattr(cfg, section), key)
            if isinstance(value, dict):
                for k, v in value.items():
                    want = tuple(v) if isinstance(v, list) else v
                    assert getattr(got, k) == want, f"{section}.{key}.{k}"
                    assert getattr(getattr(getattr(defaults, section), key), k) != want, f"{section}.{key}.{k} default"
            else:
                want = tuple(value) if isinstance(value, list) else value
                assert got == want, f"{section}.{key}"
                assert getattr(getattr(defaults, section), key) != want, f"{section}.{key} is the default"
    w = cfg.watch[0]
    assert dataclasses.asdict(w) == {**data["watch"][0], "patterns": ("*.raw", "*.RAW"),
                                     "working_hours": ("mon-fri 07:00-19:00",)}
    assert cfg.watch[1].patterns == ("*.raw",) and cfg.watch[1].recursive is True


@pytest.mark.parametrize(("data", "key"), [
    ({"srever": {}}, "srever"),
    ({"server": {"prot": 1}}, "server.prot"),
    ({"engine": {"rawtools": {"cmd": []}}}, "engine.rawtools.cmd"),
    ({"engine": {"maxquant": {"thread": 2}}}, "engine.maxquant.thread"),
    ({"watch": [{"path": "/x", "pipeline": "a/b", "owner": "a@b.c", "glob": "*"}]}, "watch[0].glob"),
    ({"server": {"port": "8000"}}, "server.port"),
    ({"server": {"port": 0}}, "server.port"),
    ({"server": {"port": 70000}}, "server.port"),
    ({"server": {"port": True}}, "server.port"),
    ({"server": {"port": 80.5}}, "server.port"),
    ({"server": {"allow_insecure_http": "yes"}}, "server.allow_insecure_http"),
    ({"server": {"allowed_hosts": [1]}}, "server.allowed_hosts"),
    ({"server": {"max_upload_mb": 0}}, "server.max_upload_mb"),
    ({"server": {"header_timeout_seconds": -1}}, "server.header_timeout_seconds"),
    ({"server": {"body_rate_window_seconds": 0}}, "server.body_rate_window_seconds"),
    ({"server": {"max_connections_per_client": -2}}, "server.max_connections_per_client"),
    ({"engine": {"min_free_mb": -1}}, "engine.min_free_mb"),
    ({"engine": {"work_retention_hours": -1}}, "engine.work_retention_hours"),
    ({"server": {"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"}}, "server.tls_cert"),
    ({"server": {"tls_cert": "/nonexistent/cert.pem"}}, "server.tls_cert"),
    ({"server": "not a table"}, "server"),
    ({"store": {"memory_limit": "lots"}}, "store.memory_limit"),
    ({"store": {"threads": 0}}, "store.threads"),
    ({"engine": {"nice": 40}}, "engine.nice"),
    ({"engine": {"rawtools": {"timeout_seconds": 0}}}, "engine.rawtools.timeout_seconds"),
    ({"engine": {"maxquant": {"max_parallel": 0}}}, "engine.maxquant.max_parallel"),
    ({"engine": {"maxquant": {"runtime": "java"}}}, "engine.maxquant.runtime"),
    ({"engine": {"rawtools": {"command": "RawTools.exe --flag", "attempts": 0}}}, "engine.rawtools.attempts"),
    ({"log": {"level": "chatty"}}, "log.level"),
    ({"log": {"format": "xml"}}, "log.format"),
    ({"watch": [{"path": "/x", "pipeline": "a/b", "owner": "nobody"}]}, "watch[0].owner"),
    ({"watch": [{"path": "/x", "pipeline": "a/b", "owner": "a@b.c"},
                {"path": "/y", "pipeline": "a/b", "owner": "nobody"}]}, "watch[1].owner"),
    ({"watch": [{"pipeline": "a/b", "owner": "a@b.c"}]}, "watch[0].path"),
    ({"watch": [{"path": "", "pipeline": "a/b", "owner": "a@b.c"}]}, "watch[0].path"),
    ({"watch": [{"path": "/x", "owner": "a@b.c"}]}, "watch[0].pipeline"),
    ({"watch": [{"path": "/x", "pipeline": "a/b", "owner": "a@b.c", "settle_seconds": -1}]}, "watch[0].settle_seconds"),
    ({"watch": [{"path": "/x", "pipeline": "a/b", "owner": "a@b.c", "poll_interval": 0}]}, "watch[0].poll_interval"),
    ({"watch": [{"path": "/x", "pipeline": "a/b", "owner": "a@b.c", "patterns": []}]}, "watch[0].patterns"),
    ({"watch": "folder"}, "watch"),
])
def test_mistakes_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert re.match(re.escape(key) + r"(:|\b)", str(err.value)), str(err.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match=re.escape(str(bad))):
        load_config(bad)


def test_check_config_cli_reports_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nport = "eighty"\n')
    proc = run_qcdaemon("check-config", "--config", str(path))
    assert proc.returncode == 2 and "server.port" in proc.stderr
    good = tmp_path / "good.toml"
    good.write_text(to_toml({"paths": {"data_dir": str(tmp_path / "d")}}))
    proc = run_qcdaemon("check-config", "--config", str(good))
    assert proc.returncode == 0 and "configuration OK" in proc.stdout


EXAMPLE = REPO / "config.example.toml"


def test_config_example_loads_and_documents_every_field() -> None:
    cfg = load_config(EXAMPLE)
    assert isinstance(cfg, Config)
    text = EXAMPLE.read_text()
    # a key is documented when it appears as a key line, set or commented out: "key =" / "# key ="
    keys = set(re.findall(r"^[#\s]*([A-Za-z_][A-Za-z0-9_]*)\s*=", text, flags=re.M))
    missing = [f for f in config_fields() if f.rsplit(".", 1)[-1] not in keys]
    assert not missing, f"config.example.toml does not document: {missing}"
    for section in ("server", "paths", "store", "engine", "engine.rawtools", "engine.maxquant", "watch", "log",
                    "scheduler", "alerts", "alerts.channel", "alerts.rule", "metrics", "qc"):
        assert re.search(rf"^[#\s]*\[\[?{re.escape(section)}\]?\]", text, flags=re.M), section


@pytest.mark.parametrize(
    "watches, key",
    [
        ([{"path": "/data/a"}, {"path": "/data/a/"}], "watch[1].path"),  # the same folder twice
        ([{"path": "/data"}, {"path": "/data/a"}], "watch[1].path"),  # inside a recursive watch
        ([{"path": "/data/a"}, {"path": "/data"}], "watch[0].path"),
        ([{"path": "relative/folder"}], "watch[0].path"),
    ],
)
def test_watch_folders_that_would_send_a_file_to_two_pipelines_are_refused(watches, key) -> None:
    base = {"pipeline": "lab/qc", "owner": "op@lab.org"}
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"watch": [{**base, **w} for w in watches]})
    assert str(exc.value).startswith(key)


def test_a_folder_inside_a_non_recursive_watch_is_fine() -> None:
    base = {"pipeline": "lab/qc", "owner": "op@lab.org"}
    cfg = config_from_dict({"watch": [{**base, "path": "/data", "recursive": False}, {**base, "path": "/data/a"}]})
    assert len(cfg.watch) == 2


def test_check_config_refuses_plain_http_on_the_network(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nhost = "0.0.0.0"\n')
    res = subprocess.run([sys.executable, "-m", "qcdaemon", "check-config", "--config", str(cfg)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "server.host" in res.stderr
    cfg.write_text('[server]\nhost = "0.0.0.0"\nallow_insecure_http = true\n')
    ok = subprocess.run([sys.executable, "-m", "qcdaemon", "check-config", "--config", str(cfg)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    before = subprocess.run([sys.executable, "-m", "qcdaemon", "--config", str(cfg), "check-config"],
                            capture_output=True, text=True)  # --config before the command works too
    assert before.returncode == 0 and str(cfg) in before.stdout


def test_watch_timezone_must_be_an_iana_name(tmp_path: Path) -> None:
    base = {"path": str(tmp_path), "pipeline": "p/q", "owner": "o@example.org"}
    assert config_from_dict({"watch": [base | {"timezone": "Asia/Tokyo"}]}).watch[0].timezone == "Asia/Tokyo"
    assert config_from_dict({"watch": [base]}).watch[0].timezone == ""
    with pytest.raises(ConfigError, match=r"watch\[0\]\.timezone"):
        config_from_dict({"watch": [base | {"timezone": "Mars/Olympus"}]})


@pytest.mark.parametrize(("search", "says"), [
    ({"enzyme": "pepsin"}, "engine.search: enzyme 'pepsin'"),
    ({"fixed_mods": ["Carbamidomethyl"]}, "'site:modification'"),
    ({"variable_mods": ["M:Oxidised"]}, "unknown modification 'Oxidised'"),
    ({"fdr": 2.0}, "fdr must be a fraction"),
    ({"timeout_seconds": 0}, "engine.search.timeout_seconds"),
])
def test_bad_search_settings_stop_start_up(search: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        config_from_dict({"engine": {"search": search}})
