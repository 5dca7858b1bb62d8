"""The read routes' answer cache on its own (service/answercache.py): real files in a folder of
the test's, kept per data version, bounded on disk, the least recently used answers deleted."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from qcdaemon.service.answercache import AnswerCache


def _read(cache: AnswerCache, key: str, version: int) -> bytes | None:
    fh = cache.open(key, version)
    if fh is None:
        return None
    with fh:
        return gzip.decompress(fh.read())


def test_an_answer_is_kept_for_its_version_only(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "answers")
    body = b'{"a":[1,2,3]}' * 1000
    cache.remember("k", 7, body)
    assert _read(cache, "k", 7) == body
    assert _read(cache, "k", 8) is None and _read(cache, "other", 7) is None
    assert (cache.hits, cache.misses) == (1, 2)
    cache.remember("k", 8, b"[]")  # the newer answer replaces the older, and its file goes
    assert _read(cache, "k", 8) == b"[]" and _read(cache, "k", 7) is None
    assert len(list((tmp_path / "answers").iterdir())) == 1


def test_files_stay_within_the_bound_least_recently_used_first(tmp_path: Path) -> None:
    folder = tmp_path / "answers"
    cache = AnswerCache(folder, max_bytes=64 * 1024)
    bodies = {f"k{i}": os.urandom(20 * 1024) for i in range(6)}  # random: 20 KB compressed too
    for i, (key, body) in enumerate(bodies.items()):
        cache.remember(key, 1, body)
        if i == 2:
            assert _read(cache, "k0", 1) == bodies["k0"]  # k0 used: k1 is now the oldest
    on_disk = sum(p.stat().st_size for p in folder.iterdir())
    assert on_disk == cache.size <= 64 * 1024
    kept = {k for k in bodies if _read(cache, k, 1) is not None}
    assert "k5" in kept and "k1" not in kept and len(kept) == len(list(folder.iterdir())) < 6


def test_an_answer_over_half_the_bound_is_not_kept(tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "answers", max_bytes=64 * 1024)
    cache.remember("big", 1, os.urandom(40 * 1024))
    assert _read(cache, "big", 1) is None and cache.size == 0
    assert not list((tmp_path / "answers").iterdir())  # no file left behind either


def test_a_new_cache_empties_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "answers"
    AnswerCache(folder).remember("k", 1, b"{}")
    assert list(folder.iterdir())
    fresh = AnswerCache(folder)  # the daemon started again: versions of the last process are void
    assert not folder.exists() or not list(folder.iterdir())
    assert _read(fresh, "k", 1) is None


def test_a_file_gone_from_under_the_cache_is_a_miss(tmp_path: Path) -> None:
    folder = tmp_path / "answers"
    cache = AnswerCache(folder)
    cache.remember("k", 1, b"{}")
    for p in folder.iterdir():
        p.unlink()
    assert _read(cache, "k", 1) is None
