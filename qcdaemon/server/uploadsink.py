"""Where an upload's bytes go: a ``.part`` file written and hashed off the event loop (issue 13).

Each batch the upload receives is hashed (SHA-256) and written by two executor jobs at once: both
run without the GIL, so the batch costs the longer of the two, not their sum.  While the file
grows, a thread of the sink's own asks the kernel to write it out (``fdatasync`` each time another
``WRITEBACK`` bytes have been written and the previous one has returned), so the disk works while
the upload still arrives and the final ``fsync`` waits only for the last part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from qcdaemon.errors import BadRequest, TooLarge
from qcdaemon.rawfile.magic import RAW_MAGIC_LEN, looks_like_thermo_raw

WRITEBACK = 64 << 20  # bytes written between two early writebacks
_datasync = getattr(os, "fdatasync", os.fsync)  # Windows has no fdatasync


class Sink:
    """A temporary file of an upload: ``accept`` (on the loop: limits and the RAW header), then
    ``hash`` and ``write`` of the same batch, at once, in executor threads; ``finish`` or ``discard``."""

    def __init__(self, path: Path, limit: int, name: str) -> None:
        self.path = path
        self.limit = limit
        self.name = name
        self.size = 0
        self.head = b""
        self.sha = hashlib.sha256()
        self.written = self.synced = 0
        self._sync: Future[None] | None = None
        self._syncer = ThreadPoolExecutor(1, thread_name_prefix="upload-writeback")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "wb")  # noqa: SIM115 (open for the upload's lifetime; closed by finish()/discard())

    def accept(self, chunks: Sequence[bytes]) -> None:
        """Count the batch against the limit and check the file's first bytes (cheap: on the loop)."""
        self.size += sum(map(len, chunks))
        if self.size > self.limit:
            raise TooLarge(f"orig_file: the upload is larger than the limit of {self.limit // (1 << 20)} MiB")
        for chunk in chunks:
            if len(self.head) >= RAW_MAGIC_LEN:
                break
            self.head += chunk[: RAW_MAGIC_LEN - len(self.head)]
            if len(self.head) >= RAW_MAGIC_LEN:
                self.check_head()  # refuse a non-RAW file at its first bytes, not after gigabytes

    def hash(self, chunks: Sequence[bytes]) -> None:
        for chunk in chunks:
            self.sha.update(chunk)

    def write(self, chunks: Sequence[bytes]) -> None:
        self.f.writelines(chunks)
        self.f.flush()
        self.written += sum(map(len, chunks))
        if self.written - self.synced >= WRITEBACK and (self._sync is None or self._sync.done()):
            if self._sync is not None:
                self._sync.result()  # an error of the writeback (a full disk) fails the upload now
            self.synced = self.written
            self._sync = self._syncer.submit(_datasync, self.f.fileno())

    def check_head(self) -> None:
        if not looks_like_thermo_raw(self.head):
            raise BadRequest(f"orig_file: {self.name} is not a Thermo RAW file (its first bytes do not match)")

    def finish(self) -> None:
        self.f.flush()
        self._wait_sync()
        os.fsync(self.f.fileno())
        self.f.close()
        self._syncer.shutdown()

    def discard(self) -> None:
        try:
            with contextlib.suppress(OSError):  # the upload failed already; its error is the one reported
                self._wait_sync()
        finally:
            self._syncer.shutdown()
            if not self.f.closed:
                with contextlib.suppress(OSError):  # bytes that cannot be written (a full disk): the file goes
                    self.f.close()
            self.path.unlink(missing_ok=True)

    def _wait_sync(self) -> None:
        if self._sync is not None:
            sync, self._sync = self._sync, None
            sync.result()
