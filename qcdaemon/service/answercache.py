"""The read routes' answers (``/api/qc-data``, ``/api/protein-names``, ``/api/protein-groups``),
kept as gzip files under the data directory until the store's next write.

Each answer is a pure function of the pipeline's runs, values, verdicts and protein groups (so
``protein_groups`` is no quiet table: ``store/base.py``); like the chart cache
(``service/chartcache.py``), an answer computed at data version *v* is served only while the
version is still *v*, the version read before computing.  Dashboards ask the same questions again
and again between two runs; a hit skips the query and the serialisation (at 10,000 runs 250-450 ms
for ``/api/qc-data``, about a second for protein groups of ten proteins).

The answers are files, not memory: at 10,000 runs the protein groups of ten proteins are 14 MB
compressed (38 MB of JSON), which in the daemon's heap kept its RSS 25 MB higher after the heavy
requests (bench/bench.py), and a file is read back a chunk at a time.  A hit goes out as it is to
a client that accepts gzip (browsers, the original's ``requests`` client) and is decompressed a
chunk at a time for one that does not.  Compressing (level 1) runs after the answer has gone, on a
thread of its own, so a miss costs no more than without the cache.  The files of the least
recently used answers are deleted once ``max_bytes`` is exceeded; the folder is emptied when the
daemon starts (versions do not outlive the process).
"""

from __future__ import annotations

import itertools
import os
import shutil
import zlib
from collections.abc import Hashable
from pathlib import Path
from typing import BinaryIO

from qcdaemon.service.chartcache import VersionedLru

MAX_BYTES = 64 * 1024 * 1024  # on disk, compressed: a few dozen answers of 10,000 runs
_NAMES = itertools.count(1)


class AnswerCache(VersionedLru[Path]):
    """LRU of ``key -> (data version, gzip file)``, at most ``max_bytes`` of files in ``folder``;
    an answer larger than half of it is not kept."""

    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(max_bytes)
        self.folder = folder
        self._doomed: list[Path] = []  # evicted files that could not be deleted yet (open on Windows)
        shutil.rmtree(folder, ignore_errors=True)

    def open(self, key: Hashable, version: int) -> BinaryIO | None:
        """The kept answer's gzip file, open for reading, or None (no answer of this version, or
        its file went meanwhile).  Blocking: call it off the event loop."""
        path = self._find(key, version)
        fh = None
        if path is not None:
            try:
                fh = open(path, "rb")  # noqa: SIM115 - the caller reads and closes it
            except OSError:
                pass
        self._count(fh is not None)
        return fh

    def remember(self, key: Hashable, version: int, body: bytes) -> None:
        """Keep ``body`` (compressed into a file of its own) as the answer to ``key`` at ``version``."""
        if len(body) // 4 > self.max_bytes:  # even compressed it could not be kept
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.folder / f"{next(_NAMES)}.json.gz"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            # one deflate over the whole body (without the GIL), written as it comes: gzip.compress
            # joins header, data and trailer into one more 14 MB copy holding the GIL
            deflate = zlib.compressobj(1, zlib.DEFLATED, 31)
            fh.write(deflate.compress(body))
            fh.write(deflate.flush())
        size = tmp.stat().st_size
        if size > self.max_bytes // 2:
            self._delete([tmp])
            return
        os.replace(tmp, path)
        gone = self._keep(key, version, path, size)
        with self._lock:
            gone += self._doomed
            self._doomed = []
        self._delete(gone)

    def _delete(self, paths: list[Path]) -> None:
        kept = []
        for p in paths:
            try:
                p.unlink(missing_ok=True)
            except OSError:  # Windows: a file still being sent cannot be deleted; next time
                kept.append(p)
        if kept:
            with self._lock:
                self._doomed += kept
