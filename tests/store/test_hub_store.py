"""The hub's side of the change cursor in a real DuckDB file: a page and its cursor are one
transaction, applying a page twice changes nothing, and the ``[hub]`` configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qcdaemon.config import config_from_dict
from qcdaemon.errors import ConfigError
from qcdaemon.store import Store


def _run(key: str, **kw: Any) -> dict[str, Any]:
    return {"run_key": key, "name": f"{key}.raw", "project": "lab", "project_name": "Lab", "pipeline": "orbi",
            "pipeline_name": "Orbi", "state": "done", "error": None, "flagged": False, "use_downstream": True,
            "sha256": "0" * 64, "size": 10, "created_at": "2026-01-02T03:04:05Z",
            "acquired_at": "2026-01-02T01:00:00Z", "metrics_engine": "native", "superseded_by": None,
            "values": {"native": {"MS1 scans": 10.0}}, **kw}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "hub.duckdb")
    yield s
    s.close()


def _pulled(store: Store) -> list[dict[str, Any]]:
    return store.rows("SELECT origin, origin_key, name, flagged, pipeline_id FROM runs ORDER BY origin, origin_key")


def test_a_page_and_its_cursor_commit_together(store: Store) -> None:
    result = store.hub_apply("a", [_run("rf1"), _run("rf2")], 7, {}, "/hub")
    assert result["new"] == 2 and store.hub_cursor("a") == 7 and store.hub_cursor("b") == 0
    # a page that breaks half-way (the second run lacks its key) leaves neither its first run nor its cursor
    with pytest.raises(KeyError):
        store.hub_apply("a", [_run("rf3"), {"name": "broken"}], 9, {}, "/hub")
    assert [r["origin_key"] for r in _pulled(store)] == ["rf1", "rf2"] and store.hub_cursor("a") == 7


def test_applying_a_page_again_or_a_later_state_upserts(store: Store) -> None:
    store.hub_apply("a", [_run("rf1")], 3, {}, "/hub")
    store.hub_apply("a", [_run("rf1")], 3, {}, "/hub")  # the page again (a crash before the answer)
    store.hub_apply("b", [_run("rf1")], 5, {"lab/orbi": "core/orbi-b"}, "/hub")  # the same key elsewhere
    assert store.hub_apply("a", [_run("rf1", flagged=True, values={"native": {"MS1 scans": 11.0}})], 4, {}, "/hub")["new"] == 0
    rows = _pulled(store)
    assert [(r["origin"], r["origin_key"], r["flagged"]) for r in rows] == [("a", "rf1", True), ("b", "rf1", False)]
    slugs = {r["origin"]: store.pipeline(r["pipeline_id"])["project_slug"] + "/" + store.pipeline(r["pipeline_id"])["slug"]
             for r in rows}
    assert slugs == {"a": "lab/orbi", "b": "core/orbi-b"}
    rid = next(r for r in store.rows("SELECT id, origin FROM runs") if r["origin"] == "a")["id"]
    assert store.qc_values([rid]) == [(rid, "native", "MS1 scans", 11.0)]


def test_hub_config() -> None:
    cfg = config_from_dict({"hub": {"interval_seconds": 5, "source": [
        {"name": "orbi-1", "url": "http://10.0.0.5:8000/", "token": "t"},
        {"name": "orbi-2", "url": "https://b:8000", "token_file": "/etc/t", "pipelines": {"x/y": "core/y-2"}}]}})
    assert cfg.hub.enabled and cfg.hub.interval_seconds == 5.0
    assert [(s.name, s.url) for s in cfg.hub.sources] == [("orbi-1", "http://10.0.0.5:8000"), ("orbi-2", "https://b:8000")]
    assert cfg.hub.sources[1].pipelines == (("x/y", "core/y-2"),)
    assert not config_from_dict({}).hub.enabled


@pytest.mark.parametrize(("hub", "where"), [
    ({"source": [{"name": "a", "url": "http://h:1"}]}, "token"),
    ({"source": [{"name": "a", "url": "http://h:1", "token": "t", "token_file": "/f"}]}, "token"),
    ({"source": [{"name": "a", "url": "ftp://h", "token": "t"}]}, "url"),
    ({"source": [{"name": "", "url": "http://h:1", "token": "t"}]}, "name"),
    ({"source": [{"name": "a", "url": "http://h:1", "token": "t"}] * 2}, "same name"),
    ({"source": [{"name": "a", "url": "http://h:1", "token": "t", "pipelines": {"x/y": "Bad Slug"}}]}, "pipelines"),
    ({"interval_seconds": 0}, "interval_seconds"),
    ({"batch": 5000}, "batch"),
    ({"every": 3}, "every"),
])
def test_bad_hub_config_names_the_key(hub: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        config_from_dict({"hub": hub})
