"""The Sage fragment index of one FASTA + parameter set: built once, reused, rebuilt when either changes.

The key is sha256(sha256(FASTA bytes) + canonical JSON of the digest parameters), see
:meth:`SearchParams.database_key`.  Built databases are kept in memory per key for the life of the
process (a long-lived worker or a benchmark reuses them), and every build leaves a manifest under
``<cache_dir>/<key>/manifest.json`` (written atomically: a temporary file renamed over the old one)
with the digest's size, build time and peak memory.  sagepy 0.4.6 offers no way to write an
``IndexedDatabase`` to disk and read it back (the object is not picklable, and its constructor takes
one Python object per fragment: 23.5 million for the yeast proteome, measured at 1.9x the build time
and 6x its memory, ``scripts/bench_search.py --index-routes``; docs/search.md), so a new process
builds the index again (the engine's warm search worker, ``qcdaemon.search.worker``, is such a
long-lived process: it holds one database between runs); the manifest counts the builds of its key
(``builds``), lets a process refuse up front a database known to need more memory
than ``memory_mb`` allows, and records what was built from which FASTA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import SearchError
from .fasta import Fasta
from .params import ENZYMES, SearchParams
from .sagepy_api import quiet, sagepy

try:
    import resource
except ImportError:  # Windows has no resource module
    resource = None  # type: ignore[assignment]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DatabaseInfo:
    key: str
    fasta_name: str
    fasta_sha256: str
    proteins: int
    decoys_in_fasta: int
    peptides: int  # target + decoy peptides (incl. modified forms) in the index
    fragments: int
    build_seconds: float
    peak_rss_mb: float | None  # the process's peak resident memory after the build (POSIX)
    sagepy_version: str
    built_at: str
    reused: bool = False  # True when this process already held the database


class DatabaseCache:
    """Sage databases per key: in memory for this process, manifests on disk under ``cache_dir``."""

    def __init__(self, cache_dir: Path | str | None = None, *, keep: int = 8, hold: int = 1) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.keep = keep  # manifests kept on disk
        self.hold = hold  # databases held in memory (each can take GBs)
        self._held: dict[str, tuple[Any, DatabaseInfo]] = {}
        self._lock = threading.Lock()
        self.builds = 0  # databases this process built (a warm worker reports it)
        self.last: DatabaseInfo | None = None  # what the last get() returned

    def get(self, fasta: Fasta, params: SearchParams) -> tuple[Any, DatabaseInfo]:
        key = params.database_key(fasta.data)
        with self._lock:
            if key in self._held:
                db, info = self._held[key]
                self.last = _replace(info, reused=True)
                return db, self.last
            self._refuse_over_cap(key, params)
            while len(self._held) >= self.hold:  # drop the oldest before building: memory stays bounded
                self._held.pop(next(iter(self._held)))
            db, info = _build(key, fasta, params)
            self.builds += 1
            self._held[key] = (db, info)
            self._write_manifest(info, params)
            self.last = info
            return db, info

    def manifest(self, key: str) -> dict[str, Any] | None:
        if self.cache_dir is None:
            return None
        try:
            return json.loads((self.cache_dir / key / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def _refuse_over_cap(self, key: str, params: SearchParams) -> None:
        known = self.manifest(key) or {}
        need = known.get("database", {}).get("peak_rss_mb")
        if params.memory_mb and need and need > params.memory_mb:
            raise SearchError(
                f"the search database of this FASTA and parameter set needed {need:.0f} MB when last built, over the "
                f"configured cap of {params.memory_mb} MB (raise [search] memory_mb, or use fewer missed cleavages or "
                "variable modifications)"
            )

    def _write_manifest(self, info: DatabaseInfo, params: SearchParams) -> None:
        if self.cache_dir is None:
            return
        folder = self.cache_dir / info.key
        folder.mkdir(parents=True, exist_ok=True)
        builds = int((self.manifest(info.key) or {}).get("builds", 0)) + 1  # every build of this key, by any process
        doc = {"database": asdict(info) | {"reused": False}, "parameters": params.database_part(), "builds": builds}
        _write_atomically(folder / MANIFEST, json.dumps(doc, indent=2, sort_keys=True))
        self._prune(keep_key=info.key)

    def _prune(self, keep_key: str) -> None:
        """Keep the ``keep`` most recently written entries (a FASTA update leaves the old one behind)."""
        assert self.cache_dir is not None
        entries = [p for p in self.cache_dir.iterdir() if (p / MANIFEST).is_file()]
        entries.sort(key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)
        for old in entries[self.keep:]:
            if old.name != keep_key:
                shutil.rmtree(old, ignore_errors=True)


def _replace(info: DatabaseInfo, **changes: Any) -> DatabaseInfo:
    return DatabaseInfo(**(asdict(info) | changes))


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _build(key: str, fasta: Fasta, params: SearchParams) -> tuple[Any, DatabaseInfo]:
    sp = sagepy()
    cleave_at, restrict, c_terminal = ENZYMES[params.enzyme]
    enzyme = sp.EnzymeBuilder(
        missed_cleavages=params.missed_cleavages, min_len=params.min_length, max_len=params.max_length,
        cleave_at=cleave_at, restrict=restrict or None, c_terminal=c_terminal, semi_enzymatic=False,
    )
    started = time.perf_counter()
    try:
        with quiet():
            config = sp.SageSearchConfiguration(
                fasta=fasta.text, enzyme_builder=enzyme,
                peptide_min_mass=params.min_peptide_mass, peptide_max_mass=params.max_peptide_mass,
                static_mods=dict(params.fixed_mods) or None,
                variable_mods={k: list(v) for k, v in params.variable_mods.items()} or None,
                max_variable_mods=params.max_variable_mods, decoy_tag=params.decoy_tag,
                generate_decoys=fasta.decoys == 0, bucket_size=16384,
            )
        with quiet():
            db = config.generate_indexed_database()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        raise SearchError(f"Sage could not build the database from {fasta.path.name}: {exc}") from None
    seconds = time.perf_counter() - started
    ptr = db.get_py_ptr()
    info = DatabaseInfo(
        key=key, fasta_name=fasta.path.name, fasta_sha256=_sha256(fasta.data), proteins=fasta.proteins,
        decoys_in_fasta=fasta.decoys, peptides=int(ptr.num_peptides), fragments=int(ptr.num_fragments),
        build_seconds=round(seconds, 3), peak_rss_mb=peak_rss_mb(), sagepy_version=sp.version,
        built_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    )
    return db, info


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def peak_rss_mb() -> float | None:
    """This process's peak resident set size in MB (None where the platform does not say)."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
