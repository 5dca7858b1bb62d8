"""Alerts, their events, the delivery outbox and every delivery attempt; plus the few reads the
alert checks and ``/metrics`` need (failed stages, the oldest job, stored verdicts, counts).

An alert is one row per (rule, subject) while it is open; ``alert_events`` holds what made it
(one row per failed run, ...), so a burst counts each run once even when a check sees it twice.
``alert_deliveries`` is the outbox: one row per message and channel, retried until sent or given
up, so a delivery survives a restart; ``alert_attempts`` logs each try.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from qcdaemon.errors import NotFound
from qcdaemon.store.base import StoreBase

_ALERT_FIELDS = frozenset({
    "state", "updated_at", "resolved_at", "acknowledged_at", "acknowledged_by", "events", "notified_events",
    "last_notified_at", "title", "message", "detail",
})


def _alert_row(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is not None and isinstance(r.get("detail"), str):
        try:
            r["detail"] = json.loads(r["detail"])
        except ValueError:
            pass
    return r


class AlertQueries(StoreBase):
    # -- alerts -------------------------------------------------------------------------------

    def alert(self, alert_id: int) -> dict[str, Any] | None:
        return _alert_row(self.row("SELECT * FROM alerts WHERE id = ?", [alert_id]))

    def alert_open_for(self, rule: str, subject: str) -> dict[str, Any] | None:
        return _alert_row(self.row(
            "SELECT * FROM alerts WHERE rule = ? AND subject = ? AND state = 'open' ORDER BY id DESC LIMIT 1",
            [rule, subject]))

    def alerts_open(self, rule: str | None = None) -> list[dict[str, Any]]:
        if rule is None:
            rows = self.rows("SELECT * FROM alerts WHERE state = 'open' ORDER BY id")
        else:
            rows = self.rows("SELECT * FROM alerts WHERE state = 'open' AND rule = ? ORDER BY id", [rule])
        return [r for r in map(_alert_row, rows) if r is not None]

    def alert_create(self, *, rule: str, condition: str, subject: str, scope: str, project_id: int | None,
                     title: str, message: str, detail: Any, now: dt.datetime, state: str = "open",
                     events: int = 0) -> dict[str, Any]:
        aid = self.next_id("seq_alerts")
        self.execute(
            "INSERT INTO alerts (id, rule, condition, subject, scope, project_id, state, opened_at, updated_at,"
            " resolved_at, events, title, message, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [aid, rule, condition, subject, scope, project_id, state, now, now,
             now if state == "resolved" else None, events, title, message, json.dumps(detail, default=str)],
        )
        r = self.alert(aid)
        assert r is not None
        return r

    def alert_update(self, alert_id: int, **fields: Any) -> None:
        bad = set(fields) - _ALERT_FIELDS
        if bad:
            raise ValueError(f"not alert fields: {sorted(bad)}")
        if "detail" in fields:
            fields["detail"] = json.dumps(fields["detail"], default=str)
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.execute(f"UPDATE alerts SET {cols} WHERE id = ?", [*fields.values(), alert_id])

    def alert_event_add(self, alert_id: int, rule: str, event_key: str, at: dt.datetime, text: str) -> bool:
        """Record one occurrence; False when this rule already counted ``event_key``."""
        if self.scalar("SELECT count(*) FROM alert_events WHERE rule = ? AND event_key = ?", [rule, event_key]):
            return False
        self.execute("INSERT INTO alert_events VALUES (?, ?, ?, ?, ?)", [alert_id, rule, event_key, at, text])
        self.execute("UPDATE alerts SET events = events + 1, updated_at = ? WHERE id = ?", [at, alert_id])
        return True

    def alert_event_known(self, rule: str, event_key: str) -> bool:
        return bool(self.scalar("SELECT count(*) FROM alert_events WHERE rule = ? AND event_key = ?",
                                [rule, event_key]))

    def alert_events(self, alert_id: int, limit: int = 20) -> list[dict[str, Any]]:
        return self.rows("SELECT event_key, occurred_at, text FROM alert_events WHERE alert_id = ? ORDER BY occurred_at, event_key"
                         f" LIMIT {max(int(limit), 0)}", [alert_id])

    def alerts_list(self, project_ids: Sequence[int] | None, *, state: str | None = None, limit: int = 100,
                    rules: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Newest first. ``project_ids`` None: every alert (admins); else only alerts of those projects
        (alerts about the daemon itself, with no project, are for admins)."""
        where, params = [], []  # type: tuple[list[str], list[Any]]
        if project_ids is not None:
            if not project_ids:
                return []
            where.append(f"project_id IN ({', '.join('?' * len(project_ids))})")
            params.extend(project_ids)
        if state:
            where.append("state = ?")
            params.append(state)
        if rules is not None:
            if not rules:
                return []
            where.append(f"rule IN ({', '.join('?' * len(rules))})")
            params.extend(rules)
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self.rows(sql + f" ORDER BY id DESC LIMIT {min(max(int(limit), 0), 10000)}", params)
        out = [r for r in map(_alert_row, rows) if r is not None]
        if out:
            ids = [r["id"] for r in out]
            marks = ", ".join("?" * len(ids))
            deliveries = self.rows(
                "SELECT id, alert_id, channel, kind, state, attempts, created_at, last_attempt_at, sent_at, last_error"
                f" FROM alert_deliveries WHERE alert_id IN ({marks}) ORDER BY id", ids)
            attempts = self.rows(
                "SELECT a.delivery_id, a.attempted_at, a.ok, a.error FROM alert_attempts a JOIN alert_deliveries d"
                f" ON d.id = a.delivery_id WHERE d.alert_id IN ({marks}) ORDER BY a.attempted_at", ids)
            by_delivery: dict[int, list[dict[str, Any]]] = {}
            for a in attempts:
                by_delivery.setdefault(a.pop("delivery_id"), []).append(a)
            by_alert: dict[int, list[dict[str, Any]]] = {}
            for d in deliveries:
                d["attempts_log"] = by_delivery.get(d["id"], [])
                by_alert.setdefault(d.pop("alert_id"), []).append(d)
            for r in out:
                r["deliveries"] = by_alert.get(r["id"], [])
        return out

    def alert_acknowledge(self, alert_id: int, by: str, now: dt.datetime) -> dict[str, Any]:
        r = self.alert(alert_id)
        if r is None:
            raise NotFound(f"alert {alert_id} does not exist")
        if r["acknowledged_at"] is None:
            self.execute("UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, updated_at = ? WHERE id = ?",
                         [now, by, now, alert_id])
            # repeats already queued but not yet sent are dropped: acknowledged alerts stay quiet
            self.execute("UPDATE alert_deliveries SET state = 'dropped', last_error = 'acknowledged'"
                         " WHERE alert_id = ? AND kind = 'repeat' AND state IN ('pending', 'held')", [alert_id])
        out = self.alert(alert_id)
        assert out is not None
        return out

    # -- the outbox ---------------------------------------------------------------------------

    def delivery_add(self, alert_id: int | None, channel: str, kind: str, title: str, body: str,
                     now: dt.datetime, *, held: bool = False) -> int:
        did = self.next_id("seq_alert_deliveries")
        self.execute(
            "INSERT INTO alert_deliveries (id, alert_id, channel, kind, title, body, created_at, state, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [did, alert_id, channel, kind, title, body, now, "held" if held else "pending", None if held else now],
        )
        return did

    def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        return self.row("SELECT * FROM alert_deliveries WHERE id = ?", [delivery_id])

    def deliveries_due(self, now: dt.datetime, limit: int = 50) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM alert_deliveries WHERE state = 'pending' AND next_attempt_at <= ?"
                         f" ORDER BY next_attempt_at, id LIMIT {max(int(limit), 1)}", [now])

    def delivery_next_due(self) -> dt.datetime | None:
        v = self.scalar("SELECT min(next_attempt_at) FROM alert_deliveries WHERE state = 'pending'")
        return v if isinstance(v, dt.datetime) else None

    def delivery_record(self, delivery_id: int, *, ok: bool, error: str | None, now: dt.datetime,
                        retry_at: dt.datetime | None) -> None:
        """One attempt: sent, or failed (again pending at ``retry_at``; None = given up)."""
        d = self.delivery(delivery_id)
        if d is None:
            return
        with self.transaction():
            self.execute("INSERT INTO alert_attempts VALUES (?, ?, ?, ?, ?)", [delivery_id, d["channel"], now, ok, error])
            if ok:
                self.execute("UPDATE alert_deliveries SET state = 'sent', attempts = attempts + 1, sent_at = ?,"
                             " last_attempt_at = ?, last_error = NULL, next_attempt_at = NULL WHERE id = ?",
                             [now, now, delivery_id])
            else:
                self.execute("UPDATE alert_deliveries SET state = ?, attempts = attempts + 1, last_attempt_at = ?,"
                             " last_error = ?, next_attempt_at = ? WHERE id = ?",
                             ["pending" if retry_at else "failed", now, error, retry_at, delivery_id])

    def deliveries_held(self, channel: str) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM alert_deliveries WHERE channel = ? AND state = 'held' ORDER BY id", [channel])

    def delivery_digest(self, channel: str, held_ids: Sequence[int], title: str, body: str, now: dt.datetime) -> int:
        """One digest delivery in place of the held ones (which point to it)."""
        with self.transaction():
            did = self.delivery_add(None, channel, "digest", title, body, now)
            if held_ids:
                self.execute(f"UPDATE alert_deliveries SET state = 'digested', digest_id = ? WHERE id IN"
                             f" ({', '.join('?' * len(held_ids))})", [did, *held_ids])
        return did

    def channel_health(self) -> list[dict[str, Any]]:
        """Per channel that was ever used: consecutive failed attempts since its last success, when it
        last worked and last failed (with the error), and how many messages wait in its outbox."""
        rows = self.rows(
            "WITH a AS (SELECT channel, max(CASE WHEN ok THEN attempted_at END) AS last_ok_at,"
            "  max(CASE WHEN NOT ok THEN attempted_at END) AS last_error_at FROM alert_attempts GROUP BY channel)"
            " SELECT a.channel, a.last_ok_at, a.last_error_at,"
            "  (SELECT count(*) FROM alert_attempts x WHERE x.channel = a.channel AND NOT x.ok"
            "   AND (a.last_ok_at IS NULL OR x.attempted_at > a.last_ok_at)) AS consecutive_failures,"
            "  (SELECT x.error FROM alert_attempts x WHERE x.channel = a.channel AND NOT x.ok"
            "   ORDER BY x.attempted_at DESC LIMIT 1) AS last_error,"
            "  (SELECT count(*) FROM alert_deliveries d WHERE d.channel = a.channel"
            "   AND d.state IN ('pending', 'held')) AS waiting"
            " FROM a ORDER BY a.channel"
        )
        for r in rows:
            r["consecutive_failures"] = int(r["consecutive_failures"])
            r["waiting"] = int(r["waiting"])
        return rows

    # -- cursors ------------------------------------------------------------------------------

    def alert_cursor(self, name: str) -> dt.datetime | None:
        v = self.scalar("SELECT value_at FROM alert_cursors WHERE name = ?", [name])
        return v if isinstance(v, dt.datetime) else None

    def set_alert_cursor(self, name: str, at: dt.datetime) -> None:
        self.execute("INSERT INTO alert_cursors VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value_at = excluded.value_at",
                     [name, at])

    # -- what the checks read -----------------------------------------------------------------

    def failed_stages_since(self, since: dt.datetime) -> list[dict[str, Any]]:
        return self.rows(
            "SELECT s.run_id, 'rf' || s.run_id AS run_key, s.stage, s.error, s.ended_at, s.attempts, r.name AS run_name,"
            " pl.id AS pipeline_id, pl.uuid AS pipeline_uuid, pl.slug AS pipeline_slug, p.slug AS project_slug,"
            " p.id AS project_id FROM stages s JOIN runs r ON r.id = s.run_id"
            " JOIN pipelines pl ON pl.id = r.pipeline_id JOIN projects p ON p.id = pl.project_id"
            " WHERE s.state = 'failed' AND s.ended_at >= ? ORDER BY s.ended_at, s.run_id", [since])

    def stage_succeeded_after(self, pipeline_id: int, stage: str, after: dt.datetime) -> dict[str, Any] | None:
        """The first run of the pipeline whose ``stage`` finished well after ``after``."""
        return self.row(
            "SELECT 'rf' || s.run_id AS run_key, r.name AS run_name, s.ended_at FROM stages s JOIN runs r ON r.id = s.run_id"
            " WHERE r.pipeline_id = ? AND s.stage = ? AND s.state = 'done' AND s.ended_at > ?"
            " ORDER BY s.ended_at LIMIT 1", [pipeline_id, stage, after])

    def oldest_job(self) -> dict[str, Any] | None:
        """The queued or running stage waiting longest (queued: since queued; running: since started)."""
        return self.row(
            "SELECT s.run_id, 'rf' || s.run_id AS run_key, s.stage, s.state, r.name AS run_name,"
            " CASE WHEN s.state = 'running' THEN s.started_at ELSE s.queued_at END AS since"
            " FROM stages s JOIN runs r ON r.id = s.run_id WHERE s.state IN ('queued', 'running')"
            " ORDER BY since NULLS LAST LIMIT 1")

    def latest_file_seen(self, watch_path: str) -> dt.datetime | None:
        v = self.scalar("SELECT max(first_seen) FROM files WHERE watch_path = ?", [watch_path])
        return v if isinstance(v, dt.datetime) else None

    def has_table(self, name: str) -> bool:
        return bool(self.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]))

    def verdicts_since(self, since: dt.datetime) -> list[dict[str, Any]]:
        """Stored run verdicts (``qc_verdicts``, from the quality-control issue) computed since ``since``,
        with their run and pipeline; [] while that table does not exist."""
        if not self.has_table("qc_verdicts"):
            return []
        rows = self.rows(
            "SELECT v.run_id, 'rf' || v.run_id AS run_key, v.verdict, v.summary, v.detail, v.computed_at,"
            " r.name AS run_name, pl.id AS pipeline_id, pl.uuid AS pipeline_uuid, pl.slug AS pipeline_slug,"
            " p.slug AS project_slug, p.id AS project_id FROM qc_verdicts v JOIN runs r ON r.id = v.run_id"
            " JOIN pipelines pl ON pl.id = r.pipeline_id JOIN projects p ON p.id = pl.project_id"
            " WHERE v.computed_at >= ? ORDER BY v.computed_at, v.run_id", [since])
        return [_verdict_row(r) for r in rows]

    def recent_verdicts(self, pipeline_id: int, n: int) -> list[dict[str, Any]]:
        """The verdicts of the pipeline's ``n`` newest runs (by acquisition, then ingestion), newest first."""
        if not self.has_table("qc_verdicts"):
            return []
        rows = self.rows(
            "SELECT v.run_id, 'rf' || v.run_id AS run_key, v.verdict, v.summary, v.detail, r.name AS run_name"
            " FROM qc_verdicts v JOIN runs r ON r.id = v.run_id WHERE r.pipeline_id = ?"
            f" ORDER BY coalesce(r.acquired_at, r.created_at) DESC, r.id DESC LIMIT {max(int(n), 1)}", [pipeline_id])
        return [_verdict_row(r) for r in rows]

    def pipelines_with_verdicts(self) -> list[dict[str, Any]]:
        if not self.has_table("qc_verdicts"):
            return []
        return self.rows(
            "SELECT DISTINCT pl.id AS pipeline_id, pl.uuid AS pipeline_uuid, pl.slug AS pipeline_slug,"
            " p.slug AS project_slug, p.id AS project_id FROM qc_verdicts v JOIN pipelines pl ON pl.id = v.pipeline_id"
            " JOIN projects p ON p.id = pl.project_id ORDER BY pl.id")

    # -- /metrics -------------------------------------------------------------------------------

    def metrics_snapshot(self) -> dict[str, Any]:
        runs = {r["state"]: int(r["n"]) for r in self.rows("SELECT state, count(*) AS n FROM runs GROUP BY state")}
        stages = self.rows(
            "SELECT stage, count(*) AS n, sum(epoch(ended_at) - epoch(started_at)) AS seconds FROM stages"
            " WHERE state = 'done' AND started_at IS NOT NULL AND ended_at IS NOT NULL GROUP BY stage ORDER BY stage")
        alerts = {r["rule"]: int(r["n"]) for r in
                  self.rows("SELECT rule, count(*) AS n FROM alerts WHERE state = 'open' GROUP BY rule")}
        waiting = int(self.scalar("SELECT count(*) FROM alert_deliveries WHERE state IN ('pending', 'held')") or 0)
        return {"runs": runs, "stage_durations": [
            {"stage": s["stage"], "count": int(s["n"]), "seconds": float(s["seconds"] or 0.0)} for s in stages],
            "open_alerts": alerts, "deliveries_waiting": waiting}


def _verdict_row(r: dict[str, Any]) -> dict[str, Any]:
    detail = r.pop("detail", None)
    try:
        d = json.loads(detail) if isinstance(detail, str) else (detail or {})
    except ValueError:
        d = {}
    r["reasons"] = d.get("reasons", []) if isinstance(d, dict) else []
    return r
