"""The search database cache, the parameters, and the TMT reporter extraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qcdaemon.errors import ConfigError
from qcdaemon.search import SearchError, SearchParams
from qcdaemon.search.database import MANIFEST, DatabaseCache
from qcdaemon.search.fasta import read_fasta
from qcdaemon.search.tmt import CHANNELS, reporter_intensities

from .data import BSA_FASTA


def test_built_once_per_fasta_and_parameters_and_rebuilt_when_either_changes(tmp_path: Path) -> None:
    cache = DatabaseCache(tmp_path / "cache", hold=2)
    fasta = read_fasta(BSA_FASTA)
    params = SearchParams()
    db1, info1 = cache.get(fasta, params)
    db2, info2 = cache.get(fasta, params.replace(fdr=0.05, threads=1, precursor_tolerance_ppm=5))  # scoring only
    assert db2 is db1 and info2.reused and info2.key == info1.key and not info1.reused
    manifest = json.loads((tmp_path / "cache" / info1.key / MANIFEST).read_text())
    assert manifest["database"]["peptides"] == info1.peptides > 0
    assert manifest["database"]["fasta_sha256"] == info1.fasta_sha256
    assert manifest["parameters"]["missed_cleavages"] == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # written atomically

    _, more = cache.get(fasta, params.replace(missed_cleavages=2))
    assert more.key != info1.key and not more.reused and more.peptides > info1.peptides
    changed = tmp_path / "bsa.fasta"
    changed.write_text(BSA_FASTA.read_text().replace("MKWVTF", "MKWVTW"))
    _, other = cache.get(read_fasta(changed), params)
    assert other.key not in (info1.key, more.key) and not other.reused
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {info1.key, more.key, other.key}


def test_a_new_process_refuses_a_database_known_to_exceed_the_memory_cap(tmp_path: Path) -> None:
    fasta = read_fasta(BSA_FASTA)
    _, info = DatabaseCache(tmp_path).get(fasta, SearchParams())
    path = tmp_path / info.key / MANIFEST
    doc = json.loads(path.read_text())
    doc["database"]["peak_rss_mb"] = 4000.0  # as if the last build had needed 4 GB
    path.write_text(json.dumps(doc))
    with pytest.raises(SearchError, match="over the configured cap of 1000 MB"):
        DatabaseCache(tmp_path).get(fasta, SearchParams(memory_mb=1000))
    DatabaseCache(tmp_path).get(fasta, SearchParams(memory_mb=8000))  # under the cap: builds


def test_old_manifests_are_pruned(tmp_path: Path) -> None:
    cache = DatabaseCache(tmp_path, keep=2)
    fasta = read_fasta(BSA_FASTA)
    keys = [cache.get(fasta, SearchParams(missed_cleavages=n))[1].key for n in (0, 1, 2)]
    assert {p.name for p in tmp_path.iterdir()} == set(keys[1:])


@pytest.mark.parametrize("bad, where", [
    ({"enzyme": "pepsin"}, "enzyme"), ({"fdr": 1.5}, "fdr"), ({"fdr": 0}, "fdr"),
    ({"missed_cleavages": 9}, "missed_cleavages"), ({"tmt": "tmt7"}, "tmt"),
    ({"fixed_mods": {"C": "Carbamidomethylation"}}, "unknown modification"),
    ({"variable_mods": {"B": ["Oxidation"]}}, "bad modification site"),
    ({"fragment_unit": "da"}, "fragment_tolerance"), ({"speed": 3}, "unknown parameter"),
])
def test_bad_parameters_are_config_errors(bad: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        SearchParams.from_mapping(bad)


def test_parameters_normalise_modifications_and_add_tmt_labels() -> None:
    p = SearchParams.from_mapping({"fixed_mods": {"C": "Carbamidomethyl"}, "variable_mods": {"M": "UNIMOD:35"},
                                   "tmt": "TMT11plex"})
    assert p.tmt == "tmt11"
    assert p.fixed_mods == {"C": "[UNIMOD:4]", "K": "[UNIMOD:737]", "^": "[UNIMOD:737]"}
    assert p.variable_mods == {"M": ("[UNIMOD:35]",)}
    pro = SearchParams(tmt="tmt16")
    assert pro.fixed_mods["K"] == "[UNIMOD:2016]"  # TMTpro
    data = read_fasta(BSA_FASTA).data
    assert p.database_key(data) != SearchParams().database_key(data)
    assert SearchParams(threads=1, fdr=0.05).database_key(data) == SearchParams().database_key(data)


def test_tmt_reporters_take_the_peak_of_each_channel_and_not_its_neighbour() -> None:
    channels = CHANNELS["tmt11"]
    assert len(channels) == 11 and len(CHANNELS["tmt16"]) == 16 and len(CHANNELS["tmt18"]) == 18
    # peaks at 127N (+1 mDa) and 127C (-2 mDa), a stray peak between them, nothing at 131C
    mz = np.array([126.127726, 127.125761, 127.128, 127.129081, 128.128116, 131.138180, 131.150])
    intensity = np.array([10.0, 20.0, 999.0, 30.0, 40.0, 50.0, 60.0])
    out = dict(zip(channels, reporter_intensities("tmt11", mz, intensity)))
    assert out["126"] == 10 and out["127N"] == 20 and out["127C"] == 30 and out["128N"] == 40
    assert out["131N"] == 50 and out["131C"] == 0 and out["129N"] == 0
    assert reporter_intensities("tmt6", None, None).tolist() == [0.0] * 6


def test_every_value_of_a_search_has_catalogue_metadata(yeast_5pct) -> None:
    from qcdaemon.search.catalogue import metric
    from qcdaemon.search.metrics import search_values

    names = [*search_values(yeast_5pct), "SearchTmtMissingChannels", "SearchTmtMissingValuesPct",
             "SearchTmt127NIntensity"]
    for name in names:
        entry = metric(name)
        assert entry is not None, name
        assert entry.direction in ("higher", "lower", "zero", "none")
    assert metric("SearchPsms").term == ("MS:1003251", "count of identified spectra")
    assert metric("SearchPrecursorErrorMedianPpm").term is None  # MS:4000178 is the mean, not the median
    assert metric("NotASearchValue") is None


def test_an_unlabelled_sample_shows_every_tmt_channel_missing(yeast_5pct) -> None:
    """The yeast digest carries no TMT label, so no PSM spectrum holds a reporter ion (real spectra)."""
    import dataclasses

    from qcdaemon.search.metrics import search_values

    as_tmt = dataclasses.replace(yeast_5pct, params=yeast_5pct.params.replace(tmt="tmt11"))
    values = search_values(as_tmt)
    assert values["SearchTmtMissingChannels"] == 11 and values["SearchTmtMissingValuesPct"] == 100.0
    assert values["SearchTmt127NIntensity"] == 0.0
    assert "SearchTmtMissingChannels" not in search_values(yeast_5pct)  # only for TMT pipelines


def test_sagepy_still_cannot_serialise_its_index(tmp_path: Path) -> None:
    """Why only a manifest is kept on disk (docs/search.md, "Why the index is not cached on disk").

    sagepy 0.4.6, the newest release, neither pickles an IndexedDatabase nor offers a save/load;
    its only other constructor takes one Python object per fragment, which is slower than a build
    (measured by ``scripts/bench_search.py --index-routes``).  When a sagepy release makes this
    test fail, an on-disk index under the cache folder becomes possible.
    """
    import pickle

    db, _ = DatabaseCache(tmp_path).get(read_fasta(BSA_FASTA), SearchParams())
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(db.get_py_ptr())
    names = {n.lower() for n in dir(db.get_py_ptr())}
    assert not names & {"save", "load", "write", "read", "to_bytes", "from_bytes", "serialize", "__setstate__"}
