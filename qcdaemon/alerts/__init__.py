"""Alerts that reach the lab: rules from the config, conditions (verdicts, failed stages, silence,
stalled acquisitions, unreachable folders, disk space, crashes, a stuck queue), the alert lifecycle
in the store, and delivery through apprise with a persistent, retried outbox. No HTTP here."""

from qcdaemon.alerts.component import AlertsComponent
from qcdaemon.alerts.manager import AlertManager, Finding

__all__ = ["AlertManager", "AlertsComponent", "Finding"]
