"""The use cases behind the API and the CLI: who may see and change what, and the answers.

Handlers and CLI commands stay thin and call these; this module knows nothing of HTTP.  :class:`QcService`
is one object made of its parts: :mod:`~qcdaemon.service.accounts` (identity and administration),
:mod:`~qcdaemon.service.reads` (the answers of the read routes and exports) and :mod:`~qcdaemon.service.runops`
(new runs and changes to runs), over :mod:`~qcdaemon.service.base` (store, configuration, engine).
"""

from __future__ import annotations

from qcdaemon.service.accounts import Accounts, slugify
from qcdaemon.service.base import EngineControl
from qcdaemon.service.reads import Reads
from qcdaemon.service.runops import RunChanges

__all__ = ["EngineControl", "QcService", "slugify"]


class QcService(Accounts, Reads, RunChanges):
    """``QcService(store, cfg, key)``; the daemon sets ``engine`` when the engine runs (wake, cancel)."""
