"""Watched folders: find RAW files and say when each one has finished being written.

The watcher only reads the watched folders (``os.stat``, ``os.scandir``, and on Windows a
read-only share-mode probe); it never writes, renames, locks or creates anything in them.
watchdog events are hints; a start-up scan and the periodic :meth:`FolderWatcher.sweep` find what
events missed. Deduplication against the store is the service's job.
"""

from qcdaemon.watcher.folder_watcher import FolderWatcher
from qcdaemon.watcher.scan import matches, scan_folder
from qcdaemon.watcher.settle import FileEvent

__all__ = ["FileEvent", "FolderWatcher", "matches", "scan_folder"]
