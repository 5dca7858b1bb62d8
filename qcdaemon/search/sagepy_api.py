"""The one place that touches the optional ``sagepy`` package (Sage's Python bindings, MIT licence).

``sagepy`` is imported when first needed, so qcdaemon installs and runs without it (the search stage
then reports :class:`SearchUnavailable`).  Sage parallelises with rayon, whose global pool reads
``RAYON_NUM_THREADS`` once, on first use: :func:`limit_threads` sets it before that.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from types import SimpleNamespace

from .errors import SearchUnavailable

_loaded: SimpleNamespace | None = None


def unavailable_reason() -> str | None:
    """Why the search cannot run in this installation (None when sagepy is importable); cheap, no import."""
    if importlib.util.find_spec("sagepy") is None:
        return "the search engine is not installed (pip install 'qcdaemon[search]')"
    return None


def limit_threads(threads: int) -> None:
    """Cap Sage's rayon pool; effective only before the first Sage call in this process."""
    if _loaded is None:
        os.environ["RAYON_NUM_THREADS"] = str(max(int(threads), 1))


def sagepy() -> SimpleNamespace:
    """The sagepy names the search uses; SearchUnavailable when the package is missing."""
    global _loaded
    if _loaded is None:
        try:
            with quiet():
                core = importlib.import_module("sagepy.core")
                fdr = importlib.import_module("sagepy.core.fdr")
        except ImportError as exc:
            raise SearchUnavailable(
                f"the identification search needs the optional package sagepy ({exc}); install it with "
                "pip install 'qcdaemon[search]'"
            ) from None
        _loaded = SimpleNamespace(
            EnzymeBuilder=core.EnzymeBuilder, SageSearchConfiguration=core.SageSearchConfiguration,
            Precursor=core.Precursor, RawSpectrum=core.RawSpectrum, SpectrumProcessor=core.SpectrumProcessor,
            Representation=core.Representation, Tolerance=core.Tolerance, Scorer=core.Scorer,
            sage_fdr_psm=fdr.sage_fdr_psm, version=importlib.metadata.version("sagepy"),
        )
    return _loaded


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """sagepy prints notes to stdout and warns on empty modification sets: keep stdout for our JSON."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        yield
