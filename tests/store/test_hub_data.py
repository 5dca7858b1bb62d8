"""The hub's second half in real DuckDB files (issue 17): per-run data moved page by page through
the store's public methods gives the same answers on the hub as at its origin, tombstones come in
the change feed in their turn, and a judgement given on the hub survives the origin's changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import REPO

from qcdaemon.config import config_from_dict
from qcdaemon.errors import ConfigError
from qcdaemon.store import Store
from qcdaemon.tools.maxquant_parse import parse_protein_groups

EX0 = REPO / "tests" / "data" / "maxquant" / "tmt11" / "example-0" / "proteinGroups.txt.gz"


def _world(path: Path) -> tuple[Store, int]:
    store = Store(path)
    uid = store.create_user("lab@example.org", None, True)
    pid = store.create_project("Lab", "lab", "", uid)
    pl = store.create_pipeline(pid, "Orbi", "orbi", "/tmp/orbi", rawtools_args="")["id"]
    return store, pl


@pytest.fixture
def pair(tmp_path: Path) -> Any:
    src, pl = _world(tmp_path / "src.duckdb")
    hub = Store(tmp_path / "hub.duckdb")
    yield src, pl, hub
    src.close()
    hub.close()


def _pull(src: Store, hub: Store, since: int = 0, limit: int = 1000) -> dict[str, Any]:
    page = src.changes_since(since, limit, None)
    hub.hub_apply("a", page["runs"], page["next"], {}, "/hub", page["deleted"])
    return page


def _copy_data(src: Store, hub: Store, src_id: int, hub_id: int, limit: int) -> set[str]:
    """What the puller does over HTTP, page by page (the JSON round trip included)."""
    prints: set[str] = set()
    hub.put_protein_groups(hub_id, [])
    psms: list[Any] = []
    chroms: dict[str, Any] = {}
    for part in ("protein_groups", "psms", "chromatograms"):
        offset, more = 0, True
        while more:
            page = json.loads(json.dumps(src.run_data_page(src_id, part, offset, limit), allow_nan=False))
            prints.add(page["data"])
            if part == "protein_groups":
                assert len(page["rows"]) <= limit
                hub.hub_put_groups(hub_id, page["rows"])
            elif part == "psms":
                psms.append(page["rows"])
            else:
                chroms.update(page["rows"])
            offset, more = page["next"], page["more"]
    hub.hub_put_psms(hub_id, psms)
    hub.hub_put_chromatograms(hub_id, chroms)
    return prints


def test_protein_groups_psms_and_chromatograms_arrive_equal(pair: Any) -> None:
    src, pl, hub = pair
    groups = parse_protein_groups(EX0)
    assert len(groups) > 1000
    rid = src.create_run(pl, "a.raw", source="watch", owner_id=None, state="done", stages=["native"])["id"]
    src.put_protein_groups(rid, groups)
    # a PSM table with a NaN and a null: JSON has no NaN, the hub must still store NaN
    psms = src.psms(-1).schema
    cols: dict[str, list[Any]] = {f.name: [None, None, None] for f in psms}
    cols.update(scan=[1, 2, 3], rt=[1.5, float("nan"), 3.0], peptide=["PEPTIDE", "PEPT[+16]IDE", None],
                decoy=[False, True, False])
    src.put_psms(rid, pa.Table.from_pydict(cols, schema=psms))
    src.put_chromatograms(rid, {"TIC": [(0.5, 10.0), (1.0, 12.5)], "BPC": [(0.5, 3.0)]})
    _pull(src, hub)
    [pending] = hub.hub_pending("a")
    assert pending["origin_key"] == f"rf{rid}"
    prints = _copy_data(src, hub, rid, pending["id"], 100)  # eleven pages of groups
    assert len(prints) == 1
    hub.hub_data_applied(pending["id"], prints.pop())
    assert hub.hub_pending("a") == []
    h = pending["id"]
    for rc, rr in ((False, False), (True, True)):
        assert hub.protein_names_json([h], rc, rr) == src.protein_names_json([rid], rc, rr)
    names = [g.majority_protein_ids for g in groups[::37]]
    cols_asked = ["Score", "Intensity", "Fasta headers", "Reporter intensity corrected 3", "Peptides", "id"]
    assert hub.protein_groups_json([(h, "a")], names, cols_asked) == src.protein_groups_json([(rid, "a")], names,
                                                                                            cols_asked)
    got, want = hub.psms(h), src.psms(rid)
    assert got.schema == want.schema and got.to_pylist()[0] == want.to_pylist()[0]
    assert str(got.column("rt")[1]) == "nan" and got.column("peptide").to_pylist() == want.column("peptide").to_pylist()
    assert hub.chromatograms(h) == src.chromatograms(rid)
    # a stage ending changes the fingerprint: the run is pending again at its next change
    src.finish_stage(rid, "native", "done")
    _pull(src, hub)
    assert [p["id"] for p in hub.hub_pending("a")] == [h]


def test_a_deletion_comes_in_its_turn_and_once(pair: Any) -> None:
    src, pl, hub = pair
    r1 = src.create_run(pl, "a.raw", source="watch", owner_id=None, state="done")["id"]
    r2 = src.create_run(pl, "b.raw", source="watch", owner_id=None, state="done")["id"]
    first = _pull(src, hub)
    assert len(hub.rows("SELECT id FROM runs WHERE origin = 'a'")) == 2
    src.delete_run(r1)
    src.put_qc_values(r2, "native", {"X": 1.0})
    page = src.changes_since(first["next"], 1, None)  # one change a page: the tombstone first
    assert page["deleted"] == [{"run_key": f"rf{r1}", "change": page["next"]}] and page["runs"] == [] and page["more"]
    hub.hub_apply("a", page["runs"], page["next"], {}, "/hub", page["deleted"])
    assert [r["origin_key"] for r in hub.rows("SELECT origin_key FROM runs WHERE origin = 'a'")] == [f"rf{r2}"]
    # the page again (a hub killed before it saw its answer) deletes nothing more
    assert hub.hub_apply("a", [], page["next"], {}, "/hub", page["deleted"])["deleted"] == 0
    rest = src.changes_since(page["next"], 10, None)
    assert [r["run_key"] for r in rest["runs"]] == [f"rf{r2}"] and rest["deleted"] == [] and not rest["more"]
    # the hub's own feed carries the deletion on (a hub of hubs), scoped by project
    assert len(hub.changes_since(0, 10, None)["deleted"]) == 1 and hub.changes_since(0, 10, [])["deleted"] == []


def test_a_judgement_given_on_the_hub_stays(pair: Any) -> None:
    src, pl, hub = pair
    rid = src.create_run(pl, "a.raw", source="watch", owner_id=None, state="done")["id"]
    page = _pull(src, hub)
    [h] = [r["id"] for r in hub.rows("SELECT id FROM runs WHERE origin = 'a'")]
    hub.set_run_fields([h], {"flagged": True})  # the hub's own API writes it so
    src.set_run_fields([rid], {"use_downstream": False})  # the instrument rejects it
    page = _pull(src, hub, page["next"])
    row = hub.run(h)
    assert row["flagged"] is True and row["use_downstream"] is False  # the hub's flag, the origin's reject
    src.set_run_fields([rid], {"flagged": True})
    page = _pull(src, hub, page["next"])
    src.set_run_fields([rid], {"flagged": False})  # the instrument unflags: the hub's flag stays
    page = _pull(src, hub, page["next"])
    assert hub.run(h)["flagged"] is True
    own = hub.changes_since(0, 10, None)["runs"][0]
    assert own["flagged"] is True and own["origin_flagged"] is False  # both shown in the hub's feed


def test_data_batch_config() -> None:
    src = {"name": "orbi-1", "url": "http://10.0.0.5:8000", "token": "t"}
    assert config_from_dict({"hub": {"source": [src]}}).hub.data_batch == 500
    assert config_from_dict({"hub": {"data_batch": 50, "source": [src]}}).hub.data_batch == 50
    for bad in (0, 1001, "x", True):
        with pytest.raises(ConfigError, match="hub.data_batch"):
            config_from_dict({"hub": {"data_batch": bad, "source": [src]}})
