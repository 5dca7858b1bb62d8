"""The executor keys of [engine.maxquant] and the path mapping (issue 17)."""

from __future__ import annotations

import pytest

from qcdaemon.config import config_from_dict
from qcdaemon.errors import ConfigError, ToolError
from qcdaemon.remote.paths import map_path
from qcdaemon.remotecfg import RemoteConfig, field_names


def _mq(**keys: object) -> dict:
    return {"engine": {"maxquant": {"command": ["MaxQuantCmd"], "threads": 2, **keys}}}


def test_every_executor_key_round_trips_and_the_stage_keeps_its_own() -> None:
    keys = {"executor": "dask", "scheduler": "tls://dask.lab:8786", "transfer": False,
            "path_map": {"/var/lib/qcdaemon": "/cluster/qcd", "/var/lib/qcdaemon/work": "/fast/work"},
            "transfer_max_mb": 100, "output_max_mb": 10, "on_scheduler_down": "wait",
            "connect_timeout_seconds": 2.5, "tls_ca_file": "/etc/ca.pem", "tls_cert": "/etc/c.pem", "tls_key": "/etc/k.pem"}
    assert set(keys) == set(field_names)  # the test names every key there is
    cfg = config_from_dict(_mq(**keys))
    assert cfg.engine.maxquant.threads == 2 and cfg.engine.maxquant.command == ("MaxQuantCmd",)
    r = cfg.executors.of("maxquant")
    assert r.is_remote and r.scheduler == "tls://dask.lab:8786" and r.on_scheduler_down == "wait"
    assert r.path_map == (("/var/lib/qcdaemon/work", "/fast/work"), ("/var/lib/qcdaemon", "/cluster/qcd"))
    assert (r.transfer_max_mb, r.output_max_mb, r.connect_timeout_seconds) == (100, 10, 2.5)
    assert cfg.executors.of("rawtools") == RemoteConfig()  # no keys: local


def test_the_default_is_local() -> None:
    assert not config_from_dict({}).executors.of("maxquant").is_remote
    assert not config_from_dict(_mq()).executors.of("maxquant").is_remote


@pytest.mark.parametrize("keys, key", [
    ({"executor": "slurm"}, "engine.maxquant.executor"),
    ({"executor": "dask", "transfer": True}, "engine.maxquant.scheduler"),
    ({"executor": "dask", "scheduler": "tcp://h:1"}, "engine.maxquant.path_map"),  # neither
    ({"executor": "dask", "scheduler": "tcp://h:1", "transfer": True, "path_map": {"/a": "/b"}},
     "engine.maxquant.path_map"),  # both
    ({"executor": "dask", "scheduler": "tcp://h:1", "path_map": {"relative": "/b"}}, "engine.maxquant.path_map"),
    ({"executor": "dask", "scheduler": "tcp://h:1", "path_map": ["/a"]}, "engine.maxquant.path_map"),
    ({"executor": "dask", "scheduler": "tls://h:1", "transfer": True}, "engine.maxquant.scheduler"),
    ({"transfer": "yes"}, "engine.maxquant.transfer"),
    ({"output_max_mb": 0}, "engine.maxquant.output_max_mb"),
    ({"on_scheduler_down": "retry"}, "engine.maxquant.on_scheduler_down"),
    ({"tls_cert": "/c.pem"}, "engine.maxquant.tls_cert"),
])
def test_bad_executor_keys_are_named(keys: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}:"):
        config_from_dict(_mq(**keys))


def test_only_maxquant_may_run_on_dask() -> None:
    with pytest.raises(ConfigError, match="^engine.rawtools.executor: only maxquant"):
        config_from_dict({"engine": {"rawtools": {"executor": "dask", "scheduler": "tcp://h:1", "transfer": True}}})


def test_a_typo_in_the_stage_table_is_still_refused() -> None:
    with pytest.raises(ConfigError, match="^engine.maxquant.treads: unknown key"):
        config_from_dict(_mq(treads=2, executor="local"))


def test_paths_are_mapped_by_the_longest_prefix() -> None:
    pm = (("/var/lib/qcdaemon/work", "/fast/work"), ("/var/lib/qcdaemon", "/cluster/qcd"))
    assert map_path("/var/lib/qcdaemon/work/rf1/mqpar.xml", pm) == "/fast/work/rf1/mqpar.xml"
    assert map_path("/var/lib/qcdaemon/fasta/x.fasta", pm) == "/cluster/qcd/fasta/x.fasta"
    assert map_path("/var/lib/qcdaemon", pm) == "/cluster/qcd"
    assert map_path("/data/a b/x.raw", (("/data", "Z:\\share"),)) == "Z:\\share\\a b\\x.raw"  # a Windows worker
    with pytest.raises(ToolError, match="not inside any folder of path_map"):
        map_path("/var/lib/qcdaemonX/f", pm)  # a prefix of the name, not of the folder
