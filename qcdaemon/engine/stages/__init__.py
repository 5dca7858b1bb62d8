"""The stages of a run, one module each: native metrics, RawTools, the Sage search, MaxQuant.

Each returns an outcome dict (``state``, optional ``error``, ``exit_code``, ``log_dir``) and writes
its values to the store; the engine records the outcome.  Tools run as low-priority subprocesses
in the run's own work folder; the instrument's folder is only ever read.
"""

from __future__ import annotations

from qcdaemon.engine.stages.common import Outcome, Runner, StageContext, stages_failed
from qcdaemon.engine.stages.maxquant import maxquant_stage
from qcdaemon.engine.stages.native import native_stage
from qcdaemon.engine.stages.rawtools import rawtools_stage
from qcdaemon.engine.stages.search import search_stage

RUNNERS: dict[str, Runner] = {"native": native_stage, "rawtools": rawtools_stage, "search": search_stage,
                              "maxquant": maxquant_stage}

__all__ = ["RUNNERS", "Outcome", "Runner", "StageContext", "stages_failed"]
