"""The search stage's own errors; each names what is wrong with which input."""

from __future__ import annotations

from ..errors import ParseError, QcdaemonError


class SearchError(QcdaemonError):
    """The identification search could not run; the stage fails with this reason."""


class SearchUnavailable(SearchError):
    """The search engine (the optional ``sagepy`` package) is not installed."""


class NoMs2Spectra(SearchError):
    """The RAW file holds no MS2 spectrum with a precursor, so there is nothing to identify."""


class CorruptFasta(SearchError, ParseError):
    """The protein database is not a readable FASTA file (binary, no records, bad residues)."""
