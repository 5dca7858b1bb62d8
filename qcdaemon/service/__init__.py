"""The use cases behind the API and the CLI (no HTTP, no DuckDB)."""

from qcdaemon.service.qcservice import QcService

__all__ = ["QcService"]
