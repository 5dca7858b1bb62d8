"""``python -m qcdaemon.search.worker``: the warm search worker, one search job after another.

sagepy cannot write its fragment index to disk (see ``database``), so the engine keeps the index of
the last FASTA and parameter set warm in this long-lived low-priority child instead of building it
again for every run.  The channel is the process's own stdin and stdout, one JSON object a line:

* a job: ``{"raw", "fasta", "params", "cache_dir", "psms", "out", "err"}``, the arguments of
  ``qcdaemon parse search`` plus the run's two log files (``out``: the values as JSON, ``err``: the
  search's log, where Sage's own output also goes);
* its answer: ``{"exit": status, "database": {...} | null, "builds": n, "rss_mb": x, "exiting": bool}``,
  with the exit status of ``qcdaemon.search.cli`` and the databases this process has built.

Only one database is resident (a job for another key drops the held one before the build).  The
worker exits, status 0, after ``--keep-warm`` idle seconds or when its stdin closes (the daemon
stopped it), and after answering a job that left it over ``--memory-mb`` resident memory (status
5), so the next job starts a fresh process; ``--memory-mb`` also caps its data segment as in the
one-shot child.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, TextIO

from .cli import EXIT_FAILED, limit_memory, main_parse_search
from .database import DatabaseCache, peak_rss_mb

EXIT_OVER_MEMORY = 5


def rss_mb() -> float | None:
    """This process's current resident memory in MB (Linux), else its peak (other POSIX), else None."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024), 1)
    except (OSError, ValueError, IndexError, AttributeError):
        return peak_rss_mb()


@contextlib.contextmanager
def _into(path: str) -> Iterator[TextIO]:
    """Send fd 1 and 2 (Sage's own prints) and sys.stdout/err to the run's log file for one job."""
    saved = os.dup(1), os.dup(2)
    old = sys.stdout, sys.stderr
    with open(path, "a", encoding="utf-8") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            yield log
        finally:
            log.flush()
            sys.stdout, sys.stderr = old
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_job(job: dict[str, Any], cache: DatabaseCache) -> tuple[int, dict[str, Any] | None]:
    """One search into the job's log files; returns the exit status and the database's description."""
    cache.last = None
    with _into(job["err"]) as err, open(job["out"], "w", encoding="utf-8") as out:
        try:
            code = main_parse_search(job["raw"], job["fasta"], params=job.get("params") or {},
                                     psms_out=job.get("psms"), out=out, err=err, cache=cache)
        except MemoryError:
            print("error: the search ran out of memory (its data segment is capped by [engine.search] memory_mb)",
                  file=err)
            code = EXIT_OVER_MEMORY
        except Exception as exc:  # a bug or a Sage failure nobody expected: this job fails, the log says why
            traceback.print_exc(file=err)
            print(f"error: the search failed: {type(exc).__name__}: {exc}", file=err)
            code = EXIT_FAILED
    return code, (asdict(cache.last) if cache.last is not None else None)


def _lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def serve(jobs: IO[str], answers: IO[str], *, keep_warm: float, memory_mb: int) -> int:
    """Answer jobs until idle for ``keep_warm`` seconds, the channel closes, or memory runs over."""
    cache = DatabaseCache(None, hold=1)
    incoming: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(jobs, incoming), daemon=True, name="search-jobs").start()
    while True:
        try:
            line = incoming.get(timeout=keep_warm)
        except queue.Empty:
            print(f"search worker {os.getpid()}: idle for {keep_warm:g} s, exiting", file=sys.stderr, flush=True)
            return 0
        if line is None:
            return 0
        if not line.strip():
            continue
        job = json.loads(line)
        cache.cache_dir = Path(job["cache_dir"]) if job.get("cache_dir") else None
        code, database = run_job(job, cache)
        rss = rss_mb()
        over = bool(memory_mb and rss is not None and rss > memory_mb) or code == EXIT_OVER_MEMORY
        answer = {"exit": code, "database": database, "builds": cache.builds, "rss_mb": rss, "exiting": over}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
        if over:
            print(f"search worker {os.getpid()}: {rss} MB resident, over the cap of {memory_mb} MB, exiting",
                  file=sys.stderr, flush=True)
            return EXIT_OVER_MEMORY


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qcdaemon.search.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--keep-warm", type=float, required=True, help="idle seconds before the worker exits")
    parser.add_argument("--memory-mb", type=int, default=0, help="cap on data segment and resident memory (MB)")
    args = parser.parse_args(argv)
    limit_memory(args.memory_mb)
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the channel; fd 1 itself goes to the run's log
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = sys.stderr
    return serve(sys.stdin, answers, keep_warm=args.keep_warm, memory_mb=args.memory_mb)


if __name__ == "__main__":
    raise SystemExit(main())
