"""``hub_unreachable`` watches the hub's ``[[hub.source]]`` entries, which belong to no project or
pipeline: a rule of another scope would never fire, so ``check-config`` and the daemon's start refuse
it, naming the rule (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_qcdaemon

from qcdaemon.config import config_from_dict
from qcdaemon.errors import ConfigError


def _config(tmp_path: Path, **scope: str) -> dict[str, object]:
    return {
        "paths": {"data_dir": str(tmp_path / "data")},
        "alerts": {
            "channel": [{"name": "hook", "url": "json://127.0.0.1:9/hook"}],
            "rule": [{"name": "lab-verdicts", "condition": "verdict", "channels": ["hook"], **scope},
                     {"name": "sources-down", "condition": "hub_unreachable", "channels": ["hook"], **scope}],
        },
    }


@pytest.mark.parametrize("scope", [{"scope": "project", "project": "lab"},
                                   {"scope": "pipeline", "pipeline": "lab/qc"}])
def test_a_scoped_hub_unreachable_rule_is_refused_by_name(tmp_path: Path, scope: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(_config(tmp_path, **scope))
    text = str(exc.value)
    assert text.startswith("alerts.rule[1].scope") and "'sources-down'" in text and 'scope = "all"' in text


def test_scope_all_is_accepted(tmp_path: Path) -> None:
    cfg = config_from_dict(_config(tmp_path, scope="all"))
    assert [r.scope for r in cfg.alerts.rule] == ["all", "all"]


def test_check_config_and_run_refuse_it(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\n'
                    '[[alerts.channel]]\nname = "hook"\nurl = "json://127.0.0.1:9/hook"\n'
                    '[[alerts.rule]]\nname = "sources-down"\ncondition = "hub_unreachable"\nchannels = ["hook"]\n'
                    'scope = "project"\nproject = "lab"\n')
    check = run_qcdaemon("check-config", "--config", str(path))
    assert check.returncode == 2 and "sources-down" in check.stderr and "configuration OK" not in check.stdout
    start = run_qcdaemon("run", "--config", str(path))  # refused before anything starts
    assert start.returncode == 2 and "sources-down" in start.stderr, start.stderr
    assert not (tmp_path / "data").exists()
