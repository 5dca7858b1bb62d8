"""Identification QC: search a run's MS2 spectra with Sage (the ``sagepy`` package) against a FASTA.

Pure computation on files: no aiohttp, no duckdb.  The engine runs :mod:`qcdaemon.search.cli` in a
low-priority child process; ``qcdaemon parse search FILE.raw --fasta F`` prints the same values.

- :mod:`.params`   search parameters (enzyme, modifications incl. TMT labels, tolerances, FDR)
- :mod:`.fasta`    reading and checking the protein database (plain or gzipped)
- :mod:`.spectra`  MS2 spectra straight from the RAW file (opentfraw)
- :mod:`.database` the Sage fragment index, keyed by FASTA bytes + parameters, with an on-disk manifest
- :mod:`.sage`     the search and target-decoy FDR (Sage's own q-values)
- :mod:`.metrics`  the identification QC values and the per-run PSM table (pyarrow)
- :mod:`.tmt`      reporter-ion intensities and missing channels for TMT pipelines
"""

from .errors import CorruptFasta, NoMs2Spectra, SearchError, SearchUnavailable
from .params import SearchParams

__all__ = ("CorruptFasta", "NoMs2Spectra", "SearchError", "SearchParams", "SearchUnavailable")
