"""Real inputs of the search tests (tests/data/search/) and one search of the yeast file per session."""

from __future__ import annotations

import pytest

from qcdaemon.search.database import DatabaseCache
from qcdaemon.search.params import SearchParams
from qcdaemon.search.sage import SearchResult, run_search

from .data import YEAST_FASTA, YEAST_RAW


@pytest.fixture(scope="session")
def db_cache(tmp_path_factory: pytest.TempPathFactory) -> DatabaseCache:
    """One cache for the session, so the yeast index (about 5 s, 0.6 GB) is built once."""
    return DatabaseCache(tmp_path_factory.mktemp("search-cache"), hold=3)


@pytest.fixture(scope="session")
def yeast_5pct(db_cache: DatabaseCache) -> SearchResult:
    return run_search(YEAST_RAW, YEAST_FASTA, SearchParams(fdr=0.05), cache=db_cache)
