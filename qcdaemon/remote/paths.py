"""Daemon paths as the Dask workers see them, through ``path_map`` (a share both sides mount)."""

from __future__ import annotations

from pathlib import PurePath, PurePosixPath, PureWindowsPath

from qcdaemon.errors import ToolError


def map_path(path: str | PurePath, path_map: tuple[tuple[str, str], ...], *, key: str = "path_map") -> str:
    """``path`` under the longest matching daemon-side prefix, rewritten to the worker-side one.

    Raises:
        ToolError: no prefix covers ``path`` (the worker could not see it).
    """
    text = str(path)
    for here, there in path_map:  # longest first (remotecfg sorts them)
        head = here.rstrip("/\\")
        if text == head or text.startswith((head + "/", head + "\\")):
            rest = text[len(head):].lstrip("/\\")
            worker_side = PureWindowsPath(there) if _is_windows(there) else PurePosixPath(there)
            return str(worker_side.joinpath(*PurePosixPath(rest.replace("\\", "/")).parts)) if rest else there
    raise ToolError(f"{text} is not inside any folder of {key}, so the Dask workers cannot see it;"
                    " map the folder that holds it (the data folder's work/ and the FASTA file's)")


def _is_windows(path: str) -> bool:
    return len(path) > 1 and (path[1] == ":" or path.startswith("\\\\"))
